"""How many times this process was forked: a child must not use what its parent opened.

A pool compares the generation it was made in with this one before it hands out a
connection: one comparison of two ints, where ``os.getpid()`` would be a system call on
every hit. ``os.register_at_fork`` runs in every child that forks from Python
(``os.fork``, multiprocessing's fork start method, gunicorn's workers).
"""

from __future__ import annotations

import os

generation = 0


def _forked() -> None:
    global generation
    generation += 1


if hasattr(os, "register_at_fork"):  # not on Windows, where nothing forks
    os.register_at_fork(after_in_child=_forked)
