"""``python -m workers.demo_worker``: the demo's worker — the production worker whose fleet
observers (local, hosts, kubernetes) read metric overlays (``infra/local/metric_overlay.py``).

The demo replays a recorded incident into the primary's metric stream; the overlay belongs
to the demo, so a production worker (``workers.main``) never looks for overlay files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from infra.factory import BUILDERS, Platforms
from infra.local.metric_overlay import with_overlays
from infra.platform import FleetObserver, PlatformContext
from workers.process_exit import exit_process
from workers.registry import platform_context
from workers.settings import Settings


def overlay_platforms(settings: Settings) -> Platforms:
    """Every platform, the local, hosts and kubernetes ones observed through the overlays in
    the state dir."""
    builders = dict(BUILDERS)
    for name in ("local", "hosts", "kubernetes"):
        builder = BUILDERS[name]

        def observe(context: PlatformContext, period_s: int,
                    inner: Callable[[PlatformContext, int], FleetObserver] = builder.observer
                    ) -> FleetObserver:
            return with_overlays(inner(context, period_s), context.state_dir)

        builders[name] = dataclasses.replace(builder, observer=observe)
    return Platforms(platform_context(settings), builders)


if __name__ == "__main__":
    from workers.main import main

    exit_process(main(overlay_platforms))
