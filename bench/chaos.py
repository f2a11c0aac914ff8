"""``make chaos``: the fault-injection suite on namespace hosts; writes
``bench/results/chaos.json``.

Every scenario of :mod:`bench.chaos_scenarios` runs on a fresh rig under 150 writes/s through
the router and a split-brain monitor; the primary-host crash runs ``--crash-runs`` times for
the failover figures (first acknowledged write on the shadow after the host died).

    python -m bench.chaos [--only NAME ...] [--crash-runs 5] [--output PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.chaos_scenarios import NO_FAILOVER, NOT_YET, SCENARIOS, ScenarioResult, run_scenario
from bench.chaos_server import RestartableServer
from workers.settings import REPO_ROOT


async def run(only: list[str], crash_runs: int, output: Path) -> dict[str, Any]:
    """Run the chosen scenarios on one dev server and write ``output``."""
    names = only or list(SCENARIOS)
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    server = RestartableServer()
    client = await server.start()
    results: list[ScenarioResult] = []
    crashes: list[ScenarioResult] = []
    try:
        for name in names:
            runs = crash_runs if name == "primary_host_crash" else 1
            for index in range(runs):
                result = await run_scenario(client, name, SCENARIOS[name],
                                            restart_temporal=server.restart)
                print(f"{name} [{index + 1}/{runs}]: {result.outcome}, recovery "
                      f"{result.recovery_s} s, first write after fault "
                      f"{result.first_write_after_fault_s} s, lost {result.lost_acked_writes}, "
                      f"split-brain {result.split_brain_observations}, failed ops "
                      f"{result.failed_client_ops}" + (f" ({result.detail})"
                                                       if result.detail else ""), flush=True)
                (crashes if name == "primary_host_crash" else results).append(result)
    finally:
        await server.stop()
    report = _report(results, crashes, load_start, time.monotonic() - started)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _report(results: list[ScenarioResult], crashes: list[ScenarioResult], load_start: float,
            seconds: float) -> dict[str, Any]:
    times = [r.first_write_after_fault_s * 1000 for r in crashes
             if r.first_write_after_fault_s is not None]
    scenarios = [r.to_json() for r in results]
    if crashes:  # one entry for the crash, its worst run's verdict, every run listed
        worst = max(crashes, key=lambda r: ("converged", "degraded", "failed").index(r.outcome))
        entry = worst.to_json()
        entry["runs"] = [r.to_json() for r in crashes]
        scenarios.insert(0, entry)
    return {
        "scenarios": scenarios,
        "host_crash_failover_ms": {
            "p50": round(statistics.median(times), 1) if times else None,
            "max": round(max(times), 1) if times else None,
            "runs": len(times),
            "what": "SIGKILL of every process of the primary's host -> first write "
                    "acknowledged through the router after it (150 tx/s, tier 1, "
                    "failover_after_s 1)",
        },
        "false_failovers": sum(max(r.failovers, 0) for r in results if r.name in NO_FAILOVER),
        "not_yet_in_the_suite": list(NOT_YET),
        "load_average_at_start": round(load_start, 2),
        "suite_s": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=[], choices=sorted(SCENARIOS),
                        help="run only these scenarios")
    parser.add_argument("--crash-runs", type=int, default=5,
                        help="runs of the primary-host crash (failover p50/max)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench/results/chaos.json")
    args = parser.parse_args(argv)
    if args.crash_runs < 1:
        parser.error("--crash-runs must be at least 1")
    report = asyncio.run(run(args.only, args.crash_runs, args.output))
    failed = [s["name"] for s in report["scenarios"] if s["outcome"] == "failed"]
    print(json.dumps({k: v for k, v in report.items() if k != "scenarios"}, indent=2))
    print(f"wrote {args.output}; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
