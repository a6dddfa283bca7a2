"""The public types hold: mypy checks tests/typing against the package, as a user's code would be checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TYPING = Path(__file__).parent / "typing"


@pytest.mark.slow
def test_the_cache_types_hold_under_mypy() -> None:
    """get_or_load and cached are typed in the loader's result, and the decorated function's key_for and invalidate are visible."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--warn-unused-ignores",
            *map(str, TYPING.glob("*.py")),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=TYPING.parent.parent,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
