"""``make bench-shadow``: what a local shadow costs, measured side by side in one run.

One primary (``pgbench -i``, about ``--size-gb``) runs behind HAProxy in ``.state/bench-shadow/``.

- ``provision_s`` vs ``pg_basebackup_s``: ``LocalPlatform.provision_shadow`` (preflight, the
  copy started at once, ``pulumi up``: slot, data directory adopting the copy, standby started
  and accepting connections, tier settings, router entry; the Pulumi CLI and its provider host
  at ``SHADOWSHIFT_PULUMI_NICE``, recorded as ``pulumi_nice``) against a plain ``pg_basebackup``
  with the provider's flags (``-X stream -c fast --compress=server-lz4:1``, synced; a temporary
  slot instead of the stack's). ``pg_basebackup_nosync_s`` adds ``--no-sync``, the baseline of
  the first results: it leaves the copy's durability to the standby's first start (PostgreSQL
  fsyncs every file of a copy before it recovers), which provisioning cannot skip.
  ``provision_unyielding_s`` is the same provisioning with Pulumi at normal priority
  (``SHADOWSHIFT_PULUMI_NICE=0``): what yielding the CPU to the copy buys. Runs rotate
  which goes first, after one untimed warm-up copy; the shadow is destroyed between runs;
  ratios are of the medians (goal ``provision_ratio`` <= 1.2). With ``--uncached`` up to
  three more rounds run with the OS page cache dropped (machine-wide) before each timed
  operation (``uncached``).
- Load phases (no shadow, then tiers 1, 2, 3 by in-place stack updates of one shadow): the
  workload ``Writer`` commits at ``--rate`` tx/s through HAProxy for ``--load-s`` seconds.
  ``commit_latency_ms`` is its INSERT+COMMIT latency. ``replication_lag_ms`` for tiers 1-2 is
  ``replay_lag`` from ``LocalPlatform.replication_status()`` every ``STATUS_INTERVAL_S`` (NULL,
  i.e. caught up and idle, reads as 0). Tier 3 has no stream, so its lag is ack-to-visible: the
  shadow's ``max(id)`` is polled every ``POLL_S`` on one session; one writer commits ids in
  order and replay keeps that order, so an acked id became visible between the start of the
  last poll that did not show it and the return of the first that did; its lag is the midpoint
  of that window minus its ack time (resolution about one poll). ``visibility_lag_ms`` gives
  the same for every tier as a cross-check. The poller (and its load) runs only in shadow
  phases; the no-shadow phase has none.
- ``lost_acked_writes``: after each phase the poller runs until the shadow caught up, then
  ``wait_until_present`` counts acked ids missing on the shadow (must be 0).
- ``wal_bytes_shipped``: growth of ``ReplicationStatus.bytes_shipped`` over a phase (WAL sent
  for tiers 1-2; for tier 3 the archive's files: 16 MiB segments, zstd-compressed).

Everything it starts lives in one run folder, removed at exit (Ctrl-C and SIGTERM included).
Usage: ``python -m bench.shadow [--size-gb 1.0] [--quick] [--output PATH]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from bench.shadow_lab import BenchConfig, Lab
from bench.shadow_stats import percentile, rounded, summarise, visibility_lags_ms
from contracts.shadow import ReplicationStatus
from infra.local.platform import LocalPlatform
from infra.local.postgres import query_one
from workers.settings import REPO_ROOT
from workers.workload import TABLE, WorkloadStats, Writer, wait_until_present

log = logging.getLogger(__name__)

RESULTS = REPO_ROOT / "bench" / "results" / "shadow.json"
BENCH_ROOT = REPO_ROOT / ".state" / "bench-shadow"
POLL_S = 0.01
"""Interval between visibility polls of the shadow (one indexed ``max(id)`` each)."""
STATUS_INTERVAL_S = 0.25
"""Interval between ``replication_status()`` samples (each opens two connections)."""
EXPECTED = {1: ("streaming", "sync"), 2: ("streaming", "async"), 3: ("archive", "none")}


class _Poller(threading.Thread):
    """Polls the shadow's ``max(id)``; while ``steady`` is set, also samples the stream lag."""

    def __init__(self, shadow: LocalPlatform) -> None:
        super().__init__(name="shadow-poller", daemon=True)
        self.shadow = shadow
        self.polls: list[tuple[float, float, int]] = []
        self.replay_lag_ms: list[float] = []
        self.steady = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.shipped_before: int | None = None
        """``bytes_shipped`` when the phase started."""

    def run(self) -> None:
        next_status = 0.0
        try:
            with self.shadow.spec.shadow.connect() as conn:
                while not self.done.is_set():
                    sent = time.monotonic()
                    row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}").fetchone()
                    self.polls.append((sent, time.monotonic(), int(row[0]) if row else 0))
                    if self.steady.is_set() and sent >= next_status:
                        next_status = sent + STATUS_INTERVAL_S
                        lag_s = self.shadow.replication_status().lag_seconds
                        if lag_s is not None:
                            self.replay_lag_ms.append(lag_s * 1000)
                    time.sleep(POLL_S)
        except BaseException as err:  # surfaced by the main thread after join
            self.error = err


