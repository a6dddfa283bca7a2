"""The ``freshcache`` command.

One module per command (``relay.py``, ``serve.py``, ...), each with a ``register`` that
adds its command to the Typer app built in ``_app.py``; this module only runs it, so that
every failure a user can cause ends as one line and an exit status, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from freshcache._exceptions import FreshcacheError
from freshcache.cli._failures import Unreachable

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        import typer

        from freshcache.cli._app import command
    except ImportError as exc:
        print(
            f"freshcache: the command needs its extra, pip install 'freshcache[cli]' ({exc})",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = command().main(
            args=args or ["--help"],
            prog_name="freshcache",
            standalone_mode=False,
        )
    except typer.TyperException as exc:  # the command line itself: a missing or bad option
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"freshcache: {message}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except typer.Abort:
        print("freshcache: interrupted", file=sys.stderr)
        return 130
    except FreshcacheError as exc:
        print(f"freshcache: {exc}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        print(f"freshcache: {exc}", file=sys.stderr)
        return 1
    if not args:
        return 2  # the help, shown because no command was given
    return code if isinstance(code, int) else 0
