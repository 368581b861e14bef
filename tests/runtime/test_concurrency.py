"""Concurrency in workflow code (asyncio on the workflow's deterministic loop) and concurrent
steps on the worker, on both backends; every recorded history replays to the same outcome."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import anyio
import pytest

from riverrun import (
    CancellationError,
    EventType,
    RetryPolicy,
    RunStatus,
    continue_as_new,
    execute_child,
    info,
    sleep,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.runtime._machine import Cancelled, Completed, ContinuedAsNew
from riverrun.testing import wait_until

from .conftest import RuntimeFactory
from .replaying import replay, stored

pytestmark = pytest.mark.anyio

CALLS: Counter[tuple[str, int]] = Counter()
RUNNING: Counter[str] = Counter()
PEAK: Counter[str] = Counter()
CANCELLED: Counter[str] = Counter()


@step()
async def double(key: str, i: int) -> int:
    CALLS[(key, i)] += 1
    RUNNING[key] += 1
    PEAK[key] = max(PEAK[key], RUNNING[key])
    try:
        await anyio.sleep(0.01 * (i % 3))  # finish out of order
    finally:
        RUNNING[key] -= 1
    return 2 * i


@step()
async def blocks(key: str, i: int) -> int:
    CALLS[(key, i)] += 1
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        CANCELLED[key] += 1
        raise
    return -1


@workflow()
async def gathers(key: str, n: int) -> list[int]:
    return list(await asyncio.gather(*(double(key, i) for i in range(n))))


@workflow()
async def task_group(key: str) -> int:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(double(key, i)) for i in range(4)]
    return sum(t.result() for t in tasks)


@workflow()
async def creates_tasks(key: str) -> dict[str, Any]:
    async def inside(i: int) -> str:
        value = await double(key, i)
        return f"{info().workflow_id}:{value}"  # the workflow's scope reaches created tasks

    first = asyncio.create_task(inside(1))
    second = asyncio.create_task(inside(2))
    return {"first": await first, "second": await second}


@workflow()
async def races_signal_and_timer(key: str) -> str:
    signal = asyncio.create_task(wait_for_signal("go"))
    timer = asyncio.create_task(sleep("1h"))
    done, pending = await asyncio.wait({signal, timer}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await double(key, 0)  # the run goes on: the lost timer's cancellation is recorded
    return f"signal {signal.result()}" if signal in done else "timer"


@workflow()
async def races_signal_and_step(key: str) -> str:
    signal = asyncio.create_task(wait_for_signal("go"))
    work = asyncio.create_task(blocks(key, 0))
    done, _ = await asyncio.wait({signal, work}, return_when=asyncio.FIRST_COMPLETED)
    work.cancel()
    return f"signal {signal.result()}" if signal in done else "step"


@workflow()
async def times_out_a_group(key: str) -> str:
    try:
        async with asyncio.timeout(0.3):
            await asyncio.gather(double(key, 1), blocks(key, 2), blocks(key, 3))
    except TimeoutError:
        return "timed out"
    return "in time"


@workflow()
async def waits_for_a_step(key: str) -> str:
    try:
        await asyncio.wait_for(blocks(key, 7), timeout=0.3)
    except TimeoutError:
        return "timed out"
    return "in time"


@workflow()
async def finishes_in_time(key: str) -> int:
    async with asyncio.timeout(3600):
        return await double(key, 5)


@workflow()
async def item_child(i: int) -> int:
    return await double("child", i)


@workflow()
async def bounded_children(key: str, n: int, width: int) -> list[int]:
    gate = asyncio.Semaphore(width)
    running = 0
    peak = 0

    async def one(i: int) -> int:
        nonlocal running, peak
        async with gate:
            running += 1
            peak = max(peak, running)
            try:
                return await execute_child(item_child, i)
            finally:
                running -= 1

    results = await asyncio.gather(*(one(i) for i in range(n)))
    assert peak <= width
    return list(results)


@workflow()
async def cancelled_fan_out(key: str) -> str:
    try:
        await asyncio.gather(blocks(key, 1), blocks(key, 2))
    except CancellationError:
        await double(key, 9)  # cleanup still runs
        raise
    return "unreachable"


@workflow()
async def continues_from_a_task(key: str, n: int) -> str:
    if n == 1:
        return "second run"

    async def go() -> None:
        await double(key, 1)
        continue_as_new(key, 1)

    left = asyncio.create_task(blocks(key, 99))  # in flight when the run continues
    await asyncio.create_task(go())
    await left
    return "unreachable"


@workflow()
async def asyncio_sleeps(key: str) -> str:
    await asyncio.sleep(0)  # a plain yield to the other tasks
    await asyncio.sleep(0.05)  # a durable timer
    return "slept"


@workflow()
async def opens_a_socket(key: str) -> str:
    try:
        await asyncio.open_connection("127.0.0.1", 9)
    except RuntimeError as err:
        return type(err).__name__ + ": " + str(err)
    return "connected"


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
async def flaky(key: str, i: int) -> int:
    CALLS[(key, i)] += 1
    if CALLS[(key, i)] < 2:
        raise ConnectionError(f"flaky {i}")
    return i


@workflow()
async def retries_together(key: str) -> list[int]:
    return list(await asyncio.gather(*(flaky(key, i) for i in range(4))))


@workflow()
async def cancelled_group(key: str) -> str:
    async with asyncio.TaskGroup() as tg:
        tg.create_task(blocks(key, 1))
        tg.create_task(blocks(key, 2))
    return "unreachable"


ALL = [
    retries_together,
    cancelled_group,
    asyncio_sleeps,
    opens_a_socket,
    gathers,
    task_group,
    creates_tasks,
    races_signal_and_timer,
    races_signal_and_step,
    times_out_a_group,
    waits_for_a_step,
    finishes_in_time,
    item_child,
    bounded_children,
    cancelled_fan_out,
    continues_from_a_task,
]


def _calls(*keys: tuple[str, int]) -> Any:
    async def called() -> bool:
        return all(CALLS[k] >= 1 for k in keys)

    return called


#: the last history read of each workflow id (read while its runtime is open)
HISTORY: dict[str, list[Any]] = {}


async def _types(handle: Any) -> list[EventType]:
    HISTORY[handle.workflow_id] = events = await handle.events()
    return [e.type for e in events]


async def _replays_identically(handle: Any, expected: object) -> None:
    """The recorded history, replayed into a fresh machine, gives the recorded outcome."""
    events = stored(HISTORY[handle.workflow_id], handle.workflow_id)
    machine = replay(ALL, events, handle.workflow_id)
    assert machine.outcome == expected
    assert not machine.commands and not machine.abandoned


async def test_gather_fans_out_and_in(make_runtime: RuntimeFactory, namespace_key: str) -> None:
    key = f"gather-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(gathers, key, 6)
        assert [0, 2, 4, 6, 8, 10] == await handle.result(timeout=30)
        types = await _types(handle)
    assert 6 == types.count(EventType.STEP_COMPLETED)
    assert all(CALLS[(key, i)] == 1 for i in range(6))
    assert PEAK[key] > 1  # they ran together
    await _replays_identically(handle, Completed(result=[0, 2, 4, 6, 8, 10]))


async def test_fan_out_of_100_steps(make_runtime: RuntimeFactory, namespace_key: str) -> None:
    key = f"hundred-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(gathers, key, 100)
        assert [2 * i for i in range(100)] == await handle.result(timeout=60)
        types = await _types(handle)
    assert 100 == types.count(EventType.STEP_COMPLETED)
    assert all(CALLS[(key, i)] == 1 for i in range(100))
    await _replays_identically(handle, Completed(result=[2 * i for i in range(100)]))


async def test_steps_are_bounded_per_worker(make_runtime: RuntimeFactory, namespace_key: str) -> None:
    key = f"bounded-{namespace_key}"
    async with make_runtime(workflows=ALL, max_concurrent_steps=3) as rt:
        handle = await rt.client.start(gathers, key, 12)
        assert [2 * i for i in range(12)] == await handle.result(timeout=30)
    assert 1 < PEAK[key] <= 3


async def test_task_group_and_create_task(make_runtime: RuntimeFactory, namespace_key: str) -> None:
    key = f"tg-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        group = await rt.client.start(task_group, key)
        assert 12 == await group.result(timeout=30)
        await _types(group)
        tasks = await rt.client.start(creates_tasks, key + "-t")
        expected = {"first": f"{tasks.workflow_id}:2", "second": f"{tasks.workflow_id}:4"}
        assert expected == await tasks.result(timeout=30)
    await _replays_identically(group, Completed(result=12))


async def test_a_signal_wins_a_race_against_a_timer(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(races_signal_and_timer, "r")

        async def timer_started() -> bool:
            return EventType.TIMER_STARTED in await _types(handle)

        await wait_until(timer_started)
        await handle.signal("go", "now")
        assert "signal now" == await handle.result(timeout=30)
        types = await _types(handle)
    # the losing timer's cancellation is recorded
    assert types.index(EventType.SIGNAL_RECEIVED) < types.index(EventType.TIMER_CANCELLED)
    assert EventType.TIMER_FIRED not in types
    await _replays_identically(handle, Completed(result="signal now"))


async def test_a_signal_wins_a_race_against_a_step(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"race-step-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(races_signal_and_step, key)
        await wait_until(_calls((key, 0)))
        await handle.signal("go", "first")
        assert "signal first" == await handle.result(timeout=30)
        types = await _types(handle)
    assert 1 == CANCELLED[key]  # the step was stopped on the worker
    assert EventType.STEP_CANCELLED in types and EventType.STEP_COMPLETED not in types
    await _replays_identically(handle, Completed(result="signal first"))


async def test_a_timeout_around_a_group_cancels_what_is_left(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"timeout-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(times_out_a_group, key)
        assert "timed out" == await handle.result(timeout=30)
        types = await _types(handle)
    events = HISTORY[handle.workflow_id]
    assert EventType.TIMER_FIRED in types
    cancelled = [e.data["position"] for e in events if e.type == EventType.STEP_CANCELLED]
    assert 2 == len(cancelled)  # the two steps still running; the quick one completed
    assert 1 == types.count(EventType.STEP_COMPLETED)
    assert 2 == CANCELLED[key]
    await _replays_identically(handle, Completed(result="timed out"))


async def test_wait_for_times_out_a_step(make_runtime: RuntimeFactory, namespace_key: str) -> None:
    key = f"wait-for-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(waits_for_a_step, key)
        assert "timed out" == await handle.result(timeout=30)
        await _types(handle)
        in_time = await rt.client.start(finishes_in_time, key)
        assert 10 == await in_time.result(timeout=30)
        types = await _types(in_time)
    assert 1 == CANCELLED[key]
    # the timeout's durable timer, started and cancelled when the block was left in time
    assert [
        EventType.WORKFLOW_STARTED,
        EventType.TIMER_STARTED,
        EventType.STEP_COMPLETED,
        EventType.TIMER_CANCELLED,
        EventType.WORKFLOW_COMPLETED,
    ] == types
    await _replays_identically(handle, Completed(result="timed out"))


async def test_a_child_per_item_with_bounded_parallelism(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(bounded_children, "kids", 5, 2)
        assert [0, 2, 4, 6, 8] == await handle.result(timeout=60)
        types = await _types(handle)
    assert 5 == types.count(EventType.CHILD_STARTED) == types.count(EventType.CHILD_COMPLETED)
    await _replays_identically(handle, Completed(result=[0, 2, 4, 6, 8]))


async def test_cancelling_the_workflow_cancels_its_fan_out(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"cancel-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(cancelled_fan_out, key)
        await wait_until(_calls((key, 1), (key, 2)))
        assert await handle.cancel()
        with pytest.raises(CancellationError):
            await handle.result(timeout=30)
        assert RunStatus.CANCELLED == (await handle.describe()).status
        await _types(handle)
    assert 2 == CANCELLED[key]
    assert 1 == CALLS[(key, 9)]  # the cleanup step ran
    await _replays_identically(handle, Cancelled(message="workflow cancelled"))


async def test_continue_as_new_from_a_task_abandons_what_is_in_flight(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"can-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(continues_from_a_task, key, 0)
        assert "second run" == await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        first = await rt.client.events(chain[0].run_id)
    assert 1 == CANCELLED[key]  # the step in flight was stopped
    assert EventType.WORKFLOW_CONTINUED_AS_NEW == first[-1].type
    machine = replay(ALL, stored(first, handle.workflow_id), handle.workflow_id)
    assert isinstance(machine.outcome, ContinuedAsNew)


async def test_asyncio_sleep_is_a_durable_timer_and_io_is_refused(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(asyncio_sleeps, "s")
        assert "slept" == await handle.result(timeout=30)
        types = await _types(handle)
        refused = await (await rt.client.start(opens_a_socket, "io")).result(timeout=30)
    assert [EventType.TIMER_STARTED, EventType.TIMER_FIRED] == types[1:3]
    assert refused.startswith("WorkflowLoopError: loop.create_connection()")
    assert "do this in a @step" in refused


async def test_steps_in_flight_together_retry_on_their_own(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"retry-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(retries_together, key)
        assert [0, 1, 2, 3] == await handle.result(timeout=30)
        types = await _types(handle)
    assert 4 == types.count(EventType.STEP_RETRYING) == types.count(EventType.STEP_COMPLETED)
    assert all(CALLS[(key, i)] == 2 for i in range(4))
    await _replays_identically(handle, Completed(result=[0, 1, 2, 3]))


async def test_cancelling_a_task_group_cancels_the_workflow(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"tg-cancel-{namespace_key}"
    async with make_runtime(workflows=ALL) as rt:
        handle = await rt.client.start(cancelled_group, key)
        await wait_until(_calls((key, 1), (key, 2)))
        assert await handle.cancel()
        with pytest.raises(CancellationError):
            await handle.result(timeout=30)
        types = await _types(handle)
    assert 2 == CANCELLED[key]
    assert EventType.WORKFLOW_CANCELLED == types[-1]
    await _replays_identically(handle, Cancelled(message="workflow cancelled"))
