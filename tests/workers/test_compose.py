"""The docker-compose stack, checked without a Docker engine: services, ports, environment,
mounted files, the worker image, and every provisioned config and dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import search_attributes
from infra.observability import METRICS, TEMPORAL_SDK_METRICS
from workers.settings import KNOWN_VARIABLES, REPO_ROOT, load_settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "shadowshift.json"
EXPECTED_SERVICES = {
    "postgresql", "temporal", "temporal-setup", "temporal-ui", "worker", "haproxy",
    "otel-collector", "jaeger", "prometheus", "grafana",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append((REPO_ROOT / source, target))
    return mounts


def test_every_component_is_a_service_with_a_pinned_image(compose: dict[str, Any]) -> None:
    """The stack has every component the issue names, and no image floats on a moving tag."""
    services = _services(compose)
    assert set(services) == EXPECTED_SERVICES
    for name, service in services.items():
        if "build" in service:
            assert service["build"] == ".", name
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} has no version in its tag"
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"


def test_setup_registers_exactly_our_search_attributes(compose: dict[str, Any]) -> None:
    """The one-shot setup registers every key of workflows/search_attributes.py with its type,
    and no other (the shell loop is a copy of that module's list, so it could drift)."""
    script = " ".join(_services(compose)["temporal-setup"]["command"])
    registered = set(re.findall(r"\b(ShadowShift[A-Za-z]+):([A-Za-z]+)\b", script))
    ours = {(key.name, key.indexed_value_type.name.title()) for key in search_attributes.ALL}
    assert registered == ours


def test_ports_are_published_once(compose: dict[str, Any]) -> None:
    """The operator-facing ports are published, and no host port is claimed twice."""
    published: dict[str, str] = {}
    for name, service in _services(compose).items():
        for mapping in service.get("ports", []):
            host = str(mapping).split(":")[0]
            assert host not in published, f"{name} and {published.get(host)} both use {host}"
            published[host] = name
    assert published["7233"] == "temporal" and published["8080"] == "temporal-ui"
    assert published["3000"] == "grafana" and published["9090"] == "prometheus"
    assert published["16686"] == "jaeger" and published["4317"] == "otel-collector"
    assert published["9464"] == published["9465"] == "worker"


def test_worker_environment_is_valid_settings(compose: dict[str, Any], tmp_path: Path) -> None:
    """The worker's SHADOWSHIFT_* variables are ones the worker knows, and they parse."""
    environment = dict(_services(compose)["worker"]["environment"])
    assert set(environment) <= set(KNOWN_VARIABLES)
    passphrase = tmp_path / "pass"
    passphrase.write_text("p\n")
    # The secret lives at /run/secrets in the container; point at a real file to parse the rest.
    settings = load_settings({**environment, "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE": str(passphrase),
                              "SHADOWSHIFT_STATE_DIR": str(tmp_path)})
    assert settings.temporal_address == "temporal:7233"
    assert settings.otlp_endpoint == "http://otel-collector:4317"
    assert environment["SHADOWSHIFT_PULUMI_PASSPHRASE_FILE"] == "/run/secrets/pulumi_passphrase"
    # Prometheus scrapes exactly the ports the worker serves.
    scrape = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"]
               for job in scrape["scrape_configs"]}
    assert targets["shadowshift"] == [f"worker:{settings.prometheus_port}"]
    assert targets["temporal-sdk"] == [f"worker:{settings.temporal_metrics_port}"]


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    """Bind mounts point at files in the repository; the secret is the file `make setup` makes."""
    mounts = [m for service in _services(compose).values() for m in _bind_mounts(service)]
    assert len(mounts) >= 5
    for source, target in mounts:
        assert source.exists(), f"{source} (mounted at {target}) does not exist"
    secret = compose["secrets"]["pulumi_passphrase"]["file"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"PASSPHRASE := {secret.removeprefix('./')}" in makefile
    named = {v.split(":")[0] for s in _services(compose).values() for v in s.get("volumes", [])
             if not v.startswith(".")}
    assert named == set(compose["volumes"])


def test_worker_command_matches_the_readme_and_the_image(compose: dict[str, Any]) -> None:
    """The compose worker runs what the operations guide tells operators to run, and what the
    image runs."""
    command = _services(compose)["worker"]["command"]
    assert command == ["python", "-m", "workers.main"]
    guide = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert " ".join(command) in guide
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert f"CMD {json.dumps(command)}" in dockerfile


def test_dockerfile_runs_as_a_user_with_a_meaningful_healthcheck() -> None:
    """The image drops root and its health check asks the worker, not just the process table."""
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    text = "\n".join(lines)
    assert 'CMD ["python", "-m", "workers.health"]' in text
    assert (REPO_ROOT / "workers" / "health.py").is_file()
    for line in lines:
        if line.startswith("FROM "):
            image = line.split()[1]
            assert ":" in image and not image.endswith(":latest"), line


def test_the_image_copies_every_package_the_project_installs() -> None:
    """Each package ``pyproject.toml`` installs is copied into the image (a new layer such as
    ``contracts/`` would otherwise fail only when the container starts)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = [name.rstrip("*") for name in
                project["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    missing = [name for name in packages if f"COPY {name} {name}" not in dockerfile]
    assert packages and missing == []


def test_dashboard_charts_only_metrics_we_export() -> None:
    """Every metric name in a Grafana query is one our code exports (or the Temporal SDK
    exports under the names the worker test scrapes), and every one of ours is charted."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    ours = {m.prometheus for m in METRICS}
    allowed = set()
    for name in [*ours, *TEMPORAL_SDK_METRICS]:
        allowed |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    used = {token for expr in exprs
            for token in re.findall(r"\b(?:shadowshift|temporal)_[a-z0-9_]+", expr)}
    assert used, "no metric queries found"
    assert used <= allowed, f"unknown metrics in the dashboard: {sorted(used - allowed)}"
    charted = {name for name in ours if any(u.startswith(name) for u in used)}
    assert charted == ours, f"not charted: {sorted(ours - charted)}"
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus"


def test_grafana_provisioning_points_at_real_datasources_and_dashboards(
    compose: dict[str, Any],
) -> None:
    """Datasource uids match the dashboard's, and the dashboard folder is the one mounted."""
    base = REPO_ROOT / "deploy" / "grafana" / "provisioning"
    sources = yaml.safe_load((base / "datasources" / "datasources.yaml").read_text())
    by_uid = {s["uid"]: s for s in sources["datasources"]}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["jaeger"]["type"] == "jaeger"
    providers = yaml.safe_load((base / "dashboards" / "dashboards.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    mounts = dict((t.removesuffix(":ro"), s) for s, t in
                  ((str(s), t) for s, t in _bind_mounts(_services(compose)["grafana"])))
    assert Path(mounts[path]) == DASHBOARD.parent


def test_collector_and_prometheus_configs_are_wired() -> None:
    """The collector receives OTLP and sends traces to Jaeger; Prometheus scrapes it."""
    collector = yaml.safe_load((REPO_ROOT / "deploy/otel-collector/config.yaml").read_text())
    pipelines = collector["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == ["otlp"]
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in collector[kind], f"{component} is not configured"
    assert collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    prometheus = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"]
               for t in c["targets"]]
    assert "otel-collector:8889" in targets and "temporal:8000" in targets


def test_build_context_leaves_out_state_and_tools() -> None:
    """The passphrase and data directories under .state, and local venv and tools, never enter
    the build context; every folder the Dockerfile copies does."""
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".state", ".venv", ".tools", ".git"} <= ignored
    copied = re.findall(r"^COPY (?!--from)(\S+)", (REPO_ROOT / "Dockerfile").read_text(), re.M)
    assert copied and not set(copied) & ignored
    for source in copied:
        assert (REPO_ROOT / source).exists(), source


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is missing: run `make setup` (scripts/setup-system.sh installs "
                    "Debian's prometheus package)")
    return found


def test_prometheus_config_passes_promtool() -> None:
    """The real `promtool check config` accepts the stack's Prometheus config."""
    done = subprocess.run([_promtool(), "check", "config", "--syntax-only",
                           str(REPO_ROOT / "deploy/prometheus/prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """Every dashboard query, with Grafana's variables filled in, is valid PromQL to the real
    Prometheus parser (as recording rules checked by `promtool check rules`)."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    grafana_variables = {"$__rate_interval": "1m", "$__range": "6h", "$instance": ".*"}
    rules = []
    for number, expr in enumerate(exprs):
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unhandled Grafana variable in {expr}"
        rules.append({"record": f"shadowshift:dashboard_query_{number}", "expr": expr})
    rule_file = tmp_path / "dashboard-rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([_promtool(), "check", "rules", str(rule_file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout
