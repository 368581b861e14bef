"""``Client.terminate``: a fenced write that ends a run with or without its worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from riverrun import (
    CancellationError,
    EventType,
    RunStatus,
    Runtime,
    WorkflowNotRunning,
    execute_child,
    sleep,
    start_child,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.persistence import NewEvent
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio

_step_entered: dict[str, anyio.Event] = {}


@workflow()
async def waits_forever(tag: str) -> None:
    await wait_for_signal("never")


@step()
async def blocks(tag: str) -> str:
    _step_entered[tag].set()
    await anyio.sleep_forever()
    return tag


@workflow()
async def in_long_step(tag: str) -> str:
    return await blocks(tag)


@workflow()
async def has_child(tag: str) -> None:
    await start_child(waits_forever, tag, workflow_id=f"{tag}-child")
    await wait_for_signal("never")


@workflow()
async def awaits_child(tag: str) -> str:
    try:
        await execute_child(waits_forever, tag, workflow_id=f"{tag}-kid")
    except CancellationError as err:
        return f"child ended: {err}"
    return "child completed"


@workflow()
async def naps(tag: str) -> None:
    await sleep(3600)


@workflow()
async def quick(x: int) -> int:
    return x + 1


def _terminal(events: list[Any]) -> list[Any]:
    return [e for e in events if EventType(e.type).is_terminal]


async def _ended_once(rt: Runtime, workflow_id: str) -> None:
    """The chain's current run is cancelled, with exactly one terminal event, a terminated one."""
    handle = rt.client.get_handle(workflow_id)
    run = await handle.describe()
    assert run.status == RunStatus.CANCELLED
    events = await handle.events()
    terminal = _terminal(events)
    assert [e.type for e in terminal] == [EventType.WORKFLOW_CANCELLED]
    assert terminal[0].data["terminated"] is True
    assert events[-1] is terminal[0]
    with pytest.raises(CancellationError):
        await handle.result(timeout=30)


async def test_terminate_a_zombie_run_that_no_worker_can_host(make_runtime: RuntimeFactory) -> None:
    # started by a name that no worker registers: `cancel` would wait for ever
    async with make_runtime(workflows=[quick]) as rt:
        handle = await rt.client.start("no_such_workflow", 1, workflow_id="zombie")
        assert (await handle.describe()).status == RunStatus.RUNNING
        final = await rt.client.terminate("zombie", reason="misspelled")
        assert final.status == RunStatus.CANCELLED
        assert final.error == "terminated: misspelled"
        await _ended_once(rt, "zombie")
        events = await handle.events()
        assert events[-1].data["reason"] == "misspelled"


async def test_terminate_without_any_worker(nats_server: Any, namespace: str) -> None:
    async with Runtime.connect(nats_server.url, namespace=namespace, worker=False) as rt:
        handle = await rt.client.start("no_such_workflow", workflow_id="orphan")
        final = await handle.terminate()
        assert final.status == RunStatus.CANCELLED
        await _ended_once(rt, "orphan")
        with pytest.raises(WorkflowNotRunning, match="cancelled"):
            await handle.terminate()


async def test_terminate_a_hosted_workflow_waiting_for_a_signal(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[waits_forever]) as rt:
        handle = await rt.client.start(waits_forever, "a", workflow_id="hosted")
        worker = rt.worker
        assert worker is not None
        await wait_until(lambda: _has_event(rt, "hosted", EventType.WORKFLOW_STARTED))
        await wait_until(_active(worker, 1))
        await rt.client.terminate("hosted", reason="ops")
        await _ended_once(rt, "hosted")
        # the worker fails its fence on the wake-up, lets go and does not restart it
        await wait_until(_active(worker, 0))
        await _ended_once(rt, "hosted")
        assert worker.statistics().restarts == 0
        with pytest.raises(WorkflowNotRunning):
            await handle.signal("never")


