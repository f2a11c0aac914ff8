"""The shadow benchmark's lab: one primary behind HAProxy and a Pulumi backend in a run folder.

``bench/shadow.py`` measures; this module sets up what it measures and tears all of it down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from infra.local.haproxy import HAProxyManager, ServerEntry
from infra.local.platform import LocalPlatform
from infra.local.ports import free_ports
from infra.local.postgres import PgEndpoint, PgServer, pg_bin, prepare_dir, run_server_tool
from infra.local.spec import LocalShadowSpec
from infra.pulumi_engine import StackDriver
from workers.registry import pulumi_config
from workers.settings import load_settings
from workers.workload import prepare_table

log = logging.getLogger(__name__)

MB_PER_PGBENCH_SCALE = 15.0
"""``pgbench -i`` adds about 15 MiB (tables and indexes) per unit of scale."""


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Parameters of one run (all recorded in the JSON)."""

    size_gb: float = 1.0
    """Target database size; the pgbench scale is derived from it."""
    repeats: int = 5
    """Timed runs of each of provisioning and ``pg_basebackup``."""
    load_s: float = 45.0
    """Length of each load phase."""
    rate: float = 150.0
    """Writer's target transactions per second."""
    archive_interval_s: int = 10
    """Tier 3 shipping interval (``archive_timeout``), the platform's default."""
    compression: str = "lz4"
    """Server-side compression of the full copy, as the provider uses it."""
    quick: bool = False
    """Smoke-run mode (small database, short phases)."""
    uncached: bool = False
    """Also time provisioning with the OS page cache dropped before each operation."""


