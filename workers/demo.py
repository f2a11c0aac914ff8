"""``make demo``: the product's main job on this machine, end to end, in about ten minutes.

Phases (one progress line each): record the failure trace and check the model on it offline →
start the Temporal dev server (Web UI link printed) → two hosts (network namespaces with their
own address, disk and cgroups; a Pulumi stack), a ShadowShift agent in each → start the
control worker → the primary PostgreSQL, made by the first host's agent → client writes
through HAProxy (on this machine) → protect the primary (tier 1: the control worker runs
Pulumi, the second host's agent copies the shadow) → steady state, Temporal actions counted →
a real incident recorded on an application server (ASD, 19 unnamed metrics; the summary names
it) replays into the primary's metrics (metric overlay over the agent's real samples) → the
fleet watcher's model predicts and the protection cuts over to the other host → the primary's
host fails at the failure point (every process in it killed if it still served; the product's
failure detection then fails over) → the former primary rejoins as the shadow → every
acknowledged write checked → ``demo-out/summary.json`` (also on stdout) and
``demo-out/timeline.png``.

Everything it starts is stopped on the way out, on success, failure and Ctrl-C (exit 130).
``--healthy-hours`` shortens the steady state; the real incident needs about a day of the
instance's history before the model's baselines speak, so quick runs (the end-to-end test)
replay the synthetic disk degradation: ``--trace synthetic --healthy-hours 4 --threshold 60``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from workers.demo_run import DemoOptions, run_demo, write_summary
from workers.demo_services import (
    demo_payload_keys,
    dev_server,
    fresh_state_dir,
    hosts_service,
    say,
)
from workers.demo_trace import TRACE_KINDS, build_trace
from workers.demo_watch import Interrupted
from workers.process_exit import exit_process
from workers.settings import REPO_ROOT

STATE_DIR = REPO_ROOT / ".state" / "demo"
OUT_DIR = REPO_ROOT / "demo-out"


async def demo(options: DemoOptions, state_dir: Path = STATE_DIR,
               out_dir: Path = OUT_DIR) -> dict[str, Any]:
    """Run the demo; returns the summary (also written to ``out_dir``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        summary = await _run(options, state_dir, out_dir, stop)
    except Exception as err:
        # A terminal's Ctrl-C reaches the whole process group: the dev server and PostgreSQL
        # may die before the demo notices the signal, so an error after it is an interruption.
        if stop.is_set():
            raise Interrupted from err
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    write_summary(out_dir, summary)
    say(f"Summary in {out_dir / 'summary.json'}, timeline in {out_dir / 'timeline.png'}.")
    return summary


async def _run(options: DemoOptions, state_dir: Path, out_dir: Path,
               stop: asyncio.Event) -> dict[str, Any]:
    fresh_state_dir(state_dir, owned=state_dir == STATE_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    trace = build_trace(out_dir, options.healthy_hours, options.trace)
    say(f"Failure trace: {trace.source}; {options.healthy_hours:g} h of it before the "
        f"incident.")
    async with dev_server(demo_payload_keys(state_dir)) as server:
        say(f"Temporal dev server at {server.address}; Web UI at {server.ui_url} (payloads "
            "are encrypted; the UI decodes them through a codec server on 127.0.0.1)")
        say("Creating two hosts (network namespaces) and starting an agent in each.")
        async with hosts_service(state_dir, server, server.key_file) as service:
            primary, shadow = (service.lab.hosts[h] for h in (service.primary_host,
                                                             service.shadow_host))
            say(f"Hosts {service.primary_host} ({primary.address}) and {service.shadow_host} "
                f"({shadow.address}), each with its agent.")
            return await run_demo(options, trace, server, service, state_dir, out_dir, stop)


def parse_options(argv: list[str] | None) -> tuple[DemoOptions, Path, Path]:
    """Command-line knobs (all optional)."""
    parser = argparse.ArgumentParser(prog="python -m workers.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = DemoOptions()
    parser.add_argument("--healthy-hours", type=float, default=defaults.healthy_hours,
                        help="trace hours before the degradation (steady state); default "
                             "%(default)s")
    parser.add_argument("--trace", choices=TRACE_KINDS, default=defaults.trace,
                        help="the real ASD incident (default) or the synthetic disk degradation "
                             "(predicted after a few hours: quick runs)")
    parser.add_argument("--threshold", type=float, default=defaults.threshold,
                        help="the protection's readiness threshold; default %(default)s")
    parser.add_argument("--recovery-timeout", type=float, default=defaults.recovery_timeout_s,
                        help="seconds to wait for the former primary to rejoin")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR,
                        help="working folder, emptied first (default %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR,
                        help="where summary.json and timeline.png go (default %(default)s)")
    args = parser.parse_args(argv)
    if not 2 <= args.healthy_hours <= 48:
        parser.error("--healthy-hours must be within 2..48")
    if not 0 <= args.threshold <= 100:
        parser.error("--threshold must be within 0..100")
    return DemoOptions(trace=args.trace, healthy_hours=args.healthy_hours,
                       threshold=args.threshold, recovery_timeout_s=args.recovery_timeout,
                       ), args.state_dir, args.out_dir


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``make demo``: 0 when the demo ran, 130 on Ctrl-C, 1 on failure."""
    # ``shadowshift demo`` calls main() with its own sys.argv: no arguments means defaults.
    options, state_dir, out_dir = parse_options(argv if argv is not None else [])
    try:
        asyncio.run(demo(options, state_dir.resolve(), out_dir.resolve()))
    except (KeyboardInterrupt, Interrupted):
        say("Interrupted; everything started by the demo was stopped.")
        return 130
    except Exception as err:  # the context managers already cleaned up
        say(f"The demo failed: {type(err).__name__}: {err}")
        return 1
    return 0


if __name__ == "__main__":
    exit_process(main(sys.argv[1:]))