async def test_terminate_a_workflow_whose_step_is_in_flight(make_runtime: RuntimeFactory) -> None:
    tag = f"step-{id(make_runtime)}"
    _step_entered[tag] = anyio.Event()
    async with make_runtime(workflows=[in_long_step]) as rt:
        handle = await rt.client.start(in_long_step, tag, workflow_id="busy")
        with anyio.fail_after(30):
            await _step_entered[tag].wait()
        await handle.terminate(reason="stuck step")
        worker = rt.worker
        assert worker is not None
        await wait_until(_active(worker, 0))  # the step was cancelled, the actor let go
        await _ended_once(rt, "busy")
        assert worker.statistics().restarts == 0


async def test_terminate_closes_children_and_tells_nobody_twice(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[has_child, waits_forever]) as rt:
        await rt.client.start(has_child, "p", workflow_id="p")
        await wait_until(lambda: _has_event(rt, "p-child", EventType.WORKFLOW_STARTED))
        await wait_until(lambda: _has_event(rt, "p", EventType.CHILD_STARTED))
        await rt.client.terminate("p")
        await _ended_once(rt, "p")
        # the child's policy is `cancel`: its worker cancels it
        child = rt.client.get_handle("p-child")
        with pytest.raises(CancellationError):
            await child.result(timeout=30)
        assert (await child.describe()).status == RunStatus.CANCELLED


async def test_terminate_of_an_ended_chain_names_its_status(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[quick]) as rt:
        handle = await rt.client.start(quick, 1, workflow_id="done")
        assert await handle.result(timeout=30) == 2
        with pytest.raises(WorkflowNotRunning, match="'completed'") as caught:
            await rt.client.terminate("done")
        assert caught.value.status == "completed"
        events = await handle.events()
        assert [e.type for e in _terminal(events)] == [EventType.WORKFLOW_COMPLETED]


