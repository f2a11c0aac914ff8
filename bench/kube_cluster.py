"""``make bench-kube-cluster``: what the loopback Kubernetes control plane costs to start and
to keep.

1. Start-to-ready, ``--runs`` times (default 5): from :meth:`LoopbackCluster.start` until etcd,
   the API server, the controller-manager, the scheduler and KWOK are each healthy and the
   controllers have made the ``default`` ServiceAccount; median and spread.
2. Resident memory of each process once the first cluster has two fake nodes and the Gateway
   API CRDs (what the test fixture sets up) and has sat idle for ``--idle-s`` seconds. The idle
   interval is the thing measured, not a stand-in for a condition.

The machine's load average is recorded with the figures: on a shared machine they move.

Usage: ``python -m bench.kube_cluster [--runs N] [--idle-s S] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra.kubernetes.cluster import LoopbackCluster
from infra.kubernetes.manifests import install_crds
from infra.kubernetes.nodes import ZONE_LABEL, register_fake_node
from infra.kubernetes.toolchain import find_toolchain

RESULTS = Path(__file__).resolve().parent / "results" / "kube_cluster.json"
MIB = 1024 * 1024


def measure(runs: int, idle_s: float) -> dict[str, Any]:
    """Start ``runs`` clusters one after another; the first also gets the idle-RSS reading."""
    toolchain = find_toolchain()
    starts: list[float] = []
    rss_mib: dict[str, float] = {}
    for run in range(runs):
        with LoopbackCluster(toolchain) as cluster:
            assert cluster.started_in_s is not None
            starts.append(round(cluster.started_in_s, 2))
            if run == 0:
                api = cluster.api()
                install_crds(api, toolchain.gateway_api_crd_files)
                for zone in ("zone-a", "zone-b"):
                    register_fake_node(api, f"kwok-{zone}", labels={ZONE_LABEL: zone})
                time.sleep(idle_s)
                rss_mib = {name: round(size / MIB, 1)
                           for name, size in cluster.resident_bytes().items()}
    return {
        "start_to_ready_s": starts,
        "start_to_ready_median_s": round(statistics.median(starts), 2),
        "idle_s": idle_s,
        "idle_rss_mib": rss_mib,
        "idle_rss_total_mib": round(sum(rss_mib.values()), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = measure(args.runs, args.idle_s)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
