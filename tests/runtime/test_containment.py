"""Fault containment: a workflow's code and steps can end only that workflow's run."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime

import anyio
import pytest

from riverrun import (
    CancellationError,
    EventType,
    HistoryLimits,
    ParentClosePolicy,
    RetryPolicy,
    RunStatus,
    StepFailed,
    WorkflowFailed,
    continue_as_new,
    start_child,
    step,
    wait_for_signal,
    workflow,
)
from riverrun._errors import StorePermissionDenied
from riverrun.persistence import NewEvent, RunKey, StoreUnavailable
from riverrun.testing import wait_until

from .conftest import RuntimeFactory, fail_history_reads

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


# -- a start whose arguments do not fit the workflow, a step call that does not fit its step --


@workflow()
async def takes_one(n: int) -> int:
    return n


@step(retry=RetryPolicy(max_attempts=1))
async def one_arg(n: int) -> int:
    return n


@workflow()
async def calls_step_badly() -> str:
    try:
        await one_arg(1, 2)  # type: ignore[call-arg]
    except TypeError as err:
        return f"caught {err}"
    return "unreachable"


async def test_start_with_arguments_that_do_not_fit_fails_the_run(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[takes_one, healthy]) as rt:
        handle = await rt.client.start(takes_one, 1, 2, extra=3)
        with pytest.raises(WorkflowFailed, match=r"TypeError: .*takes_one.*cannot be called"):
            await handle.result(timeout=30)
        run = await handle.describe()
        types = [e.type for e in await handle.events()]
        assert (await (await rt.client.start(healthy, 3)).result(timeout=30)) == 3
        restarts = rt.worker.statistics().restarts
    assert run.status == RunStatus.FAILED
    assert run.error is not None and run.error.startswith("TypeError: ")
    assert types == [EventType.WORKFLOW_STARTED, EventType.WORKFLOW_FAILED]
    assert restarts == 0


async def test_step_called_with_arguments_that_do_not_fit_is_a_step_failure(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[calls_step_badly]) as rt:
        handle = await rt.client.start(calls_step_badly)
        result = await handle.result(timeout=30)
        types = [e.type for e in await handle.events()]
    assert result.startswith("caught ") and "positional argument" in result
    assert types == [EventType.WORKFLOW_STARTED, EventType.STEP_FAILED, EventType.WORKFLOW_COMPLETED]


# -- what a workflow's cleanup raises while the runtime closes it ---------------------------


@workflow()
async def continues_in_finally(tag: str) -> str:
    try:
        await wait_for_signal("never")
    finally:
        continue_as_new(tag + "-again")
    return "unreachable"


@workflow()
async def terminating_parent(tag: str) -> str:
    await start_child(
        continues_in_finally,
        tag,
        workflow_id=f"{tag}-child",
        parent_close_policy=ParentClosePolicy.TERMINATE,
    )
    await wait_for_signal("go")
    return "done"


async def test_cleanup_raising_on_terminate_does_not_escape(
    make_runtime: RuntimeFactory, namespace_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="riverrun")
    tag = f"term-{abs(hash(namespace_key))}"
    async with make_runtime(workflows=[terminating_parent, continues_in_finally, healthy]) as rt:
        handle = await rt.client.start(terminating_parent, tag, workflow_id=tag)

        async def child_waits() -> bool:
            return bool(await rt.client.list_runs(workflow_id=f"{tag}-child"))

        await wait_until(child_waits)
        await handle.signal("go")
        assert await handle.result(timeout=30) == "done"
        child = rt.client.get_handle(f"{tag}-child")
        with pytest.raises(CancellationError):
            await child.result(timeout=30)
        events = await child.events()
        chain = await rt.client.list_runs(workflow_id=f"{tag}-child")
        # the runtime still serves other workflows
        assert await (await rt.client.start(healthy, 5)).result(timeout=30) == 5
    assert events[-1].type == EventType.WORKFLOW_CANCELLED
    assert [e.type for e in events].count(EventType.WORKFLOW_CANCELLED) == 1
    assert [r.status for r in chain] == [RunStatus.CANCELLED]
    logged = [r for r in caplog.records if "being closed" in r.getMessage()]
    assert logged and logged[0].levelno == logging.WARNING
    assert f"{tag}-child" in logged[0].getMessage() and chain[0].run_id in logged[0].getMessage()


@step()
async def tick(i: int) -> int:
    return i


@workflow(auto_continue_as_new=True)
async def auto_with_cleanup(state: dict[str, int]) -> int:
    try:
        while state["done"] < 6:
            await tick(state["done"])
            state["done"] += 1
        return state["done"]
    finally:
        if state["done"] < 6:
            continue_as_new({"done": -100})  # ignored: the runtime already decided to continue


async def test_cleanup_raising_on_auto_continue_keeps_the_decided_outcome(
    make_runtime: RuntimeFactory,
) -> None:
    limits = HistoryLimits(max_events=3, max_bytes=10 * 1024 * 1024)
    async with make_runtime(workflows=[auto_with_cleanup], history_limits=limits) as rt:
        handle = await rt.client.start(auto_with_cleanup, {"done": 0})
        assert await handle.result(timeout=30) == 6
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        link = (await rt.client.events(chain[0].run_id))[-1]
    assert len(chain) >= 2
    assert link.data["reason"].startswith("automatic: ")
    assert [dict(a) for a in link.data["args"]] != [{"done": -100}]


@workflow()
async def body_raises_base(kind: str) -> None:
    raise _RAISES[kind]()


async def test_workflow_code_raising_base_exception_fails_only_its_run(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[body_raises_base, healthy]) as rt:
        for kind in sorted(_RAISES):
            handle = await rt.client.start(body_raises_base, kind)
            with pytest.raises(WorkflowFailed, match=kind):
                await handle.result(timeout=30)
        assert await (await rt.client.start(healthy, 1)).result(timeout=30) == 1


# -- a crash that repeats the same way parks the workflow; an outage never does --------------


@workflow()
async def waits_for_go() -> int:
    return int(await wait_for_signal("go"))


async def test_a_deterministic_crash_parks_the_workflow(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="riverrun")
    async with make_runtime(
        workflows=[waits_for_go, healthy], restart_backoff=0.0, park_after_failures=3
    ) as rt:
        worker = rt.worker
        assert worker is not None
        handle = await rt.client.start(waits_for_go)
        key = RunKey(workflow_id=handle.workflow_id, run_id=handle.first_run_id)
        # a corrupt event: replaying it raises KeyError (no signal name), every time
        await rt.backend.events.append(
            key,
            NewEvent(
                type=EventType.SIGNAL_RECEIVED.value,
                timestamp=datetime.now(UTC),
                data={"payload": 1, "inbox_seq": 0},
            ),
            expected_last=1,
            idempotency_id="corrupt",
        )
        await handle.signal("go", 1)  # the hosting actor meets the fence: reloads the history

        async def released() -> bool:
            return worker.statistics().active == 0 or handle.workflow_id in worker.parked

        await wait_until(released)
        await worker.deliver(handle.workflow_id, None)  # host it again: replay the corruption

        async def parked() -> bool:
            return handle.workflow_id in worker.parked

        await wait_until(parked)
        reason = worker.parked[handle.workflow_id]
        stats = worker.statistics()
        run = await handle.describe()
        # the rest of the worker is unaffected
        assert await (await rt.client.start(healthy, 2)).result(timeout=30) == 2
    assert run.status == RunStatus.RUNNING  # parked, history untouched
    assert "3 times in a row" in reason and "KeyError" in reason and key.run_id in reason
    # one restart for the conflict, two for the crashes replaying the corruption (the third parks)
    assert stats.parked == 1 and stats.restarts == 3
    worker_logs = [r for r in caplog.records if r.name == "riverrun.worker"]
    parks = [r for r in worker_logs if r.levelno == logging.ERROR and "parked" in r.getMessage()]
    assert len(parks) == 1
    assert handle.workflow_id in parks[0].getMessage() and key.run_id in parks[0].getMessage()
    restarts = [r for r in worker_logs if r.levelno == logging.WARNING and "crashed" in r.getMessage()]
    assert len(restarts) == 2
    assert all(key.run_id in r.getMessage() and "KeyError" in r.getMessage() for r in restarts)
    actor_restarts = [
        r
        for r in caplog.records
        if r.name == "riverrun.actors" and r.levelno == logging.WARNING and "wf:" in r.getMessage()
    ]
    assert len(actor_restarts) == 3  # the conflict's reload, then the two crashes


async def test_an_infrastructure_fault_never_parks(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_runtime(
        workflows=[healthy], restart_backoff=0.0, park_after_failures=2
    ) as rt:
        worker = rt.worker
        assert worker is not None
        outages: list[int] = []

        def outage(n: int, key: RunKey) -> BaseException | None:
            if n > 6:
                return None
            outages.append(n)
            return StoreUnavailable("the store is down (test)")

        fail_history_reads(monkeypatch, rt, outage)
        handle = await rt.client.start(healthy, 4)
        assert await handle.result(timeout=30) == 4
        stats = worker.statistics()
    assert [1, 2, 3, 4, 5, 6] == outages
    assert stats.parked == 0 and stats.restarts >= 6


async def test_a_refused_permission_parks_instead_of_retrying_for_ever(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a user who may not read the run's subject fails the same way every time: only an
    # operator can fix it, so the workflow parks (naming the subject) rather than looping
    async with make_runtime(
        workflows=[healthy], restart_backoff=0.0, park_after_failures=3
    ) as rt:
        worker = rt.worker
        assert worker is not None

        def refused(n: int, key: RunKey) -> BaseException | None:
            return StorePermissionDenied(
                "permissions violation (test)", subject=f"rr.x.ev.{key.workflow_id}"
            )

        fail_history_reads(monkeypatch, rt, refused)
        handle = await rt.client.start(healthy, 4, workflow_id="perm-denied")

        async def parked() -> bool:
            return "perm-denied" in worker.parked

        await wait_until(parked, timeout=30)
        assert "permissions violation" in worker.parked["perm-denied"]
        assert 1 == worker.statistics().parked
        assert "perm-denied" == handle.workflow_id
