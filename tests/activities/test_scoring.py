"""The scoring activity: unit-level with ActivityEnvironment, one round trip on a real server."""

from __future__ import annotations

import concurrent.futures
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from models.policy import PolicyConfig
from models.predictor import DEFAULT_MODEL_PATH, Predictor, metadata_path_for

with workflow.unsafe.imports_passed_through():
    from activities.scoring import (
        MetricWindow,
        ScoreInstancesInput,
        ScoreInstancesResult,
        ScoringActivities,
    )


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """The shipped default model, loaded once."""
    return Predictor.load(DEFAULT_MODEL_PATH)


def _window(instance_id: str, memory_end: float, samples: int = 37) -> MetricWindow:
    rng = np.random.default_rng(abs(hash(instance_id)) % 1000)
    memory = np.linspace(40, memory_end, samples)
    return MetricWindow(
        instance_id=instance_id,
        timestamps=[1.7e9 + i * 300.0 for i in range(samples)],
        values={"memory_percent": [float(x) for x in memory],
                "cpu_percent": [float(x) for x in 30 + rng.normal(0, 2, samples)]},
    )


def test_scores_a_batch_in_order(predictor: Predictor) -> None:
    """One verdict per window, in input order, with probabilities in 0..1."""
    activities = ScoringActivities(predictor)
    windows = [_window("flat", 41), _window("leak", 97)]
    result: ScoreInstancesResult = ActivityEnvironment().run(
        activities.score_instances, ScoreInstancesInput(windows, now=1.7e9 + 36 * 300))
    assert [s.instance_id for s in result.scores] == ["flat", "leak"]
    flat, leak = result.scores
    assert 0 <= flat.failure_probability <= 1 and 0 <= leak.failure_probability <= 1
    assert leak.readiness_score > flat.readiness_score
    assert result.model_sha256 == predictor.model_sha256


def test_garbage_values_are_counted_and_empty_windows_hold(predictor: Predictor) -> None:
    """NaN, negative, absurd and None values are ignored and counted; no data = hold."""
    activities = ScoringActivities(predictor)
    bad = MetricWindow("bad", [1.0, 2.0, 3.0, 4.0],
                       {"cpu_percent": [float("nan"), -3.0, 1e12, None]})
    empty = MetricWindow("empty", [], {})
    result = ActivityEnvironment().run(
        activities.score_instances, ScoreInstancesInput([bad, empty], now=10.0))
    assert result.ignored == {"missing": 1, "nan": 1, "negative": 1, "absurd": 1}
    assert result.scores[0].ignored_values == 4
    assert all(s.decision == "hold" and np.isnan(s.readiness_score) for s in result.scores)


def test_policy_state_round_trips(predictor: Predictor) -> None:
    """With a threshold of 0 and one reading needed, the first call migrates, the next cools."""
    activities = ScoringActivities(predictor)
    policy = PolicyConfig(threshold=0.0, consecutive_readings=1)
    first = ActivityEnvironment().run(
        activities.score_instances, ScoreInstancesInput([_window("a", 50)], 1.0, policy=policy))
    assert first.scores[0].decision == "migrate" and first.scores[0].act
    second = ActivityEnvironment().run(
        activities.score_instances,
        ScoreInstancesInput([_window("a", 50)], 2.0, policy=policy,
                            policy_state=first.policy_state))
    assert second.scores[0].decision == "hold" and "Cooling down" in second.scores[0].reason


def test_reload_keeps_the_previous_model_when_the_new_one_is_corrupt(
    predictor: Predictor, tmp_path: Path
) -> None:
    """A corrupt file is refused and scoring continues with the model already loaded."""
    activities = ScoringActivities(predictor)
    broken = tmp_path / "broken.txt"
    shutil.copy(DEFAULT_MODEL_PATH, broken)
    shutil.copy(metadata_path_for(DEFAULT_MODEL_PATH), metadata_path_for(broken))
    broken.write_text(broken.read_text()[:1000])
    assert activities.reload(broken) is False
    assert activities.predictor is predictor
    assert activities.reload() is True  # the original file still loads
    assert activities.predictor.model_sha256 == predictor.model_sha256


def test_unknown_metric_is_a_non_retryable_error(predictor: Predictor) -> None:
    """A window with an unknown metric name fails without retries."""
    from temporalio.exceptions import ApplicationError

    activities = ScoringActivities(predictor)
    window = MetricWindow("x", [1.0], {"temperature": [20.0]})
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(activities.score_instances, ScoreInstancesInput([window], 1.0))
    assert caught.value.non_retryable and caught.value.type == "InvalidRequest"


@workflow.defn(sandboxed=False)
class _ScoreOnceWorkflow:
    """Calls score_instances once, as a protection workflow would."""

    @workflow.run
    async def run(self, request: ScoreInstancesInput) -> ScoreInstancesResult:
        return await workflow.execute_activity_method(
            ScoringActivities.score_instances, request,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=2,
                                     non_retryable_error_types=["InvalidRequest"]),
        )


async def test_round_trip_on_a_real_server(
    temporal_env: WorkflowEnvironment, task_queue: str, predictor: Predictor
) -> None:
    """Dataclasses survive the real server both ways, policy state included."""
    activities = ScoringActivities(predictor)
    request = ScoreInstancesInput(
        [_window("a", 45), _window("b", 97)], now=1.7e9,
        policy=PolicyConfig(threshold=0.0, consecutive_readings=1, max_concurrent=1),
    )
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with Worker(temporal_env.client, task_queue=task_queue,
                          workflows=[_ScoreOnceWorkflow],
                          activities=[activities.score_instances], activity_executor=pool):
            result = await temporal_env.client.execute_workflow(
                _ScoreOnceWorkflow.run, request, id=f"score-{uuid.uuid4()}",
                task_queue=task_queue)
            bad = ScoreInstancesInput([MetricWindow("x", [1.0], {"nope": [1.0]})], now=1.0)
            with pytest.raises(WorkflowFailureError):
                await temporal_env.client.execute_workflow(
                    _ScoreOnceWorkflow.run, bad, id=f"score-{uuid.uuid4()}",
                    task_queue=task_queue)
    assert isinstance(result, ScoreInstancesResult)
    assert [s.decision for s in result.scores].count("migrate") == 1  # budget of one
    assert set(result.policy_state.in_flight) == {"b"}  # the riskier instance got the slot
    assert result.policy_state.instances["a"].streak >= 0
