"""ShadowShift's version, which every agent task carries: an agent refuses a caller of another
version (``contracts.agent.VERSION_MISMATCH``). Kept equal to ``pyproject.toml``'s by a test."""

from __future__ import annotations

VERSION = "0.1.0"
"""This checkout's version."""
