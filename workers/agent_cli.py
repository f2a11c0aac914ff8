"""``shadowshift agent``: the node agent's subcommand (the agent itself is ``workers.agent``,
imported only when the subcommand runs, so the rest of the CLI starts no faster or slower)."""

from __future__ import annotations

import argparse

from workers.agent_settings import add_agent_arguments
from workers.cli_base import Subcommand


def _run(args: argparse.Namespace) -> int:
    from workers.agent import run_from_args

    return run_from_args(args)


SUBCOMMANDS = [
    Subcommand("agent", "run the node agent of one host: its task queue, lease and HTTP "
               "endpoint (docs/agent.md)", add_agent_arguments, _run),
]
"""The ``agent`` subcommand."""