def _wait_in_sync(shadow: LocalPlatform, timeout_s: float = 180.0) -> ReplicationStatus:
    """Wait until the shadow reached its tier's state and streams within 1 MiB."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = shadow.replication_status()
        tier = shadow.spec.tier
        caught_up = tier == 3 or (status.lag_bytes or 0) < 2**20
        if (status.state, status.sync_state) == EXPECTED[tier] and caught_up:
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"tier {tier} shadow not in sync after {timeout_s}s: {status}")
        time.sleep(0.2)


def run_phase(lab: Lab, shadow: LocalPlatform | None, first_id: int) -> dict[str, Any]:
    """One load phase at the configured rate, with or without a shadow."""
    wal_before = query_one(lab.primary.endpoint, "SELECT pg_current_wal_lsn()::text")
    poller = _Poller(shadow) if shadow else None
    if poller:
        poller.shipped_before = _wait_in_sync(poller.shadow).bytes_shipped
        poller.steady.set()
        poller.start()
    writer = Writer(lab.router, rate=lab.config.rate, first_id=first_id).start()
    started = time.monotonic()
    try:
        time.sleep(lab.config.load_s)
    finally:
        stats = writer.stop()
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {
        "acked_writes": len(stats.acked_ids), "failed_ops": stats.failed_ops,
        "achieved_rate_tx_s": round(len(stats.acked_ids) / elapsed, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),  # flags neighbours' noise
        "commit_latency_ms": summarise(stats.commit_latencies_ms),
        "wal_bytes_generated": int(query_one(
            lab.primary.endpoint, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
            (wal_before,))),
    }
    return {**result, **_shadow_figures(poller, stats)} if poller else result


def _shadow_figures(poller: _Poller, stats: WorkloadStats) -> dict[str, Any]:
    """Lag, lost writes and shipped bytes once the shadow caught up with the phase."""
    shadow, tier = poller.shadow, poller.shadow.spec.tier
    poller.steady.clear()
    # Keep polling until the shadow shows the last ack, so slow ids are measured, not dropped.
    deadline = time.monotonic() + 3 * shadow.spec.archive_interval_s + 60
    last_id = stats.acked_ids[-1] if stats.acked_ids else 0
    while poller.is_alive() and time.monotonic() < deadline and (
            not poller.polls or poller.polls[-1][2] < last_id):
        time.sleep(0.1)
    poller.done.set()
    poller.join(timeout=10)
    if poller.error is not None:
        raise poller.error
    # After the catch-up, so the tier 3 segment closed by archive_timeout counts too.
    shipped_after = shadow.replication_status().bytes_shipped
    missing = wait_until_present(shadow.spec.shadow, stats.acked_ids, timeout_s=30)
    visible = visibility_lags_ms(stats.acked_ids, stats.ack_times, poller.polls)
    return {
        "replication_lag_ms": summarise(visible if tier == 3 else poller.replay_lag_ms),
        "replication_lag_source": "ack_to_visible" if tier == 3 else "replay_lag",
        "visibility_lag_ms": summarise(visible),
        "lost_acked_writes": len(missing),
        "wal_bytes_shipped": (shipped_after - poller.shipped_before
                              if shipped_after is not None and poller.shipped_before is not None
                              else None),
    }


PROVISION_OPS = ("provision", "pg_basebackup", "pg_basebackup_nosync", "provision_unyielding")
"""Timed in every round, in a rotating order."""
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
UNCACHED_REPEATS = 3
"""Most runs with the page cache dropped (one per operation order)."""


def measure_provisioning(lab: Lab, *, uncached: bool = False) -> list[dict[str, Any]]:
    """``repeats`` rounds of provisioning and the two plain copies, rotating which goes first
    so warm caches and the neighbours' load favour none. Before each timed operation the
    dirty pages earlier ones left are flushed; ``uncached`` also drops the page cache.

    An untimed copy goes first (cached rounds): right after loading 4 GB, the first of four
    plain copies in a row took 7.0 s and the others 5.4-6.4 s (measured), and the rotation
    always gives that first slot to provisioning."""
    if not uncached:
        log.info("Warm-up copy (untimed): %.3f s", lab.time_basebackup())
    runs: list[dict[str, Any]] = []
    # Each drop empties the page cache of the whole machine, neighbours' included: fewer runs.
    repeats = min(lab.config.repeats, UNCACHED_REPEATS) if uncached else lab.config.repeats
    for index in range(repeats):
        shift = index % len(PROVISION_OPS)
        order = PROVISION_OPS[shift:] + PROVISION_OPS[:shift]
        timings: dict[str, Any] = {"order": list(order)}
        for op in order:
            os.sync()
            if uncached:
                DROP_CACHES.write_text("1\n")
            if op == "provision":
                timings.update(lab.time_provision())
            elif op == "provision_unyielding":
                timings["provision_unyielding_s"] = lab.time_provision(yielding=False)[
                    "provision_s"]
            elif op == "pg_basebackup":
                timings["pg_basebackup_s"] = round(lab.time_basebackup(), 3)
            else:
                timings["pg_basebackup_nosync_s"] = round(lab.time_basebackup(sync=False), 3)
        timings["load_average_1m"] = round(os.getloadavg()[0], 2)
        log.info("Provisioning run %s%s: %s", index + 1, " (uncached)" if uncached else "",
                 timings)
        runs.append(timings)
    return runs


def can_drop_caches() -> str | None:
    """``None`` if this process may drop the page cache, else why not."""
    if not DROP_CACHES.exists():
        return f"{DROP_CACHES} does not exist"
    if not os.access(DROP_CACHES, os.W_OK):
        return f"{DROP_CACHES} is not writable (needs root outside a read-only /proc/sys)"
    return None


def measure_phases(lab: Lab) -> dict[str, Any]:
    """Load phases without a shadow, then tiers 1, 2 and 3 of one shadow."""
    phases: dict[str, Any] = {}
    next_id = 1
    for tier in (None, 1, 2, 3):
        name = f"tier{tier}" if tier else "no_shadow"
        shadow = lab.platform(tier) if tier else None
        if shadow:
            # One copy, then in-place stack updates (the product's tier change) for 2 and 3.
            shadow.provision_shadow()
        phases[name] = run_phase(lab, shadow, next_id)
        next_id += phases[name]["acked_writes"] + phases[name]["failed_ops"] + 1
        log.info("Phase %s: %s", name, phases[name])
        if shadow:
            shadow.close()
    return phases


def run(config: BenchConfig, work_dir: Path) -> dict[str, Any]:
    """Measure everything in ``work_dir`` and return the results (the folder is removed)."""
    lab = Lab(work_dir, config)
    machine = machine_info()  # before we load the machine ourselves
    try:
        scale = lab.start()
        db_bytes = int(query_one(lab.primary.endpoint, "SELECT pg_database_size('postgres')"))
        log.info("Primary loaded: pgbench scale %s, %.2f GiB.", scale, db_bytes / 2**30)
        runs = measure_provisioning(lab)
        why_not = can_drop_caches() if config.uncached else "not asked for (--uncached)"
        uncached: dict[str, Any] = {"skipped": why_not}
        if why_not is None:
            uncached_runs = measure_provisioning(lab, uncached=True)
            uncached = {**provision_summary(uncached_runs), "runs": uncached_runs}
        phases = measure_phases(lab)
        machine["postgresql"] = query_one(lab.primary.endpoint, "SHOW server_version")
    finally:
        lab.close()
    return _report(config, machine, scale, db_bytes, runs, uncached, phases,
                   pulumi_nice=lab.settings.pulumi_nice)


def provision_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the provisioning runs and their ratios."""
    def median_of(key: str) -> float | None:
        return rounded(percentile([r[key] for r in runs], 50))

    def ratio(numerator: float | None, denominator: float | None) -> float | None:
        return round(numerator / denominator, 3) if numerator and denominator else None

    for timings in runs:
        # What provisioning adds to its own copy (which overlaps Pulumi's start).
        timings["overhead_s"] = round(timings["provision_s"] - timings["seed_s"], 3)
    provision_s = median_of("provision_s")
    unyielding = median_of("provision_unyielding_s")
    synced, nosync = median_of("pg_basebackup_s"), median_of("pg_basebackup_nosync_s")
    return {"pg_basebackup_s": synced, "pg_basebackup_nosync_s": nosync,
            "provision_s": provision_s, "provision_ratio": ratio(provision_s, synced),
            "provision_ratio_nosync": ratio(provision_s, nosync),
            "provision_seed_s": median_of("seed_s"),
            "provision_overhead_s": median_of("overhead_s"),
            "provision_unyielding_s": unyielding,
            "provision_ratio_unyielding": ratio(unyielding, synced)}


