"""Events as values: validation with clear errors, and the JSON round trip."""

from __future__ import annotations

import math
from typing import Any

import pytest

from freshcache import Event, EventMetrics, EventTypes, InvalidEventError


def test_json_round_trip_gives_an_equal_event() -> None:
    """An event encoded and decoded is equal to the original, field by field."""
    event = Event(
        EventTypes.CHALLENGE_UPDATED,
        {
            "new": {"id": 5, "user_id": 2, "title": "ünï"},
            "old": {"id": 5, "user_id": 1},
            "changed": ["user_id"],
            "score": 2.5,
            "none": None,
        },
        source="api-1",
    )

    assert event == Event.from_json(event.to_json())
    assert event == Event.from_json(event.to_json().encode())


def test_defaults_are_unique_and_current() -> None:
    """Each event gets its own id and the time it was made."""
    first, second = Event(EventTypes.USER_CREATED), Event(EventTypes.USER_CREATED)

    assert first.id != second.id
    assert first.occurred_at <= second.occurred_at <= first.occurred_at + 60


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "user.renamed"}, r"unknown event type 'user\.renamed': register it"),
        ({"type": "User"}, "dotted lower-case name such as 'user.updated', not 'User'"),
        ({"type": 5}, "dotted lower-case name"),
        ({"data": [1]}, "data must be a mapping, not list"),
        ({"data": {"at": object()}}, r"data\['at'\] holds a object, which JSON cannot carry"),
        ({"data": {"ids": (1, 2)}}, r"data\['ids'\] holds a tuple"),
        ({"data": {"x": {1: "a"}}}, r"data\['x'\] has the key 1: JSON keys are strings"),
        ({"data": {"x": [math.nan]}}, r"data\['x'\]\[0\] holds nan"),
        ({"id": ""}, "id must be 1 to 128 letters"),
        ({"id": "a b"}, "id must be 1 to 128 letters"),
        ({"occurred_at": "yesterday"}, "occurred_at must be epoch seconds"),
        ({"occurred_at": math.inf}, "occurred_at must be epoch seconds"),
        ({"occurred_at": True}, "occurred_at must be epoch seconds"),
        ({"source": None}, "source must be a string, not None"),
    ],
)
def test_invalid_events_are_refused_with_what_is_wrong(
    fields: dict[str, Any], message: str
) -> None:
    """A field that would not survive the trip, or is not what it should be, is named in the error."""
    fields = {"type": EventTypes.USER_UPDATED, **fields}

    with pytest.raises(InvalidEventError, match=message):
        Event(**fields)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{nope", "not JSON: "),
        (b"\xff\xfe", "not JSON: "),
        (b'"text"', "not a JSON object but str"),
        (b'{"type": "user.updated"}', "missing fields: data, id, occurred_at, source"),
        (
            b'{"type": "user.updated", "data": {}, "id": "1", "occurred_at": 1, "source": "", "x": 1}',
            "unexpected fields: x",
        ),
        (
            b'{"type": "user.gone", "data": {}, "id": "1", "occurred_at": 1, "source": ""}',
            "unknown event type 'user.gone'",
        ),
    ],
)
def test_decoding_names_what_is_wrong(payload: bytes, message: str) -> None:
    """A payload that is not an event raises InvalidEventError saying why."""
    with pytest.raises(InvalidEventError, match=message):
        Event.from_json(payload)


def test_registering_checks_the_name() -> None:
    """EventTypes.register refuses a name that is not a dotted lower-case name."""
    with pytest.raises(InvalidEventError, match="dotted lower-case name"):
        EventTypes.register("Invoice Paid")
    assert not EventTypes.is_known("Invoice Paid")


def test_reference_types_are_known() -> None:
    """The reference domain's types are known without registering them."""
    assert {
        "user.created", "user.updated", "user.deleted", "challenge.created",
        "challenge.updated", "challenge.deleted", "evaluation.completed",
    } <= EventTypes.known()  # fmt: skip


def test_metrics_snapshot_is_json_ready_and_resets() -> None:
    """The snapshot holds plain numbers and dicts; reset zeroes them."""
    metrics = EventMetrics()
    metrics.delivered = 2
    metrics.failed("user.updated")
    metrics.observe_lag(0.5)
    metrics.observe_lag(-1.0)  # another machine's clock ahead of ours

    snapshot = metrics.snapshot()
    assert {"user.updated": 1} == snapshot["handler_failures"]
    assert {"last": 0.0, "max": 0.5, "mean": 0.25} == snapshot["lag_seconds"]
    assert set(EventMetrics.HELP) <= set(snapshot) | {"lag"}
    metrics.reset()
    assert 0 == metrics.snapshot()["delivered"]


def _send_an_id(connection: Any) -> None:
    connection.send(Event(EventTypes.USER_CREATED).id)


def test_forked_processes_do_not_repeat_ids() -> None:
    """A child forked from a publisher makes ids of its own, not the parent's next ones."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    here, there = fork.Pipe()
    child = fork.Process(target=_send_an_id, args=(there,))
    child.start()
    child_id = here.recv()
    child.join(10)

    assert Event(EventTypes.USER_CREATED).id != child_id
