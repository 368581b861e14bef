"""``open_test_runtime``: an in-memory runtime on a time-skipping virtual clock."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ..runtime import Runtime
from ._clock import VirtualClock

__all__ = ["open_test_runtime", "wait_until"]


@asynccontextmanager
async def open_test_runtime(
    workflows: Iterable[Any] = (),
    *,
    clock: VirtualClock | None = None,
    time_skipping: bool = True,
    **opts: Any,
) -> AsyncIterator[Runtime]:
    """An in-memory runtime whose durable timers run on a virtual clock.

    With ``time_skipping`` (the default) the clock jumps to the next timer whenever everything
    is idle, so ``await sleep("30d")`` in a workflow returns in milliseconds. The clock is
    ``rt.backend.clock``.
    """
    clock = clock or VirtualClock()
    opts.setdefault("passivation", False)
    async with Runtime.in_memory(workflows=workflows, clock=clock, **opts) as rt:
        if time_skipping:
            async with clock.autojump():
                yield rt
        else:
            yield rt


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, interval: float = 0.01
) -> None:
    """Await ``predicate()`` until it is true; ``TimeoutError`` after ``timeout`` seconds.

    For tests that must observe an intermediate state of a workflow running elsewhere.
    """
    with anyio.fail_after(timeout if timeout is not None else math.inf):
        while not await predicate():  # noqa: ASYNC110 - polling a store, not a task
            await anyio.sleep(interval)
