"""The Temporal Web UI as the operator's console: headless Chromium filters workflows by a
ShadowShift search attribute, opens the protection and shows its attributes (screenshots
saved)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.spec import ProtectionSpec
from infra.local.ports import free_port
from tests.conftest import temporal_binary
from tests.workers.browser import chromium, chromium_binary
from workers.protect import start_protection

SCREENSHOTS_ENV = "SHADOWSHIFT_SCREENSHOT_DIR"
"""Where to keep the screenshots (default: the test's temporary folder)."""


@pytest.fixture(scope="module")
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A dev server of its own that serves the Web UI (the session one is headless)."""
    from contracts import search_attributes

    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error",
        ui=True, ui_port=ui_port, search_attributes=search_attributes.ALL,
    )
    try:
        yield env, f"http://127.0.0.1:{ui_port}"
    finally:
        await env.shutdown()


def _spec(instance_id: str, base_port: int) -> ProtectionSpec:
    return ProtectionSpec(instance_id, "local", 1, base_port, base_port + 1, base_port + 2)


async def test_web_ui_filters_by_instance_and_shows_the_protection(
    ui_env: tuple[WorkflowEnvironment, str], tmp_path: Path,
) -> None:
    """Filtering the list by ShadowShiftInstance shows that protection and hides another;
    opening it shows its type and ShadowShift search attributes."""
    chromium_binary()  # fail first, and clearly, when set-up did not install it
    env, ui = ui_env
    client = env.client
    suffix = uuid.uuid4().hex[:6]
    wanted, other = f"db-ui-{suffix}", f"db-other-{suffix}"
    # No worker polls this queue: the workflows wait at their first task, which is all the UI
    # needs (search attributes are set when the protection starts).
    queue = f"webui-{suffix}"
    handles = [await start_protection(client, _spec(name, 20000 + 10 * i), task_queue=queue)
               for i, name in enumerate((wanted, other))]
    query = f'ShadowShiftInstance = "{wanted}"'
    async with asyncio.timeout(30):  # visibility is eventually consistent
        while not [w async for w in client.list_workflows(query)]:
            await asyncio.sleep(0.2)
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    list_url = f"{ui}/namespaces/default/workflows?query={quote(query)}"
    try:
        await asyncio.to_thread(_browse, list_url, wanted, other, tmp_path / "profile", shots)
    finally:
        for handle in handles:
            await handle.terminate("test over")


def _browse(list_url: str, wanted: str, other: str, profile: Path, shots: Path) -> None:
    with chromium(profile) as page:
        page.open(list_url)
        listed = page.wait_for_text(f"protect-{wanted}", "InstanceProtectionWorkflow",
                                    f'ShadowShiftInstance = "{wanted}"')
        assert f"protect-{other}" not in listed, "the filter did not hide the other protection"
        page.screenshot(shots / "webui-list.png")

        assert page.click_text(f"protect-{wanted}"), "no link to the protection in the list"
        page.wait_for_text("Workflow Type", "Search Attributes")
        assert page.click_text("Search Attributes"), "no Search Attributes tab"
        shown = page.wait_for_text('"ShadowShiftInstance"', f'"{wanted}"',
                                   '"ShadowShiftPhase"', '"provisioning"',
                                   '"ShadowShiftTier"', '"ShadowShiftPlatform"')
        assert other not in shown
        detail = page.screenshot(shots / "webui-protection.png")
    for path in (shots / "webui-list.png", detail):
        assert path.stat().st_size > 20_000, f"{path} looks blank"
