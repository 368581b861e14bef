"""What a run waits on (``Client.waiting_on``), derived from its recorded history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from riverrun import (
    Event,
    EventType,
    RetryPolicy,
    RunStatus,
    sleep,
    start_child,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.runtime._waiting import WaitingOn, waiting_on
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@workflow()
async def sleeps_an_hour() -> None:
    await sleep(3600)


@workflow()
async def waits_for_go() -> Any:
    return await wait_for_signal("go")


@workflow()
async def child_then_sleep(child_id: str) -> None:
    await start_child(waits_for_go, workflow_id=child_id)
    await sleep(3600)


@workflow()
async def signal_then_sleep() -> None:
    await wait_for_signal("go", timeout=3600)
    await sleep(7200)


@step(retry=RetryPolicy(max_attempts=5, initial_interval=3600))
async def always_fails() -> None:
    raise RuntimeError("the service is down")


@workflow()
async def retries() -> None:
    await always_fails()


async def _waits(
    rt: Any, run_id: str, *kinds: str, not_timer: str | None = None
) -> list[WaitingOn]:
    found: list[WaitingOn] = []

    async def reached() -> bool:
        nonlocal found
        found = await rt.client.waiting_on(run_id)
        moved = not_timer is None or all(w.timer_id != not_timer for w in found)
        return [w.kind for w in found] == list(kinds) and moved

    await wait_until(reached)
    return found


async def test_a_timer(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[sleeps_an_hour]) as rt:
        handle = await rt.client.start(sleeps_an_hour)
        [timer] = await _waits(rt, handle.first_run_id, "timer")
    assert timer.timer_id and timer.timer_id.startswith(handle.first_run_id)
    assert timer.due is not None and timedelta(minutes=59) < timer.due - timer.since <= timedelta(
        hours=1
    )
    assert timer.describe().startswith(f"timer {timer.timer_id} due ")


async def test_a_child_and_a_timer_at_once(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[child_then_sleep, waits_for_go]) as rt:
        handle = await rt.client.start(child_then_sleep, "kid-1")
        child, timer = await _waits(rt, handle.first_run_id, "child", "timer")
        await rt.client.get_handle("kid-1").signal("go", 1)
        await _waits(rt, handle.first_run_id, "timer")  # the child ended: only the timer
    assert child.child_workflow_id == "kid-1" and child.child_status == RunStatus.RUNNING
    assert "child workflow kid-1 (running)" == child.describe()
    assert timer.kind == "timer" and timer.due is not None


async def test_a_step_between_attempts(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[retries]) as rt:
        handle = await rt.client.start(retries)
        [retry] = await _waits(rt, handle.first_run_id, "step_retry")
    assert retry.step == "always_fails" and retry.attempt == 2
    assert retry.error == "RuntimeError: the service is down"
    assert retry.retry_at is not None and retry.retry_at > retry.since
    assert "step 'always_fails' attempt 2: retry at " in retry.describe(retry.since)


async def test_a_signal_wait_is_idle_and_its_lost_timeout_is_not_waited_on(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[signal_then_sleep]) as rt:
        handle = await rt.client.start(signal_then_sleep)
        [first] = await _waits(rt, handle.first_run_id, "timer")  # the wait's timeout
        await handle.signal("go")
        [second] = await _waits(rt, handle.first_run_id, "timer", not_timer=first.timer_id)
        events = await rt.client.events(handle.first_run_id)
        await handle.terminate()
        after = await rt.client.waiting_on(handle.first_run_id)
    # the timeout lost to the signal (no event says so) and is not listed once the run moved on
    assert [e.type for e in events].count(EventType.TIMER_FIRED) == 0
    assert second.due is not None and timedelta(
        minutes=119
    ) < second.due - second.since <= timedelta(hours=2)
    assert after == []  # an ended run waits on nothing


async def test_idle_while_waiting_for_a_signal(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[waits_for_go]) as rt:
        handle = await rt.client.start(waits_for_go)
        [idle] = await _waits(rt, handle.first_run_id, "idle")
        events = await rt.client.events(handle.first_run_id)
    assert idle.since == events[-1].timestamp
    assert "a signal wait" in idle.describe() and "step attempt in flight" in idle.describe()


# -- several operations in flight at once (a history the machine may write with issue 12) ---

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(seq: int, type_: EventType, **data: Any) -> Event:
    return Event(
        run_id="r1", sequence=seq, type=type_, timestamp=T0 + timedelta(seconds=seq), data=data
    )


def test_several_operations_in_flight_from_history() -> None:
    hour = T0 + timedelta(hours=1)
    events = [
        _event(1, EventType.WORKFLOW_STARTED, workflow_name="w", args=[], kwargs={}),
        _event(2, EventType.TIMER_STARTED, position=0, timer_id="r1-0", fire_at=hour),
        _event(3, EventType.TIMER_STARTED, position=1, timer_id="r1-1", fire_at=hour),
        _event(4, EventType.CHILD_STARTED, position=2, child_workflow_id="c1", child_run_id="x"),
        _event(5, EventType.CHILD_STARTED, position=3, child_workflow_id="c2", child_run_id="y"),
        _event(
            6,
            EventType.STEP_RETRYING,
            position=4,
            name="s",
            attempt=1,
            error_type="E",
            message="m",
            retry_at=hour,
        ),
        _event(
            7,
            EventType.STEP_RETRYING,
            position=5,
            name="t",
            attempt=2,
            error_type="E",
            message="m",
            retry_at=hour,
        ),
        _event(8, EventType.TIMER_FIRED, timer_id="r1-0", inbox_seq=3),
        _event(9, EventType.CHILD_COMPLETED, child_workflow_id="c1", result=1, inbox_seq=4),
        _event(10, EventType.STEP_COMPLETED, position=5, name="t", result=None),
        _event(
            11,
            EventType.CHILD_STARTED,
            position=6,
            child_workflow_id="c3",
            error_type="WorkflowAlreadyRunning",
            message="taken",
        ),
        _event(12, EventType.CANCELLATION_REQUESTED, inbox_seq=5, reason="operator"),
        _event(13, EventType.STEP_STARTED, position=7, name="u", attempt=1),
    ]
    found = waiting_on(events)
    assert [(w.kind, w.timer_id or w.child_workflow_id or w.step) for w in found] == [
        ("timer", "r1-1"),
        ("child", "c2"),
        ("step_retry", "s"),
        ("cancellation", None),
        ("step", "u"),
    ]
    assert found[2].attempt == 2 and found[2].error == "E: m"
    assert found[3].reason == "operator"
    assert "cancellation requested (operator)" in found[3].describe()
    assert (
        found[4].describe()
        == f"step 'u' attempt 1 running since {found[4].since:%Y-%m-%d %H:%M:%S}+00:00"
    )
    ended = [*events, _event(14, EventType.WORKFLOW_CANCELLED, message="cancelled")]
    assert waiting_on(ended) == []
