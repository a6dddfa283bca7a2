"""Group commit for tag invalidations: concurrent callers share one backend operation.

The first caller leads: it sends every tag queued so far in one ``invalidate_tags`` and
wakes the callers whose tags went with it (a caller that finds nothing queued and nothing
in flight sends its own tags at once, with no queue entry to make). Callers that arrive
meanwhile queue up; when the leader's operation returns, the oldest of them is promoted
to lead the next one. A caller returns only once its own tags are applied, so
read-after-write is unchanged; a lone caller waits for nothing but its own round trip.

A leader whose own caller cancels it (a request timeout) leaves mid-operation: the
backend did not fail, so nobody else is told it did. Its batch goes back to the head of
the queue and the next caller sends it again (a tag invalidated twice is invalidated).
"""

from __future__ import annotations

from collections.abc import Sequence

from freshcache._async.backends.base import AsyncBackend
from freshcache._synchronization import AsyncCriticalSection, AsyncEvent


class _Waiter:
    __slots__ = ("error", "finished", "leads", "wake")

    def __init__(self) -> None:
        self.wake = AsyncEvent()
        self.leads = False
        self.finished = False
        self.error: BaseException | None = None


class AsyncTagBatcher:
    """Merges concurrent invalidations of tags into as few backend operations as possible."""

    def __init__(self, backend: AsyncBackend) -> None:
        self.backend = backend
        self.operations = 0  # backend calls made, for the curious and the tests
        self._tags: dict[str, None] = {}
        self._waiters: list[_Waiter] = []
        self._leading = False
        self._guard = AsyncCriticalSection()

    @property
    def waiting(self) -> int:
        """Callers queued behind the operation in flight, for the curious and the tests."""
        return len(self._waiters)

    async def invalidate(self, tags: Sequence[str]) -> None:
        with self._guard:
            alone = not self._leading and not self._tags
            if alone:
                self._leading = True
        if alone:  # nothing queued, nothing in flight: send at once, no queue entry
            await self._send_alone(tags)
            return
        waiter = _Waiter()
        with self._guard:
            self._tags.update(dict.fromkeys(tags))
            self._waiters.append(waiter)
            if not self._leading:
                self._leading = waiter.leads = True
        try:
            while not waiter.finished:
                if waiter.leads:
                    await self._flush(waiter)
                else:
                    await waiter.wake.wait()
        except BaseException:
            self._abandon(waiter)  # cancelled or interrupted: never strand the others
            raise
        if waiter.error is not None:
            raise waiter.error

    async def _send_alone(self, tags: Sequence[str]) -> None:
        """A leader with no batch but its own tags: callers that arrive meanwhile queue up."""
        try:
            self.operations += 1
            await self.backend.invalidate_tags(tags)
        except Exception:
            raise
        except BaseException:
            with self._guard:  # interrupted: the next leader sends these tags again
                self._tags = {**dict.fromkeys(tags), **self._tags}
            raise
        finally:
            self._hand_over()

    async def _flush(self, leader: _Waiter) -> None:
        with self._guard:
            tags, batch = list(self._tags), self._waiters
            self._tags, self._waiters = {}, []
        error: BaseException | None = None
        try:
            self.operations += 1
            await self.backend.invalidate_tags(tags)
        except Exception as exc:
            error = exc
        except BaseException:
            self._requeue(leader, tags, batch)  # the leader leaves; its batch is not done
            raise
        finally:
            self._hand_over()
        self._finish(batch, error)

    def _requeue(self, leader: _Waiter, tags: list[str], batch: list[_Waiter]) -> None:
        """Put an interrupted batch back at the head of the queue, without its leader."""
        with self._guard:
            leader.finished = True  # gone: nothing to abandon, no lead to pass twice
            self._tags = {**dict.fromkeys(tags), **self._tags}
            self._waiters[:0] = [w for w in batch if w is not leader and not w.finished]

    def _finish(self, batch: list[_Waiter], error: BaseException | None) -> None:
        for waiter in batch:
            if not waiter.finished:
                waiter.error = error
                waiter.finished = True
                waiter.wake.set()

    def _abandon(self, waiter: _Waiter) -> None:
        """Take a caller that leaves unfinished out of the queue, passing on its lead.

        Its tags stay queued: applying them anyway is harmless, and the next flush does.
        """
        with self._guard:
            if waiter.finished:
                return
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if not waiter.leads:
                return
            waiter.leads = False
        self._hand_over()

    def _hand_over(self) -> None:
        with self._guard:
            if self._waiters:
                successor = self._waiters[0]
                successor.leads = True
                successor.wake.set()
            else:
                self._leading = False