def _report(config: BenchConfig, machine: dict[str, Any], scale: int, db_bytes: int,
            runs: list[dict[str, Any]], uncached: dict[str, Any],
            phases: dict[str, Any], *, pulumi_nice: int) -> dict[str, Any]:
    tiers = ("tier1", "tier2", "tier3")
    return {
        "benchmark": "shadow",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "parameters": {**asdict(config), "pgbench_scale": scale, "db_bytes": db_bytes,
                       "poll_s": POLL_S, "status_interval_s": STATUS_INTERVAL_S,
                       "pulumi_nice": pulumi_nice},
        "method": _method_notes(),
        **provision_summary(runs),
        "provision_runs": runs,
        "uncached": uncached,
        "replication_lag_ms": {t: phases[t]["replication_lag_ms"] for t in tiers},
        "replication_lag_source": {t: phases[t]["replication_lag_source"] for t in tiers},
        "visibility_lag_ms": {t: phases[t]["visibility_lag_ms"] for t in tiers},
        "commit_latency_ms": {name: phase["commit_latency_ms"] for name, phase in phases.items()},
        "lost_acked_writes": sum(phases[t]["lost_acked_writes"] for t in tiers),
        "wal_bytes_shipped": {t: phases[t]["wal_bytes_shipped"] for t in tiers},
        "phases": phases,
    }


