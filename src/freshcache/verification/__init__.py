"""Checking a service's reads against its writes: the history check (no dependency), and
the workload, faults and processes of ``freshcache verify`` (httpx, imported where used).
"""

from __future__ import annotations

from freshcache.verification.history import KINDS, Read, Verdict, Write, check_history

__all__ = ["KINDS", "Read", "Verdict", "Write", "check_history"]