async def test_terminate_retries_when_a_worker_appends_first(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_runtime(workflows=[quick]) as rt:
        await rt.client.start("no_such_workflow", workflow_id="raced")
        events = rt.backend.events
        real = events.append
        calls = 0

        async def worker_first(key: Any, event: Any, *, expected_last: int, **kw: Any) -> int:
            # a worker appends between terminate's read and its write
            nonlocal calls
            calls += 1
            if calls == 1:
                await real(
                    key,
                    NewEvent(type="signal.received", timestamp=event.timestamp, data={"name": "x"}),
                    expected_last=expected_last,
                    idempotency_id="worker:1",
                )
            return await real(key, event, expected_last=expected_last, **kw)

        monkeypatch.setattr(events, "append", worker_first)
        await rt.client.terminate("raced")
        monkeypatch.undo()
        assert calls == 2
        types = [e.type for e in await rt.client.get_handle("raced").events()]
        assert types == [
            EventType.WORKFLOW_STARTED,
            EventType.SIGNAL_RECEIVED,
            EventType.WORKFLOW_CANCELLED,
        ]
        await _ended_once(rt, "raced")


async def _has_event(rt: Runtime, workflow_id: str, type_: EventType) -> bool:
    try:
        events = await rt.client.get_handle(workflow_id).events()
    except LookupError:
        return False
    return any(e.type == type_ for e in events)


def _active(worker: Any, count: int) -> Any:
    async def check() -> bool:
        return bool(worker.statistics().active == count)

    return check


async def test_a_handle_in_the_hosting_process_sees_a_terminate_from_elsewhere(
    nats_server: Any, namespace: str
) -> None:
    # the chain was started through the hosting runtime, whose handle waits for its worker to
    # announce the end; the terminate comes from another process (here: another runtime), and
    # the lease is long, so only the worker letting go can wake the handle in time
    options: dict[str, Any] = {"namespace": namespace, "lease_ttl": timedelta(minutes=10)}
    async with Runtime.connect(nats_server.url, workflows=[waits_forever], **options) as host:
        handle = await host.client.start(waits_forever, "x", workflow_id="elsewhere")
        worker = host.worker
        assert worker is not None
        await wait_until(_active(worker, 1))
        async with Runtime.connect(nats_server.url, worker=False, **options) as ops:
            await ops.client.terminate("elsewhere", reason="from another process")
        with pytest.raises(CancellationError):
            await handle.result(timeout=60)
        await wait_until(_active(worker, 0))
        assert worker.statistics().restarts == 0
        await _ended_once(host, "elsewhere")


async def test_terminating_a_child_tells_its_parent(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[awaits_child, waits_forever]) as rt:
        parent = await rt.client.start(awaits_child, "t", workflow_id="t")
        await wait_until(lambda: _has_event(rt, "t-kid", EventType.WORKFLOW_STARTED))
        await rt.client.terminate("t-kid", reason="stop the child")
        assert await parent.result(timeout=30) == "child ended: child workflow 't-kid' was cancelled"
        await _ended_once(rt, "t-kid")
        kinds = [e.type for e in await parent.events()]
        assert kinds.count(EventType.CHILD_CANCELLED) == 1


async def test_terminate_unschedules_the_runs_timers() -> None:
    async with Runtime.in_memory(workflows=[naps]) as rt:
        await rt.client.start(naps, "z", workflow_id="napper")
        await wait_until(lambda: _has_event(rt, "napper", EventType.TIMER_STARTED))
        schedules = rt.backend.inbox._schedules  # type: ignore[attr-defined]

        async def scheduled() -> bool:  # (written just after the event)
            return any(key[0] == "napper" for key in schedules)

        await wait_until(scheduled, timeout=10)
        await rt.client.terminate("napper")
        assert not [key for key in schedules if key[0] == "napper"]
        await _ended_once(rt, "napper")


async def test_terminate_follows_a_hand_over_the_records_do_not_show_yet(
    make_runtime: RuntimeFactory,
) -> None:
    # a worker wrote a hand-over (old run's link + new run's first event) and died before
    # projecting it: the records and head still say the old run is current and running
    from riverrun.persistence import Append, RunKey
    from riverrun.runtime._instance import next_run_id

    async with make_runtime(workflows=[quick]) as rt:
        handle = await rt.client.start("no_such_workflow", workflow_id="ahead")
        old = (await handle.describe()).run_id
        new = next_run_id(old)
        log = rt.backend.events
        now = (await handle.events())[0].timestamp
        await log.append_atomic(
            [
                Append(
                    key=RunKey(workflow_id="ahead", run_id=old),
                    event=NewEvent(
                        type="workflow.continued_as_new",
                        timestamp=now,
                        data={"new_run_id": new, "args": [], "kwargs": {}, "reason": None},
                    ),
                    expected_last=1,
                    idempotency_id=f"{old}:2",
                ),
                Append(
                    key=RunKey(workflow_id="ahead", run_id=new),
                    event=NewEvent(
                        type="workflow.started",
                        timestamp=now,
                        data={
                            "workflow_name": "no_such_workflow",
                            "args": [],
                            "kwargs": {},
                            "execution": 2,
                            "continued_from_run_id": old,
                            "parent": None,
                            "inbox_cursor": 0,
                        },
                    ),
                    expected_last=0,
                    idempotency_id=f"{new}:1",
                ),
            ]
        )
        assert (await rt.client.get_run(old)).status == RunStatus.RUNNING

        final = await rt.client.terminate("ahead")
        assert final.run_id == new
        assert final.status == RunStatus.CANCELLED
        before = await rt.client.get_run(old)
        assert before.status == RunStatus.CONTINUED_AS_NEW
        assert before.continued_to_run_id == new
        assert (await handle.describe()).run_id == new
        await _ended_once(rt, "ahead")
        # the old run's log is untouched: its link is still its last event
        assert [e.type for e in await rt.client.events(old)][-1] == (
            EventType.WORKFLOW_CONTINUED_AS_NEW
        )