class Lab:
    """A primary behind HAProxy and a Pulumi backend under ``work_dir``, which it owns from
    construction on: :meth:`close` (or a failed construction) removes it and undoes everything,
    whatever state a failure or Ctrl-C left."""

    def __init__(self, work_dir: Path, config: BenchConfig) -> None:
        # Resolved, so that close() finds processes by the paths they were given.
        self.work_dir = work_dir.resolve()
        self.config = config
        try:
            self._setup()
        except BaseException:  # the folder is ours from here: leave nothing half-made
            shutil.rmtree(self.work_dir, ignore_errors=True)
            raise

    def _setup(self) -> None:
        work_dir = self.work_dir
        self.primary_port, self.shadow_port, self.router_port = free_ports(3)
        self.instance_id = f"bench-{uuid.uuid4().hex[:6]}"
        self.primary = PgServer(home=work_dir / "primary", port=self.primary_port)
        self.haproxy = HAProxyManager(work_dir / "state" / "haproxy")
        # The worker's own settings with the run folder as state dir: backend in pulumi/, work
        # dirs in stacks/, the Pulumi CLI built in .tools (else from PATH).
        passphrase = work_dir / "pulumi-passphrase"
        passphrase.write_text(uuid.uuid4().hex + "\n")
        environ = {"SHADOWSHIFT_STATE_DIR": str(work_dir),
                   "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE": str(passphrase)}
        if "SHADOWSHIFT_PULUMI_NICE" in os.environ:  # e.g. 0, to compare with the default
            environ["SHADOWSHIFT_PULUMI_NICE"] = os.environ["SHADOWSHIFT_PULUMI_NICE"]
        self.settings = load_settings(environ)
        config = pulumi_config(self.settings)
        self.driver = StackDriver(config)
        # The same backend with the CLI at normal priority: what yielding the CPU buys.
        self.unyielding_driver = StackDriver(dataclasses.replace(config, cpu_nice=0))
        self.router = PgEndpoint(port=self.router_port)

    def start(self) -> int:
        """Start the primary and HAProxy, load ``pgbench`` data; returns the pgbench scale."""
        (self.work_dir / "pulumi").mkdir()
        # archive_mode needs a restart, so it is on from the start for tier 3; until a tier 3
        # stack sets its archive_command, 'true' keeps the load's WAL from piling up for it.
        self.primary.init(settings={"archive_mode": "on", "archive_command": "'true'",
                                    "max_wal_senders": "10", "max_wal_size": "'2GB'",
                                    "shared_buffers": "'256MB'"})
        self.primary.start()
        self.haproxy.ensure_service(self.instance_id, self.router_port,
                                    [ServerEntry(self.instance_id, "127.0.0.1", self.primary_port)])
        scale = max(1, round(self.config.size_gb * 1024 / MB_PER_PGBENCH_SCALE))
        # Server-side generation (G) keeps the client out of the way; the data is logged,
        # so the copy has to move all of it.
        subprocess.run([pg_bin("pgbench"), "-i", "-q", "-I", "dtGvp", "-s", str(scale),
                        "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
                        "postgres"], check=True, capture_output=True, text=True)
        prepare_table(self.router)
        with self.primary.endpoint.connect() as conn:
            conn.execute("CHECKPOINT")
        return scale

    def platform(self, tier: int, *, yielding: bool = True) -> LocalPlatform:
        """The local platform for this primary's shadow at ``tier``; ``yielding=False`` runs
        Pulumi at normal priority whatever ``SHADOWSHIFT_PULUMI_NICE`` says."""
        spec = LocalShadowSpec(
            instance_id=self.instance_id, primary_port=self.primary_port,
            shadow_port=self.shadow_port, router_port=self.router_port,
            state_dir=self.work_dir / "state", tier=tier, compression=self.config.compression,
            archive_interval_s=self.config.archive_interval_s)
        return LocalPlatform(spec, self.driver if yielding else self.unyielding_driver)

    def time_basebackup(self, *, sync: bool = True) -> float:
        """Seconds for a plain ``pg_basebackup`` with the provider's flags (copy removed)."""
        home = prepare_dir(self.work_dir / "scratch", mode=0o755)
        target = prepare_dir(home / "data")
        spec = self.platform(2).spec
        argv = [pg_bin("pg_basebackup"), "-d", spec.replication_conninfo(spec.standby_node),
                "-D", str(target),
                "-X", "stream", "-c", "fast"]
        if not sync:
            argv.append("--no-sync")
        if self.config.compression != "none":
            argv.append(f"--compress=server-{self.config.compression}:1")
        started = time.perf_counter()
        run_server_tool(argv)
        elapsed = time.perf_counter() - started
        shutil.rmtree(home)
        return elapsed

    def time_provision(self, *, yielding: bool = True) -> dict[str, float]:
        """Seconds for ``provision_shadow`` (tier 2), the copy inside it, and the destroy."""
        shadow = self.platform(2, yielding=yielding)
        started = time.perf_counter()
        info = shadow.provision_shadow()
        provisioned = time.perf_counter()
        shadow.destroy_shadow()
        shadow.close()
        seed_s = float(info.outputs["seed_seconds"])  # type: ignore[arg-type]
        return {"provision_s": round(provisioned - started, 3), "seed_s": round(seed_s, 3),
                "destroy_s": round(time.perf_counter() - provisioned, 3)}

    def close(self) -> None:
        """Stop every process of the run (by pid) and remove the run folder."""
        shadow = PgServer(home=self.platform(2).spec.shadow_home, port=self.shadow_port)
        for step in (lambda: shadow.stop(mode="immediate"),
                     lambda: self.primary.stop(mode="immediate"), self.haproxy.stop):
            try:
                step()
            except Exception as err:  # keep going: the rest must still be cleaned up
                log.warning("Clean-up step failed: %s", err)
        # Whatever survived (a pulumi CLI or a pg_basebackup cut short by Ctrl-C) names or
        # runs in our run folder; nothing else does.
        marker = str(self.work_dir)
        for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and (marker in cmdline or
                                            (proc.info["cwd"] or "").startswith(marker)):
                log.warning("Killing leftover process %s: %s", proc.pid, cmdline[:120])
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        shutil.rmtree(self.work_dir, ignore_errors=True)
