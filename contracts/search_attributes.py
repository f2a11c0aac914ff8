"""Custom search attributes that make the Temporal Web UI the operator's console.

Register them once per namespace: the dev-server fixtures and ``make demo`` do it; on a cluster
run ``temporal operator search-attribute create --name ShadowShiftPhase --type Keyword`` (and
likewise for each key below).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

INSTANCE = SearchAttributeKey.for_keyword("ShadowShiftInstance")
PLATFORM = SearchAttributeKey.for_keyword("ShadowShiftPlatform")
PHASE = SearchAttributeKey.for_keyword("ShadowShiftPhase")
TIER = SearchAttributeKey.for_int("ShadowShiftTier")
READINESS = SearchAttributeKey.for_float("ShadowShiftReadiness")

ALL = (INSTANCE, PLATFORM, PHASE, TIER, READINESS)
"""Every key, for registration."""

READINESS_STEP = 10.0
"""The readiness attribute moves in steps of this size: each upsert is a billable action."""
