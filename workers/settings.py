"""Worker settings: every ``SHADOWSHIFT_*`` environment variable, parsed once and validated.

This is the only module that reads the environment. Everything else receives a
:class:`Settings` (or a piece of it) from its caller.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root; defaults below are relative to it."""

PREFIX = "SHADOWSHIFT_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENCRYPTION_MODES = ("auto", "required")
PG_SSLMODES = ("verify-full", "disable")
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})\Z")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}\Z")
_DNS_NAME = re.compile(r"^(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+\Z")

T = TypeVar("T")


class SettingsError(ValueError):
    """A ``SHADOWSHIFT_*`` variable is unknown or has a value we cannot use.

    The message names the variable and what it may be set to.
    """


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a ShadowShift process is configured with."""

    temporal_address: str = "localhost:7233"
    """``SHADOWSHIFT_TEMPORAL_ADDRESS``: Temporal frontend as ``host:port``."""
    temporal_tls_ca: Path | None = None
    """``SHADOWSHIFT_TEMPORAL_TLS_CA``: PEM file of the CA certificate(s) that signed the
    Temporal frontend's certificate; setting any ``SHADOWSHIFT_TEMPORAL_TLS_*`` variable turns
    TLS on (without this one the system's trusted CAs verify the server). Unset, all four:
    plaintext (docs/security.md)."""
    temporal_tls_cert: Path | None = None
    """``SHADOWSHIFT_TEMPORAL_TLS_CERT``: PEM file of this process's client certificate for
    mutual TLS (leaf first, then any intermediates); needs ``SHADOWSHIFT_TEMPORAL_TLS_KEY``.
    A node agent's must name its host (CN or DNS name = ``--host``)."""
    temporal_tls_key: Path | None = None
    """``SHADOWSHIFT_TEMPORAL_TLS_KEY``: PEM file of the client certificate's private key,
    unencrypted, mode 0600 or 0400; needs ``SHADOWSHIFT_TEMPORAL_TLS_CERT``."""
    temporal_tls_server_name: str = ""
    """``SHADOWSHIFT_TEMPORAL_TLS_SERVER_NAME``: the name the frontend's certificate must carry
    (and the TLS SNI), when it is not the host of ``SHADOWSHIFT_TEMPORAL_ADDRESS`` (an address
    by IP, a tunnel, a load balancer); default: that host."""
    namespace: str = "default"
    """``SHADOWSHIFT_NAMESPACE``: Temporal namespace."""
    task_queue: str = "shadowshift"
    """``SHADOWSHIFT_TASK_QUEUE``: task queue the worker polls."""
    state_dir: Path = REPO_ROOT / ".state"
    """``SHADOWSHIFT_STATE_DIR``: where stacks' work dirs, data directories and sockets live."""
    pulumi_backend_url: str = ""
    """``SHADOWSHIFT_PULUMI_BACKEND_URL``: Pulumi state backend; default ``file://<state_dir>/pulumi``."""
    pulumi_passphrase_file: Path = REPO_ROOT / ".state" / "pulumi-passphrase"
    """``SHADOWSHIFT_PULUMI_PASSPHRASE_FILE``: file holding the secrets passphrase; must exist.
    Default ``<state_dir>/pulumi-passphrase`` (``make setup`` creates it)."""
    pulumi_root: Path | None = None
    """``SHADOWSHIFT_PULUMI_ROOT``: folder with ``bin/pulumi``; default ``.tools`` if built there,
    else ``pulumi`` from ``PATH``."""
    pulumi_nice: int = 19
    """``SHADOWSHIFT_PULUMI_NICE``: CPU priority of the Pulumi CLI and its provider host (nice of
    their own scheduler autogroup, 0..19), so that on a shared machine the shadow's copy and the
    databases come first; 0 = like any other process. No effect without autogroups."""
    otlp_endpoint: str | None = None
    """``SHADOWSHIFT_OTLP_ENDPOINT``: OTLP/gRPC collector ``http(s)://host:port`` for traces,
    and for metrics that have no Prometheus port set; unset: no OTLP export."""
    prometheus_port: int = 0
    """``SHADOWSHIFT_PROMETHEUS_PORT``: port of ShadowShift's Prometheus endpoint (readiness,
    lag, cutovers; ``/metrics``); 0 = off."""
    temporal_metrics_port: int = 0
    """``SHADOWSHIFT_TEMPORAL_METRICS_PORT``: port of the Temporal SDK's own Prometheus endpoint
    (task slots, poll and task latencies); 0 = off, then SDK metrics go to the OTLP endpoint
    if one is set."""
    metrics_host: str = "127.0.0.1"
    """``SHADOWSHIFT_METRICS_HOST``: address both Prometheus endpoints listen on; loopback
    unless a scraper elsewhere needs them (``0.0.0.0`` in a container)."""
    log_level: str = "INFO"
    """``SHADOWSHIFT_LOG_LEVEL``: one of DEBUG, INFO, WARNING, ERROR."""
    max_concurrent_activities: int = 32
    """``SHADOWSHIFT_MAX_CONCURRENT_ACTIVITIES``: activity slots (and thread-pool size), 1..1024."""
    watch_interval_s: int = 15
    """``SHADOWSHIFT_WATCH_INTERVAL_S``: seconds between two samples of the fleet by the task
    queue's fleet watcher, which every worker start makes sure runs (1..3600); 0 = the worker
    does not start it (start it yourself, as the demo does with its own interval)."""
    aws_metrics_period_s: int = 60
    """``SHADOWSHIFT_AWS_METRICS_PERIOD_S``: CloudWatch period the watcher reads for AWS
    protections: 60 with detailed monitoring, 300 with basic monitoring (costs a fifth of the
    GetMetricData calls); 60..3600, a multiple of 60."""
    payload_key_file: Path | None = None
    """``SHADOWSHIFT_PAYLOAD_KEY_FILE``: file of AES-256 keys that encrypt workflow inputs,
    results and failures in Temporal's history, one ``<key id>:<base64 key>`` per line, the
    first encrypting, all decrypting; mode 0600 (``make setup`` writes ``.state/payload-keys``;
    docs/security.md). Unset and no ``SHADOWSHIFT_PAYLOAD_KEYS``: payloads are stored in clear."""
    payload_keys: str = field(default="", repr=False)
    """``SHADOWSHIFT_PAYLOAD_KEYS``: the same keys inline, entries separated by commas (for
    secret stores that inject variables); set this or the key file, not both."""
    payload_encryption: str = "auto"
    """``SHADOWSHIFT_PAYLOAD_ENCRYPTION``: ``auto`` encrypts when a key is configured;
    ``required`` refuses to start without one."""
    pg_replication_sslmode: str = "verify-full"
    """``SHADOWSHIFT_PG_REPLICATION_SSLMODE``: TLS of the replication connections a worker sets
    up: ``verify-full`` (the primary's certificate must chain to the platform's CA and name its
    address; on the local platform the CA and server certificates are generated in
    ``<state_dir>/pki``) or ``disable`` (plaintext, a trusted network only)."""
    pg_passfile: Path | None = None
    """``SHADOWSHIFT_PG_PASSFILE``: libpq passfile (mode 0600) with the password of each spec's
    ``replication_user`` (``host:port:replication:<role>:<password>``); servers get a copy of
    that role's lines only. The password is never put in a spec, a workflow's history, Pulumi
    state, a log or a metric. Unset: replication connects without a password. On a node agent
    (hosts platform): the passfile on the agent's own host that its standbys and ``pg_rewind``
    read the password from (``*`` as the database field serves both)."""
    pg_tls_ca: Path | None = None
    """``SHADOWSHIFT_PG_TLS_CA``: the CA (PEM) of the hosts' PostgreSQL servers. On the
    control worker: every SQL session it opens to a host's server (checks, slot, tier
    settings, fencing, promotion, standby probes) uses ``sslmode=verify-full`` with it (each
    host's certificate names its address); unset: libpq's default, as before. On a node
    agent: the CA whose certificates its standbys accept from the primary they stream from
    (``sslmode=verify-full``), set with ``SHADOWSHIFT_PG_TLS_CERT`` and ``_KEY`` or not at all;
    unset there: the agent's servers serve no TLS and replicate in plaintext
    (docs/security.md)."""
    pg_tls_cert: Path | None = None
    """``SHADOWSHIFT_PG_TLS_CERT``: node agents only: this host's server certificate (PEM,
    issued by that CA, naming the agent's ``--address``), served by every PostgreSQL server
    of the agent."""
    pg_tls_key: Path | None = None
    """``SHADOWSHIFT_PG_TLS_KEY``: node agents only: its private key (PEM, unencrypted)."""
    kubeconfig: Path | None = None
    """``SHADOWSHIFT_KUBECONFIG``: kubeconfig of the cluster that protections on platform
    ``kubernetes`` run in (a client-certificate user, ``docs/kubernetes/rbac.yaml`` says what
    it needs); unset: that platform refuses."""

    @property
    def effective_backend_url(self) -> str:
        """The Pulumi backend URL, defaulting to a ``file://`` backend in the state dir."""
        return self.pulumi_backend_url or f"file://{self.state_dir / 'pulumi'}"


def _host_port(var: str, raw: str) -> str:
    match = _HOST_PORT.match(raw)
    if not match or not 0 < int(match["port"]) < 65536:
        raise SettingsError(f"{var}={raw!r} is not host:port (for example localhost:7233)")
    return raw


def _name(var: str, raw: str) -> str:
    if not _NAME.match(raw):
        raise SettingsError(
            f"{var}={raw!r}: use letters, digits, '.', '_' or '-' (1-200 characters)"
        )
    return raw


def _server_name(var: str, raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    if not _DNS_NAME.match(raw):
        raise SettingsError(f"{var}={raw!r} is not a DNS name or IP address (for example "
                            "temporal.example.com)")
    return raw.rstrip(".")


def _int_range(low: int, high: int) -> Callable[[str, str], int]:
    def parse(var: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{var}={raw!r} is not a whole number ({low}..{high})") from None
        if not low <= value <= high:
            raise SettingsError(f"{var}={value} is outside {low}..{high}")
        return value

    return parse


def _cloudwatch_period(var: str, raw: str) -> int:
    value = _int_range(60, 3600)(var, raw)
    if value % 60:
        raise SettingsError(f"{var}={value}: CloudWatch periods are multiples of 60 seconds")
    return value


def _log_level(var: str, raw: str) -> str:
    if raw.upper() not in LOG_LEVELS:
        raise SettingsError(f"{var}={raw!r}: allowed values are {', '.join(LOG_LEVELS)}")
    return raw.upper()


def _url(schemes: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(var: str, raw: str) -> str:
        if not raw.startswith(tuple(f"{s}://" for s in schemes)) or raw.endswith("://"):
            allowed = ", ".join(f"{s}://..." for s in schemes)
            raise SettingsError(f"{var}={raw!r}: expected a URL of the form {allowed}")
        return raw

    return parse


def _encryption_mode(var: str, raw: str) -> str:
    if raw not in ENCRYPTION_MODES:
        raise SettingsError(f"{var}={raw!r}: allowed values are {', '.join(ENCRYPTION_MODES)}")
    return raw


def _pg_sslmode(var: str, raw: str) -> str:
    if raw not in PG_SSLMODES:
        raise SettingsError(f"{var}={raw!r}: allowed values are {', '.join(PG_SSLMODES)}")
    return raw


def _secret(var: str, raw: str) -> str:
    # Checked by workers.payload_keys when a process builds its data converter; never echoed.
    if not raw.strip():
        raise SettingsError(f"{var} is empty: give <key id>:<base64 key> entries or unset it")
    return raw


def _ip_address(var: str, raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not an IP address (for example 127.0.0.1 or "
                            "0.0.0.0)") from None


def _path(var: str, raw: str) -> Path:
    if not raw.strip():
        raise SettingsError(f"{var} is empty: give a filesystem path")
    try:
        return Path(raw).expanduser().resolve()
    except (ValueError, RuntimeError, OSError) as err:  # a NUL byte, ~unknown-user, a loop
        raise SettingsError(f"{var}={raw!r} is not a usable filesystem path ({err})") from None


_PARSERS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "TEMPORAL_ADDRESS": ("temporal_address", _host_port),
    "TEMPORAL_TLS_CA": ("temporal_tls_ca", _path),
    "TEMPORAL_TLS_CERT": ("temporal_tls_cert", _path),
    "TEMPORAL_TLS_KEY": ("temporal_tls_key", _path),
    "TEMPORAL_TLS_SERVER_NAME": ("temporal_tls_server_name", _server_name),
    "NAMESPACE": ("namespace", _name),
    "TASK_QUEUE": ("task_queue", _name),
    "STATE_DIR": ("state_dir", _path),
    "PULUMI_BACKEND_URL": ("pulumi_backend_url", _url(("file", "s3", "gs", "azblob", "https"))),
    "PULUMI_PASSPHRASE_FILE": ("pulumi_passphrase_file", _path),
    "PULUMI_ROOT": ("pulumi_root", _path),
    "PULUMI_NICE": ("pulumi_nice", _int_range(0, 19)),
    "OTLP_ENDPOINT": ("otlp_endpoint", _url(("http", "https"))),
    "PROMETHEUS_PORT": ("prometheus_port", _int_range(0, 65535)),
    "TEMPORAL_METRICS_PORT": ("temporal_metrics_port", _int_range(0, 65535)),
    "METRICS_HOST": ("metrics_host", _ip_address),
    "LOG_LEVEL": ("log_level", _log_level),
    "MAX_CONCURRENT_ACTIVITIES": ("max_concurrent_activities", _int_range(1, 1024)),
    "WATCH_INTERVAL_S": ("watch_interval_s", _int_range(0, 3600)),
    "AWS_METRICS_PERIOD_S": ("aws_metrics_period_s", _cloudwatch_period),
    "PAYLOAD_KEY_FILE": ("payload_key_file", _path),
    "PAYLOAD_KEYS": ("payload_keys", _secret),
    "PAYLOAD_ENCRYPTION": ("payload_encryption", _encryption_mode),
    "PG_REPLICATION_SSLMODE": ("pg_replication_sslmode", _pg_sslmode),
    "PG_PASSFILE": ("pg_passfile", _path),
    "PG_TLS_CA": ("pg_tls_ca", _path),
    "PG_TLS_CERT": ("pg_tls_cert", _path),
    "PG_TLS_KEY": ("pg_tls_key", _path),
    "KUBECONFIG": ("kubeconfig", _path),
}

KNOWN_VARIABLES = tuple(PREFIX + key for key in _PARSERS)
"""Every variable :func:`load_settings` understands."""


def load_settings(
    environ: Mapping[str, str] | None = None, *, worker: bool = True
) -> Settings:
    """Parse and validate ``SHADOWSHIFT_*`` variables.

    Args:
        environ: the environment to read; ``os.environ`` when omitted.
        worker: also check the files only a worker uses (the Pulumi passphrase and CLI);
            ``False`` for clients such as the ``shadowshift`` CLI, which only talk to Temporal.

    Raises:
        SettingsError: an unknown variable, a malformed value, or a missing passphrase file.
    """
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for var, raw in sorted(env.items()):
        if not var.startswith(PREFIX):
            continue
        key = var[len(PREFIX) :]
        if key not in _PARSERS:
            raise SettingsError(
                f"unknown variable {var}; known variables are {', '.join(KNOWN_VARIABLES)}"
            )
        attr, parse = _PARSERS[key]
        values[attr] = parse(var, raw)

    state_dir = values.get("state_dir")
    if isinstance(state_dir, Path) and "pulumi_passphrase_file" not in values:
        values["pulumi_passphrase_file"] = state_dir / "pulumi-passphrase"
    if "pulumi_root" not in values and (REPO_ROOT / ".tools" / "bin" / "pulumi").exists():
        values["pulumi_root"] = REPO_ROOT / ".tools"
    settings = Settings(**values)  # type: ignore[arg-type]

    if worker and not settings.pulumi_passphrase_file.is_file():
        raise SettingsError(
            f"SHADOWSHIFT_PULUMI_PASSPHRASE_FILE: {settings.pulumi_passphrase_file} does not "
            "exist; create it (one line, the secrets passphrase) or run `make setup`"
        )
    if settings.prometheus_port and settings.prometheus_port == settings.temporal_metrics_port:
        raise SettingsError(
            f"SHADOWSHIFT_TEMPORAL_METRICS_PORT={settings.temporal_metrics_port} is also "
            "SHADOWSHIFT_PROMETHEUS_PORT; give the two endpoints different ports"
        )
    if (worker and settings.pulumi_root is not None
            and not (settings.pulumi_root / "bin" / "pulumi").exists()):
        raise SettingsError(
            f"SHADOWSHIFT_PULUMI_ROOT: {settings.pulumi_root}/bin/pulumi does not exist; "
            "point it at a folder with bin/pulumi or run `make setup`"
        )
    return settings
