"""The ``freshcache`` command.

One module per command (``relay.py``, ...), each with ``add_parser`` and ``run``; this
module only builds the parser and dispatches, so a new command is one new module and one
line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from freshcache._exceptions import FreshcacheError
from freshcache.cli import relay
from freshcache.cli._failures import Unreachable

__all__ = ["main", "parser"]

COMMANDS = (relay,)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="freshcache", description=__doc__.split("\n")[0] if __doc__ else None
    )
    commands = top.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        code: int = arguments.run(arguments)
    except FreshcacheError as exc:
        print(f"freshcache: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        print(f"freshcache: {exc}", file=sys.stderr)
        return 1
    return code
