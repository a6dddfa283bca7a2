"""The conformance suites, for the built-in backends and event transports and any a user writes.

Subclass :class:`AsyncBackendSuite` (or :class:`BackendSuite` for a sync backend) in a
test module, under a name pytest collects, and implement ``make_backend``,
``evict_tag_version`` and ``restart``; every test of the suite then runs on that backend.
For an event transport, subclass :class:`AsyncEventTransportSuite` (or
:class:`EventTransportSuite`) and implement ``make_transport``; :class:`AsyncReceived`
and :func:`async_wait_for_dead_letters` help write further tests of a transport.
Needs pytest and pytest-asyncio (``asyncio_mode = "auto"``) for the async suites.
"""

import pytest

# The suites assert in a library module: let pytest rewrite those asserts, as it does
# tests', so a failure shows the values compared. Harmless outside pytest.
pytest.register_assert_rewrite(
    "freshcache.testing._async.suite",
    "freshcache.testing._sync.suite",
    "freshcache.testing._async.events_suite",
    "freshcache.testing._sync.events_suite",
)

from freshcache.testing._async.events_suite import (  # noqa: E402
    AsyncEventTransportSuite,
    AsyncReceived,
    async_wait_for_dead_letters,
)
from freshcache.testing._async.suite import AsyncBackendSuite  # noqa: E402
from freshcache.testing._sync.events_suite import (  # noqa: E402
    EventTransportSuite,
    Received,
    wait_for_dead_letters,
)
from freshcache.testing._sync.suite import BackendSuite  # noqa: E402

__all__ = [
    "AsyncBackendSuite",
    "AsyncEventTransportSuite",
    "AsyncReceived",
    "BackendSuite",
    "EventTransportSuite",
    "Received",
    "async_wait_for_dead_letters",
    "wait_for_dead_letters",
]
