"""``make bench-shadow`` on namespace hosts: what provisioning a shadow on another host costs
against a plain copy, measured side by side in one run.

Two hosts (``infra.hosts``: network namespaces with their own address, disk and cgroups), a
``shadowshift agent`` in each, a Temporal dev server, and a primary of about ``--size-gb``
(``pgbench -i``) made by the first host's agent.

- ``provision_s``: what the protection's provisioning runs on the hosts platform, as the
  workflow runs it (``workers.task_runner.TaskRunner.provision``):
  ``HostsPlatform.provision_shadow`` (preflight, the slot) hands back the seed task, which
  the second host's agent runs (``pg_basebackup`` from the primary, standby settings, start,
  streaming; through Temporal) while the control side's second call runs ``pulumi up``
  (router service and entry, the slot adopted, the tier's settings once the standby
  streams). Tier 2 (as the single-host benchmark).
- ``pg_basebackup_s``: a plain ``pg_basebackup`` run inside the second host with the agent's
  flags (``-X stream -c fast``, synced, no compression), into the same filesystem.

Runs rotate which goes first, after one untimed warm-up copy; the shadow is destroyed between
runs (its server by its agent, then ``pulumi destroy``); ratios are of the medians (goal
``provision_ratio`` <= 1.2). Everything it starts is gone at exit.
Usage: ``python -m bench.shadow_hosts [--size-gb 1.0] [--repeats 3] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.shadow_lab import MB_PER_PGBENCH_SCALE
from contracts.shadow import PlatformRequest
from infra.hosts.platform import HostsPlatform
from infra.local.haproxy import HAProxyManager
from infra.local.ports import free_port
from infra.local.postgres import PgEndpoint, pg_bin, prepare_dir
from infra.pulumi_engine import StackDriver
from workers.demo_services import dev_server
from workers.hosts_lab import PG_PORT, HostsLab, lab_settings
from workers.registry import platforms, pulumi_config
from workers.settings import REPO_ROOT, Settings
from workers.task_runner import TaskRunner

log = logging.getLogger("bench.shadow_hosts")
PRIMARY_SETTINGS = {"max_wal_senders": "10", "max_wal_size": "'2GB'",
                    "shared_buffers": "'256MB'"}


@dataclass
class HostsBench:
    """The lab, the task runner and the primary of one run."""

    lab: HostsLab
    runner: TaskRunner
    settings: Settings
    instance_id: str
    router_port: int

    @property
    def hosts(self) -> tuple[str, str]:
        """(the primary's host, the shadow's host)."""
        first, second = self.lab.hosts
        return first, second

    @property
    def request(self) -> PlatformRequest:
        """This primary's tier-2 protection."""
        return PlatformRequest(self.lab.spec(self.instance_id, *self.hosts, self.router_port,
                                             tier=2))

    def platform(self) -> HostsPlatform:
        """The hosts platform for this primary's tier-2 shadow."""
        built = platforms(self.settings).platform_for(self.request)
        assert isinstance(built, HostsPlatform)
        return built

    def load(self, size_gb: float) -> int:
        """The primary (by its agent) filled by ``pgbench -i``; returns the scale."""
        self.runner.call(self.lab.ensure_primary(self.runner.client, self.runner.task_queue,
                                                 self.hosts[0], self.instance_id,
                                                 settings=PRIMARY_SETTINGS))
        primary = PgEndpoint(host=str(self.lab.hosts[self.hosts[0]].address), port=PG_PORT)
        scale = max(1, round(size_gb * 1024 / MB_PER_PGBENCH_SCALE))
        subprocess.run([pg_bin("pgbench"), "-i", "-q", "-I", "dtGvp", "-s", str(scale),
                        "-h", primary.host, "-p", str(primary.port), "-U", "postgres",
                        "postgres"], check=True, capture_output=True, text=True)
        with primary.connect() as conn:
            conn.execute("CHECKPOINT")
        return scale

    def time_provision(self) -> dict[str, float]:
        """Seconds for the provisioning, then the destroy."""
        shadow = self.platform()
        served = platforms(self.settings)
        started = time.perf_counter()
        self.runner.provision(served.platform_for, self.request)
        done = time.perf_counter()
        self.runner.run_all(shadow.host_tasks("destroy", shadow.spec.standby_node))
        shadow.destroy_shadow()
        shadow.close()
        return {"provision_s": round(done - started, 3),
                "destroy_s": round(time.perf_counter() - done, 3)}

    def time_basebackup(self) -> float:
        """Seconds for a plain ``pg_basebackup`` inside the shadow's host (copy removed)."""
        host = self.lab.hosts[self.hosts[1]]
        scratch = host.data_dir / f"scratch-{uuid.uuid4().hex[:6]}"
        prepare_dir(scratch)  # the filesystem is the host's, the folder the server user's
        source = PgEndpoint(host=str(self.lab.hosts[self.hosts[0]].address), port=PG_PORT)
        argv = [pg_bin("pg_basebackup"), "-d", source.conninfo(), "-D", str(scratch / "data"),
                "-X", "stream", "-c", "fast"]
        started = time.perf_counter()
        host.run(argv, user="postgres", timeout_s=600)
        elapsed = time.perf_counter() - started
        shutil.rmtree(scratch)
        return elapsed


