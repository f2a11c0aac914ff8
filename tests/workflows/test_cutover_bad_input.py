"""Bad cutover requests are refused with the reason before anything changes."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.cutover import CutoverInput
from contracts.shadow import PlatformRequest
from infra.local.postgres import PgServer, query_one
from tests.conftest import LocalService, with_spec
from tests.workflows.test_cutover import protect, run_cutover
from workers.settings import Settings


async def _refusal(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    cutover: CutoverInput,
) -> str:
    with pytest.raises(WorkflowFailureError) as caught:
        await run_cutover(temporal_env.client, settings, task_queue, cutover)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "CutoverRejected"
    return cause.message


def _untouched(service: LocalService) -> None:
    name = service.request.instance_id
    assert service.haproxy.weights(name)[name] == 100
    assert query_one(service.primary.endpoint, "SHOW default_transaction_read_only") == "off"
    assert not query_one(service.primary.endpoint, "SELECT pg_is_in_recovery()")


async def test_unknown_instance(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """An instance the router does not know is refused by name."""
    request = with_spec(local_service.request, instance_id="db-nobody")
    message = await _refusal(temporal_env, settings, task_queue, CutoverInput(request))
    assert "unknown instance db-nobody" in message
    _untouched(local_service)


@pytest.mark.parametrize("mode", ["planned", "emergency"])
async def test_instance_without_shadow(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService, mode: str,
) -> None:
    """Without a shadow behind the router there is nothing to cut over to, in either mode."""
    message = await _refusal(
        temporal_env, settings, task_queue, CutoverInput(local_service.request, mode=mode)
    )
    assert "no healthy shadow" in message and "not behind the router" in message
    _untouched(local_service)


async def test_unknown_mode(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """A mode other than planned/emergency is refused."""
    message = await _refusal(
        temporal_env, settings, task_queue, CutoverInput(local_service.request, mode="yolo")
    )
    assert "mode 'yolo'" in message
    _untouched(local_service)


async def test_dead_shadow(
    temporal_env: WorkflowEnvironment, settings: Settings, task_queue: str,
    local_service: LocalService,
) -> None:
    """A provisioned shadow whose server is down is not healthy: refused, primary untouched."""
    protected = await protect(local_service, settings, tier=2)
    request: PlatformRequest = protected.request
    PgServer(home=protected.platform.spec.shadow_home, port=request.spec.shadow_port).stop()
    message = await _refusal(temporal_env, settings, task_queue, CutoverInput(request))
    assert "no healthy shadow" in message and "unreachable" in message
    _untouched(local_service)
    protected.platform.close()
