"""Failure types activities raise (``ApplicationError.type``) and which of them retrying cannot
fix. ``activities/errors.py`` maps infra exceptions onto them.

=====================  =========================================================  ==========
type                   meaning                                                    retried?
=====================  =========================================================  ==========
``InvalidRequest``     the request itself is wrong (bad spec, unknown node...)    no
``Unsupported``        the platform lacks the operation                           no
``StackBusy``          another live Pulumi operation holds the stack              yes
``InfraError``         anything else the platform could not do now                yes
=====================  =========================================================  ==========
"""

from __future__ import annotations

INVALID_REQUEST = "InvalidRequest"
UNSUPPORTED = "Unsupported"
INVALID_SPEC = "InvalidSpec"
"""A protection's spec failed validation in the workflow's first step."""
NOT_CONFIRMED = "FailoverNotConfirmed"
"""A failure detector's request was refused: the node's agent still sees the primary answer,
so fewer than a quorum of vantage points saw it down."""
COOLDOWN = "Cooldown"
"""A cutover request was refused because the last cutover is too recent; the failure's
details carry ``{"retry_after_s": seconds}``."""

NON_RETRYABLE_TYPES = [INVALID_REQUEST, UNSUPPORTED]
"""Error types a workflow's retry policy should list as non-retryable."""
