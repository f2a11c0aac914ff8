"""``make bench-shadow-sizes``: ``provision_ratio`` as the primary grows.

Provisioning a new shadow costs a plain ``pg_basebackup`` plus Pulumi's fixed work for a new
stack (``stack init`` and ``up`` each start the CLI and derive the passphrase key; the
dynamic-provider host starts), part of which overlaps the copy and competes with it for CPU.
``make bench-shadow`` measures the ratio at the issue's ~1 GB; this measures it the same way
(``bench.shadow.measure_provisioning``: rotated order, synced and ``--no-sync`` copies, shadow
destroyed between runs) for each ``--sizes`` value, one fresh primary per size, so the size
from which ``provision_ratio`` <= 1.2 holds on this machine is a measured figure.
``overhead_s`` is ``provision_s - pg_basebackup_s`` (medians).

Usage: ``python -m bench.shadow_sizes [--sizes 1 2 4] [--repeats 3] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.shadow import BENCH_ROOT, machine_info, measure_provisioning, provision_summary
from bench.shadow_lab import BenchConfig, Lab
from infra.local.postgres import query_one

log = logging.getLogger(__name__)

RESULTS = Path("bench/results/shadow_sizes.json")


def measure_size(size_gb: float, repeats: int, work_dir: Path) -> dict[str, Any]:
    """Provisioning against plain copies of one fresh primary of about ``size_gb``."""
    lab = Lab(work_dir, BenchConfig(size_gb=size_gb, repeats=repeats))
    try:
        scale = lab.start()
        db_bytes = int(query_one(lab.primary.endpoint, "SELECT pg_database_size('postgres')"))
        log.info("Primary loaded: pgbench scale %s, %.2f GiB.", scale, db_bytes / 2**30)
        runs = measure_provisioning(lab)
    finally:
        lab.close()
    summary = provision_summary(runs)
    overhead = summary["provision_s"] - summary["pg_basebackup_s"]
    return {"size_gb": size_gb, "pgbench_scale": scale, "db_bytes": db_bytes, **summary,
            "overhead_s": round(overhead, 3), "runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each size, print one line per size, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.shadow_sizes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                        help="primary sizes in GB (default: 1 2 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or not all(math.isfinite(size) and size > 0 for size in args.sizes):
        parser.error("--repeats and every --sizes value must be positive (and finite)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for folder in (BENCH_ROOT.parent, BENCH_ROOT):  # postgres must traverse down to its data
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    for signum in (signal.SIGINT, signal.SIGTERM):  # unwind through the labs' clean-up
        signal.signal(signum, signal.default_int_handler)
    started = time.monotonic()
    machine = machine_info()
    sizes: list[dict[str, Any]] = []
    for size in args.sizes:
        work_dir = BENCH_ROOT / f"sizes-{os.getpid()}-{size:g}"
        work_dir.mkdir(mode=0o755)
        sizes.append(measure_size(size, args.repeats, work_dir))
        done = sizes[-1]
        print(f"{done['db_bytes'] / 2**30:.2f} GiB: pg_basebackup {done['pg_basebackup_s']} s, "
              f"provision {done['provision_s']} s, ratio {done['provision_ratio']} "
              f"(goal <= 1.2), overhead {done['overhead_s']} s", flush=True)
        # After every size, so a failure at a large one keeps the sizes measured before it.
        _write(args.output, {
            "benchmark": "shadow_sizes",
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine, "parameters": {"repeats": args.repeats, "sizes": args.sizes},
            "method": " ".join((__doc__ or "").split("\n\n")[1].split()),
            "complete": len(sizes) == len(args.sizes), "sizes": sizes,
            "runtime_s": round(time.monotonic() - started, 1)})
    print(f"Wrote {args.output} in {round(time.monotonic() - started, 1)} s.")
    return 0


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
