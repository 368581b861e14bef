"""Idle workflows leave memory and come back from their history when something arrives."""

from __future__ import annotations

from datetime import timedelta

import pytest

from riverrun import wait_for_signal, workflow
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@workflow()
async def two_signals() -> list[str]:
    first = await wait_for_signal("a")
    second = await wait_for_signal("b")
    return [first, second]


async def test_idle_workflow_is_passivated_and_rehydrated(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(
        workflows=[two_signals], passivate_after=timedelta(seconds=0.1)
    ) as rt:
        worker = rt.worker
        assert worker is not None
        handles = [await rt.client.start(two_signals) for _ in range(5)]

        async def all_passivated() -> bool:
            stats = worker.statistics()
            return stats.active == 0 and stats.passivated >= 5

        await wait_until(all_passivated)
        for h in handles:
            await h.signal("a", "x")
        # each wakes up, records the signal, and goes idle again
        async def passivated_again() -> bool:
            stats = worker.statistics()
            return stats.active == 0 and stats.passivated >= 10

        await wait_until(passivated_again)
        for h in handles:
            await h.signal("b", "y")
        for h in handles:
            assert ["x", "y"] == await h.result(timeout=30)
        stats = worker.statistics()
    assert stats.started >= 15  # every wake-up is a fresh actor replaying its history
