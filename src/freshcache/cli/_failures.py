"""Failures a command reports in one line, apart from freshcache's own errors."""

from __future__ import annotations


class Unreachable(Exception):
    """A server the command needs did not answer at start (exit status 1, not 2)."""
