"""The backend conformance suite, for the built-in backends and for any a user writes.

Subclass :class:`AsyncBackendSuite` (or :class:`BackendSuite` for a sync backend) in a
test module, under a name pytest collects, and implement ``make_backend``,
``evict_tag_version`` and ``restart``; every test of the suite then runs on that backend.
Needs pytest and pytest-asyncio (``asyncio_mode = "auto"``) for the async suite.
"""

import pytest

# The suites assert in a library module: let pytest rewrite those asserts, as it does
# tests', so a failure shows the values compared. Harmless outside pytest.
pytest.register_assert_rewrite("freshcache.testing._async.suite", "freshcache.testing._sync.suite")

from freshcache.testing._async.suite import AsyncBackendSuite  # noqa: E402
from freshcache.testing._sync.suite import BackendSuite  # noqa: E402

__all__ = ["AsyncBackendSuite", "BackendSuite"]
