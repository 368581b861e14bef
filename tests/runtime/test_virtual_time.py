"""The time-skipping test environment users get from riverrun.testing."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from riverrun import EventType, sleep, wait_for_signal, workflow
from riverrun.testing import VirtualClock, open_test_runtime

pytestmark = pytest.mark.anyio


@workflow()
async def monthly(months: int) -> str:
    for _ in range(months):
        await sleep("30d")
    return f"slept {months} months"


@workflow()
async def waits_with_timeout() -> str:
    try:
        await wait_for_signal("approve", timeout=timedelta(days=7))
    except TimeoutError:
        return "timed out"
    return "approved"


async def test_thirty_day_sleeps_take_no_real_time() -> None:
    clock = VirtualClock()
    start = clock.now()
    async with open_test_runtime([monthly], clock=clock) as rt:
        with anyio.fail_after(10):  # real seconds: 360 virtual days must not take long
            result = await (await rt.client.start(monthly, 12)).result()
    assert "slept 12 months" == result
    assert clock.now() - start >= timedelta(days=360)


async def test_signal_timeout_on_virtual_time() -> None:
    async with open_test_runtime([waits_with_timeout]) as rt:
        handle = await rt.client.start(waits_with_timeout)
        assert "timed out" == await handle.result(timeout=10)
        types = [e.type for e in await handle.events()]
    assert EventType.TIMER_FIRED in types
    assert EventType.SIGNAL_RECEIVED not in types


async def test_manual_advance() -> None:
    clock = VirtualClock()
    woke = anyio.Event()

    async def sleeper() -> None:
        await clock.sleep_until(clock.now() + timedelta(hours=1))
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await anyio.wait_all_tasks_blocked()
        clock.advance(timedelta(minutes=59))
        await anyio.wait_all_tasks_blocked()
        assert not woke.is_set()
        clock.advance(60)
        await woke.wait()
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