def _method_notes() -> list[str]:
    """The module docstring's bullets, one string each: the method travels with the figures."""
    block = next(p for p in (__doc__ or "").split("\n\n") if p.startswith("- "))
    return [" ".join(part.split()) for part in block[2:].split("\n- ")]


def machine_info() -> dict[str, Any]:
    """The machine and commit the figures belong to (taken before the run loads it)."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *argv], capture_output=True,
                              text=True, check=False).stdout.rstrip()

    # Others' uncommitted edits to the code under test would make the commit hash a half-truth.
    dirty = git("status", "--porcelain", "--", "infra", "workers/workload.py", "bench/shadow.py",
                "bench/shadow_lab.py")
    return {"cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "commit": git("rev-parse", "HEAD") or None,
            "uncommitted_changes": [line[3:] for line in dirty.splitlines()]}


def _summary(result: dict[str, Any]) -> str:
    params = result["parameters"]
    lines = [f"{params['db_bytes'] / 2**30:.2f} GiB primary, medians of "
             f"{params['repeats']} runs: pg_basebackup {result['pg_basebackup_s']} s, provision "
             f"{result['provision_s']} s, ratio {result['provision_ratio']} (goal <= 1.2); "
             f"pg_basebackup --no-sync {result['pg_basebackup_nosync_s']} s, ratio "
             f"{result['provision_ratio_nosync']}",
             "uncached: " + (f"pg_basebackup {result['uncached']['pg_basebackup_s']} s, "
                             f"provision {result['uncached']['provision_s']} s, ratio "
                             f"{result['uncached']['provision_ratio']}; --no-sync ratio "
                             f"{result['uncached']['provision_ratio_nosync']}"
                             if "skipped" not in result["uncached"]
                             else f"skipped: {result['uncached']['skipped']}"),
             f"{params['rate']} tx/s for {params['load_s']} s per phase (ms, p50 / p99):"]
    lines += [f"  commit latency  {name:<9} {st['p50']} / {st['p99']}"
              for name, st in result["commit_latency_ms"].items()]
    lines += [f"  replication lag {tier:<9} {st['p50']} / {st['p99']} "
              f"({result['replication_lag_source'][tier]}), "
              f"{result['wal_bytes_shipped'][tier]} bytes shipped"
              for tier, st in result["replication_lag_ms"].items()]
    lines.append(f"Lost acknowledged writes: {result['lost_acked_writes']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print a summary, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 0.05 GB, 10 s phases, 2 s tier-3 interval")
    parser.add_argument("--uncached", action="store_true",
                        help="also time provisioning with the OS page cache dropped (root)")
    for flag, kind in (("--size-gb", float), ("--repeats", int), ("--load-s", float),
                       ("--rate", float), ("--archive-interval-s", int)):
        parser.add_argument(flag, type=kind, help="overrides the BenchConfig default")
    args = parser.parse_args(argv)
    base = (BenchConfig(size_gb=0.05, load_s=10.0, archive_interval_s=2, quick=True)
            if args.quick else BenchConfig())
    overrides = {k: v for k, v in vars(args).items()
                 if k in BenchConfig.__dataclass_fields__ and v is not None
                 and k not in ("quick", "uncached")}
    overrides["uncached"] = args.uncached
    config = BenchConfig(**{**asdict(base), **overrides})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    # The postgres user has to traverse down to the data directories.
    for folder in (BENCH_ROOT.parent, BENCH_ROOT):
        folder.chmod(0o755)
    work_dir = BENCH_ROOT / f"run-{os.getpid()}"
    work_dir.mkdir(mode=0o755)
    # SIGTERM unwinds through the clean-up as Ctrl-C does, and so does SIGINT even when a
    # non-interactive shell started us in the background with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    started = time.monotonic()
    result = run(config, work_dir)
    result["runtime_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(_summary(result))
    print(f"Wrote {args.output} in {result['runtime_s']} s.")
    return 0 if result["lost_acked_writes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
