"""Fault containment: a workflow's code and steps can end only that workflow's run."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import anyio
import pytest

from riverrun import (
    EventType,
    RetryPolicy,
    RunStatus,
    StepFailed,
    step,
    workflow,
)
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio

CALLS: Counter[str] = Counter()

_RAISES: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "CancelledError": asyncio.CancelledError,
}


@step(retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
async def raises_base(key: str, kind: str) -> str:
    CALLS[key] += 1
    raise _RAISES[kind]()


@workflow()
async def runs_base_step(key: str, kind: str) -> str:
    try:
        await raises_base(key, kind)
    except StepFailed as err:
        return f"caught {err.error_type}"
    return "unreachable"


@step()
async def echo(value: int) -> int:
    return value


@workflow()
async def healthy(value: int) -> int:
    return await echo(value)


@pytest.mark.parametrize("kind", sorted(_RAISES))
async def test_step_raising_base_exception_is_a_step_failure(
    make_runtime: RuntimeFactory,
    namespace_key: str,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = f"base-{kind}-{namespace_key}"
    caplog.set_level(logging.WARNING, logger="riverrun")
    async with make_runtime(workflows=[runs_base_step, healthy]) as rt:
        handle = await rt.client.start(runs_base_step, key, kind)
        assert await handle.result(timeout=30) == f"caught {kind}"
        types = [e.type for e in await handle.events()]
        # the runtime hosting it is still serving other workflows
        other = await rt.client.start(healthy, 7)
        assert await other.result(timeout=30) == 7
    assert types == [
        EventType.WORKFLOW_STARTED,
        EventType.STEP_RETRYING,
        EventType.STEP_FAILED,
        EventType.WORKFLOW_COMPLETED,
    ]
    assert CALLS[key] == 2  # under its retry policy
    logged = [r for r in caplog.records if kind in r.getMessage() and "step" in r.getMessage()]
    assert logged and all(r.levelno == logging.WARNING for r in logged)
    assert handle.workflow_id in logged[0].getMessage()


BLOCKED = anyio.Event()
SEEN: list[str] = []


@step()
async def blocks_forever(key: str) -> str:
    SEEN.append(key)
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        SEEN.append(f"{key}:cancelled")
        raise
    return "unreachable"


@workflow()
async def runs_blocking_step(key: str) -> str:
    return await blocks_forever(key)


async def test_worker_shutdown_still_cancels_a_step(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"shutdown-{namespace_key}"
    async with make_runtime(workflows=[runs_blocking_step]) as rt:
        handle = await rt.client.start(runs_blocking_step, key)

        async def step_running() -> bool:
            return key in SEEN

        await wait_until(step_running)
        events_before = await handle.events()
    # the shutdown's cancellation reached the step and was not taken for a step failure
    assert SEEN.count(f"{key}:cancelled") == 1
    assert [e.type for e in events_before] == [EventType.WORKFLOW_STARTED]


async def test_cancel_request_still_cancels_a_step(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"cancel-{namespace_key}"
    async with make_runtime(workflows=[runs_blocking_step]) as rt:
        handle = await rt.client.start(runs_blocking_step, key)

        async def step_running() -> bool:
            return key in SEEN

        await wait_until(step_running)
        await handle.cancel()
        with pytest.raises(Exception, match="cancel"):
            await handle.result(timeout=30)
        run = await handle.describe()
        types = [e.type for e in await handle.events()]
    assert run.status == RunStatus.CANCELLED
    assert EventType.STEP_FAILED not in types and EventType.STEP_RETRYING not in types
