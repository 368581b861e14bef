"""A virtual clock with time skipping: a 30-day ``sleep`` takes milliseconds.

Design note. ``VirtualClock`` implements the ``Clock`` protocol the memory backend and the
runtime use for timers, retry backoff and leases. Time moves only when told to
(``advance``), or, inside ``autojump()``, whenever every task is blocked: the clock then jumps
straight to the earliest pending deadline (trio's autojump clock, on anyio). Only use it with
the memory backend: a real server's clock does not jump.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio

__all__ = ["VirtualClock"]


class VirtualClock:
    """A ``Clock`` whose time only moves when advanced (or auto-jumped)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("VirtualClock needs a timezone-aware start time")
        self._sleepers: list[tuple[datetime, int, anyio.Event]] = []
        self._counter = itertools.count()
        self._changed = anyio.Event()
        self.jumps = 0

    def __repr__(self) -> str:
        return f"<VirtualClock now={self._now.isoformat()} sleepers={len(self._sleepers)}>"

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, deadline: datetime) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), event))
        self._changed.set()
        await event.wait()

    def next_deadline(self) -> datetime | None:
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._set(self._now + timedelta(seconds=seconds))

    def _set(self, when: datetime) -> None:
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, event = heapq.heappop(self._sleepers)
            event.set()

    @asynccontextmanager
    async def autojump(self) -> AsyncIterator[VirtualClock]:
        """While inside, jump to the next deadline whenever all tasks are blocked."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._jumper)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _jumper(self) -> None:
        while True:
            await anyio.wait_all_tasks_blocked()
            deadline = self.next_deadline()
            if deadline is None:
                self._changed = anyio.Event()
                await self._changed.wait()
                continue
            self.jumps += 1
            self._set(deadline)