def measure(bench: HostsBench, size_gb: float, repeats: int) -> dict[str, Any]:
    """The rotated runs and their medians."""
    scale = bench.load(size_gb)
    bench.time_basebackup()  # warm-up: the first copy pays for cold caches alone
    runs = []
    for round_no in range(repeats):
        order = ["provision", "pg_basebackup"][:: 1 if round_no % 2 == 0 else -1]
        run: dict[str, Any] = {"order": order}
        for what in order:
            if what == "provision":
                run.update(bench.time_provision())
            else:
                run["pg_basebackup_s"] = round(bench.time_basebackup(), 3)
        run["load_average_1m"] = round(os.getloadavg()[0], 2)
        log.info("run %d: %s", round_no + 1, run)
        runs.append(run)

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 3)
    provision, basebackup = median("provision_s"), median("pg_basebackup_s")
    return {"pgbench_scale": scale, "pg_basebackup_s": basebackup, "provision_s": provision,
            "provision_ratio": round(provision / basebackup, 3),
            "provision_overhead_s": round(provision - basebackup, 3), "runs": runs}


async def run(size_gb: float, repeats: int) -> dict[str, Any]:
    """Start everything, measure, stop everything."""
    root = Path(tempfile.mkdtemp(prefix="ssb", dir="/tmp"))  # short: socket paths
    root.chmod(0o755)
    settings = lab_settings(root / "state")
    disk_mib = max(1024, int(size_gb * 1024 * 3))  # the copy, its WAL and a scratch copy
    try:
        async with dev_server() as server:
            host, port = server.address.rsplit(":", 1)
            tag = uuid.uuid4().hex[:4]
            lab = await asyncio.to_thread(
                HostsLab.create, StackDriver(pulumi_config(settings)), root,
                (f"b{tag}a", f"b{tag}b"), (host, int(port)), disk_mib=disk_mib)
            runner: TaskRunner | None = None
            try:
                for name in lab.hosts:
                    lab.start_agent(name)
                runner = TaskRunner(server.address).start()
                await asyncio.to_thread(runner.call, lab.wait_for_agents(runner.client))
                bench = HostsBench(lab, runner, lab.worker_settings(settings), f"bench-{tag}",
                                   free_port())
                return await asyncio.to_thread(measure, bench, size_gb, repeats)
            finally:
                if runner is not None:
                    runner.close()
                # The router the provisioning made outlives a shadow by design; it is ours.
                HAProxyManager(settings.state_dir / "haproxy").stop()
                await asyncio.to_thread(lab.close)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench/results/shadow_hosts.json"))
    args = parser.parse_args(argv)
    if not 0.05 <= args.size_gb <= 8 or not 1 <= args.repeats <= 20:
        parser.error("--size-gb must be within 0.05..8 and --repeats within 1..20")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.time()
    results = asyncio.run(run(args.size_gb, args.repeats))
    report = {
        "benchmark": "shadow_hosts",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu_count": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
                    "python": platform.python_version(), "commit": _commit()},
        "parameters": {"size_gb": args.size_gb, "repeats": args.repeats, "tier": 2},
        "method": [line.strip() for line in __doc__.split("\n\n")[1:3]],
        **results,
        "took_s": round(time.time() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("runs", "method")},
                     indent=2))
    return 0


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False)
    return done.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
