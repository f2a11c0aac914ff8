"""``shadowshift``: the command-line entry point (also ``python -m workers.cli``).

Each subcommand is a :class:`~workers.cli_base.Subcommand` (a function that adds its
arguments and one that runs it) listed in :data:`SUBCOMMANDS`; they live in small modules:
``cli_protect`` (protect, unprotect), ``cli_control`` (status, cutover, pause, resume, demo),
``cli_report`` (report). Exit codes are documented in :mod:`workers.cli_base`: 0 success,
1 failed, 2 bad input, 3 Temporal unreachable, 4 unknown instance, 5 refused, 6 timed out.

``score-trace`` (``cli_trace``) scores a metric trace row by row, causally. ``agent``
(``agent_cli``) runs the node agent of one host (``docs/agent.md``). ``codec-server``
(``cli_codec``) decodes encrypted payloads for the Web UI and ``temporal`` CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from workers import agent_cli, cli_codec, cli_control, cli_protect, cli_report, cli_trace
from workers.cli_base import INTERRUPTED, OK, PROG, CliError, Subcommand, UsageError
from workers.process_exit import exit_process

SUBCOMMANDS: list[Subcommand] = [
    *cli_protect.SUBCOMMANDS,
    *cli_control.SUBCOMMANDS,
    *cli_report.SUBCOMMANDS,
    *cli_trace.SUBCOMMANDS,
    *agent_cli.SUBCOMMANDS,  # the node agent (docs/agent.md)
    *cli_codec.SUBCOMMANDS,  # decodes encrypted payloads (docs/security.md)
]
"""Every subcommand; append to add one."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so :func:`main` prints one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``shadowshift`` parser with every subcommand in :data:`SUBCOMMANDS`."""
    parser = _Parser(prog=PROG, description="ShadowShift: predictive failover.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    for command in SUBCOMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``shadowshift`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    try:
        args = build_parser().parse_args(argv)
        code: int = args.run(args)
        return code
    except CliError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # `shadowshift status | head` is fine; the reader left early.
        return OK


def entry() -> NoReturn:
    """The ``shadowshift`` program: :func:`main`, then leave without the SDK's exit-time
    crash (sdk-python issue 300), which would turn any exit code into 134."""
    exit_process(main())


if __name__ == "__main__":
    entry()
