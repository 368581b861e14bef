"""The lean step path: a step task that goes on to run the next step of a sequence, and the
converter's fast path for arguments that need no converting. Both keep what they replace:
a cancel request or a stop message still cancels the step in flight, the per-run step limit
still holds, and a value converts exactly as the full walk converts it."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from riverrun import CancellationError, EventType, RetryPolicy, RunStatus, step, workflow
from riverrun.runtime._converter import DataConverter
from riverrun.runtime._hints import LazyHints
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio

CALLS: Counter[tuple[str, int]] = Counter()
CANCELLED: Counter[str] = Counter()
RUNNING: Counter[str] = Counter()
PEAK: Counter[str] = Counter()


@step()
async def quick(key: str, i: int) -> int:
    CALLS[(key, i)] += 1
    RUNNING[key] += 1
    PEAK[key] = max(PEAK[key], RUNNING[key])
    try:
        await anyio.lowlevel.checkpoint()
    finally:
        RUNNING[key] -= 1
    return i


@step()
async def hangs(key: str, i: int) -> int:
    CALLS[(key, i)] += 1
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        CANCELLED[key] += 1
        raise
    return -1


@workflow()
async def then_hangs(key: str) -> int:
    total = 0
    for i in range(3):
        total += await quick(key, i)
    return total + await hangs(key, 3)


@workflow()
async def sequence_then_gather(key: str) -> int:
    total = 0
    for i in range(3):
        total += await quick(key, i)
    return total + sum(await asyncio.gather(*(quick(key, i) for i in range(10, 14))))


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
async def fails_once(key: str, i: int) -> int:
    CALLS[(key, i)] += 1
    if CALLS[(key, i)] == 1:
        raise ConnectionError("first attempt fails")
    return i


@step(timeout=0.05, retry=RetryPolicy(max_attempts=1))
async def too_slow(key: str, i: int) -> int:
    CALLS[(key, i)] += 1
    await anyio.sleep_forever()
    return -1


@workflow()
async def retries_and_times_out(key: str) -> str:
    await quick(key, 0)
    await fails_once(key, 1)  # retried, in the task that ran the step before it
    try:
        await too_slow(key, 2)
    except Exception as exc:
        return type(exc).__name__
    return "no timeout"


async def _types(handle: Any) -> list[EventType]:
    return [e.type for e in await handle.events()]


async def test_a_cancel_request_cancels_a_step_that_follows_a_sequence(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"cancel-{namespace_key}"
    async with make_runtime(workflows=[then_hangs]) as rt:
        handle = await rt.client.start(then_hangs, key)

        async def hanging() -> bool:
            return CALLS[(key, 3)] == 1

        await wait_until(hanging)
        assert await handle.cancel()
        with pytest.raises(CancellationError):
            await handle.result(timeout=30)
        types = await _types(handle)
    assert 1 == CANCELLED[key]
    assert [1, 1, 1] == [CALLS[(key, i)] for i in range(3)]
    assert [
        EventType.WORKFLOW_STARTED,
        EventType.STEP_COMPLETED,
        EventType.STEP_COMPLETED,
        EventType.STEP_COMPLETED,
        EventType.CANCELLATION_REQUESTED,
        EventType.WORKFLOW_CANCELLED,
    ] == types


async def test_terminate_cancels_a_step_that_follows_a_sequence(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"terminate-{namespace_key}"
    async with make_runtime(workflows=[then_hangs]) as rt:
        handle = await rt.client.start(then_hangs, key)

        async def hanging() -> bool:
            return CALLS[(key, 3)] == 1

        await wait_until(hanging)
        final = await handle.terminate(reason="enough")
        assert RunStatus.CANCELLED == final.status

        async def cancelled() -> bool:
            return CANCELLED[key] == 1

        await wait_until(cancelled)  # the step in flight is cancelled, not left running


async def test_the_step_limit_holds_after_a_sequence(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"limit-{namespace_key}"
    async with make_runtime(workflows=[sequence_then_gather], max_concurrent_steps=2) as rt:
        handle = await rt.client.start(sequence_then_gather, key)
        assert 0 + 1 + 2 + 10 + 11 + 12 + 13 == await handle.result(timeout=30)
    assert 2 == PEAK[key]


async def test_a_step_that_follows_a_sequence_is_retried_and_timed_out_as_any(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"retry-{namespace_key}"
    async with make_runtime(workflows=[retries_and_times_out]) as rt:
        handle = await rt.client.start(retries_and_times_out, key)
        assert "TimeoutError" == await handle.result(timeout=30)
        types = await _types(handle)
    assert [1, 2, 1] == [CALLS[(key, i)] for i in range(3)]
    assert [
        EventType.WORKFLOW_STARTED,
        EventType.STEP_COMPLETED,
        EventType.STEP_RETRYING,
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.WORKFLOW_COMPLETED,
    ] == types


def _hints(fn: Any) -> Any:
    return LazyHints(fn, "step", fn.__name__).get()


async def _ints(a: int, b: str, c: Any, d: float) -> int:
    return a


def test_arguments_of_their_exact_simple_hint_pass_as_they_are() -> None:
    converter = DataConverter()
    hints = _hints(_ints)
    assert converter._passes(hints, (1, "x", object(), 1.5))
    args = (1, "x", [1], 2.5)
    decoded, kwargs = converter.decode_call(hints, args, {})
    assert all(a is b for a, b in zip(args, decoded, strict=True))
    assert {} == kwargs


def test_arguments_the_walk_converts_take_the_walk() -> None:
    converter = DataConverter()
    hints = _hints(_ints)
    # an int for a float: the walk makes it a float, the fast path must not keep the int
    assert not converter._passes(hints, (1, "x", None, 3))
    decoded, _ = converter.decode_call(hints, (1, "x", None, 3), {})
    assert float is type(decoded[3])
    # a bool for an int is not exactly an int: the walk decides, as before
    assert not converter._passes(hints, (True, "x", None, 1.0))
    with pytest.raises(TypeError):  # SerializationError: a str for an int
        converter.encode_call(hints, ("1", "x", None, 1.0), {})
    with pytest.raises(TypeError):
        converter.decode_call(hints, (1, 2, None, 1.0), {})
