"""`freshcache verify`'s options: each mistake refused in one line, exit 2, before any I/O."""

from __future__ import annotations

import pytest

from freshcache.cli import main

pytest.importorskip("typer")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the services to check (--url) or a number to start (--spawn)"),
        (["--url", "ftp://example.com"], "--url 'ftp://example.com' is not"),
        (["--url", "http://h:1", "--faults"], "--faults needs something to fault"),
        (["--url", "http://h:1", "--consistency", "commit"], "need --spawn"),
        (["--spawn", "2", "--cache-url", "memory://"], "would serve stale data"),
        (["--spawn", "1", "--consistency", "eventual"], "--consistency must be strict or commit"),
        (["--url", "http://h:1", "--duration", "0"], "--duration must be a positive number"),
    ],
)
def test_verify_refuses_each_mistake_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad option combination exits 2 with one line on stderr saying what is wrong."""
    assert 2 == main(["verify", *args])

    lines = capsys.readouterr().err.strip().splitlines()
    assert 1 == len(lines)
    assert message in lines[0]
