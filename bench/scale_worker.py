"""The bench-scale worker process: the production worker, with the ``scale-double`` platform.

Every workflow and activity is the production registry's (``workers.registry``), built with
:func:`bench.scale_double.platforms`: the platform activities, the cutover's and the fleet
watcher's observer reach the double instead of PostgreSQL and HAProxy, through the same
platform contract. The feedback-loop recorder is off (the double has nothing to probe).

Run: ``python -m bench.scale_worker --address HOST:PORT --task-queue Q --state-dir DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
from pathlib import Path

from temporalio.client import Client

from bench import scale_double
from contracts.wire import DATA_CONVERTER
from workers import registry
from workers.settings import Settings


async def run(address: str, task_queue: str, state_dir: Path) -> None:
    """Serve ``task_queue`` until cancelled."""
    passphrase = state_dir / "pulumi-passphrase"
    passphrase.write_text("bench-scale-unused\n")  # settings require one; nothing uses it
    settings = Settings(temporal_address=address, task_queue=task_queue, state_dir=state_dir,
                        pulumi_passphrase_file=passphrase, log_level="WARNING")
    client = await Client.connect(address, data_converter=DATA_CONVERTER)
    activities = registry.build_activities(settings, client,
                                           served=scale_double.platforms(state_dir),
                                           feedback=False)
    with concurrent.futures.ThreadPoolExecutor(settings.max_concurrent_activities) as executor:
        worker = registry.new_worker(client, settings, executor, activities=activities)
        await worker.run()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args.address, args.task_queue, args.state_dir))


if __name__ == "__main__":
    main()
