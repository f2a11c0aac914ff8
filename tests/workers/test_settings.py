"""Settings are parsed once, validated, and every error names the variable to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.settings import SettingsError, load_settings


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    passphrase = tmp_path / "pass"
    passphrase.write_text("p\n")
    return {
        "SHADOWSHIFT_STATE_DIR": str(tmp_path),
        "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE": str(passphrase),
    }


def test_defaults_are_usable(base_env: dict[str, str], tmp_path: Path) -> None:
    """With only a state dir, the defaults point at a local dev server and a file backend."""
    settings = load_settings(base_env)
    assert settings.temporal_address == "localhost:7233"
    assert settings.task_queue == "shadowshift"
    assert settings.effective_backend_url == f"file://{tmp_path.resolve() / 'pulumi'}"
    assert settings.prometheus_port == 0 and settings.otlp_endpoint is None


def test_every_variable_is_parsed(base_env: dict[str, str]) -> None:
    """Each documented variable lands in its field, typed."""
    env = {
        **base_env,
        "SHADOWSHIFT_TEMPORAL_ADDRESS": "temporal.internal:7233",
        "SHADOWSHIFT_NAMESPACE": "prod",
        "SHADOWSHIFT_TASK_QUEUE": "shadowshift-eu",
        "SHADOWSHIFT_PULUMI_BACKEND_URL": "s3://bucket/state",
        "SHADOWSHIFT_OTLP_ENDPOINT": "http://collector:4317",
        "SHADOWSHIFT_PROMETHEUS_PORT": "9464",
        "SHADOWSHIFT_LOG_LEVEL": "debug",
        "SHADOWSHIFT_MAX_CONCURRENT_ACTIVITIES": "8",
        "SHADOWSHIFT_WATCH_INTERVAL_S": "0",
        "SHADOWSHIFT_AWS_METRICS_PERIOD_S": "300",
    }
    settings = load_settings(env)
    assert settings.temporal_address == "temporal.internal:7233"
    assert settings.namespace == "prod" and settings.task_queue == "shadowshift-eu"
    assert settings.effective_backend_url == "s3://bucket/state"
    assert settings.otlp_endpoint == "http://collector:4317"
    assert settings.prometheus_port == 9464 and settings.log_level == "DEBUG"
    assert settings.max_concurrent_activities == 8
    assert settings.watch_interval_s == 0 and settings.aws_metrics_period_s == 300


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SHADOWSHIFT_TEMPORAL_ADDRESS", "localhost", "host:port"),
        ("SHADOWSHIFT_TEMPORAL_ADDRESS", "localhost:99999", "host:port"),
        ("SHADOWSHIFT_NAMESPACE", "bad name", "letters, digits"),
        ("SHADOWSHIFT_LOG_LEVEL", "loud", "DEBUG, INFO, WARNING, ERROR"),
        ("SHADOWSHIFT_PROMETHEUS_PORT", "http", "whole number"),
        ("SHADOWSHIFT_PROMETHEUS_PORT", "70000", "0..65535"),
        ("SHADOWSHIFT_MAX_CONCURRENT_ACTIVITIES", "0", "1..1024"),
        ("SHADOWSHIFT_OTLP_ENDPOINT", "collector:4317", "http://"),
        ("SHADOWSHIFT_PULUMI_BACKEND_URL", "ftp://x", "file://"),
        ("SHADOWSHIFT_TASKQUEUE", "x", "unknown variable"),
        ("SHADOWSHIFT_WATCH_INTERVAL_S", "-1", "0..3600"),
        ("SHADOWSHIFT_AWS_METRICS_PERIOD_S", "30", "60..3600"),
        ("SHADOWSHIFT_AWS_METRICS_PERIOD_S", "90", "multiples of 60"),
    ],
)
def test_bad_values_name_the_variable(
    base_env: dict[str, str], variable: str, value: str, message: str
) -> None:
    """A malformed or unknown variable is refused with its name and the allowed values."""
    with pytest.raises(SettingsError) as caught:
        load_settings({**base_env, variable: value})
    assert variable in str(caught.value) and message in str(caught.value)


def test_missing_passphrase_file_is_refused(base_env: dict[str, str], tmp_path: Path) -> None:
    """Without the secrets passphrase nothing can open a stack, so we refuse to start."""
    env = {**base_env, "SHADOWSHIFT_PULUMI_PASSPHRASE_FILE": str(tmp_path / "absent")}
    with pytest.raises(SettingsError, match="SHADOWSHIFT_PULUMI_PASSPHRASE_FILE"):
        load_settings(env)
    # A client (the CLI) opens no stack: it does not need the file.
    assert load_settings(env, worker=False).pulumi_passphrase_file == tmp_path / "absent"
