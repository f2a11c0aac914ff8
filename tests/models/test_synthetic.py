"""The synthetic fleet: deterministic, every failure mode present, labels where they belong."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.synthetic import FAILURE_MODES, FleetConfig, generate_fleet

TINY = replace(FleetConfig(), instances=30, days=2.0, incidents_per_day=1.5, seed=5)


def test_same_seed_same_fleet() -> None:
    """The fleet is a pure function of its config."""
    a, b = generate_fleet(TINY), generate_fleet(TINY)
    assert [i.incidents for i in a] == [i.incidents for i in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.times, y.times)
        assert x.values.keys() == y.values.keys()


def test_failure_modes_and_imperfect_data_appear() -> None:
    """Every mode occurs; some metrics are absent, some values garbage, some rows missing."""
    fleet = generate_fleet(TINY)
    modes = {incident.mode for instance in fleet for incident in instance.incidents}
    assert modes == set(FAILURE_MODES)
    assert any(len(i.values) < 9 for i in fleet)
    assert any(set(i.values) == {"other"} for i in fleet)
    assert any(np.any(v < 0) | np.any(v > 1e20) for i in fleet for v in i.values.values()
               if v.size)
    expected_rows = int(TINY.days * 86400 / TINY.step_s)
    assert any(i.times.size < expected_rows for i in fleet)
    assert all(np.all(np.diff(i.times) > 0) for i in fleet)


def test_labels_cover_horizon_before_failure_until_recovery() -> None:
    """A row is positive from H before a failure until recovery, negative elsewhere."""
    fleet = generate_fleet(TINY)
    instance = next(i for i in fleet if i.incidents)
    incident = instance.incidents[0]
    labels = instance.labels(3600.0)
    t = instance.times
    inside = (t >= incident.failure_at - 3600) & (t < incident.recovered_at)
    assert labels[inside].all()
    far = (t < incident.onset - 7200) & (t < incident.failure_at - 3600)
    if len(instance.incidents) == 1:
        assert not labels[far].any()
