"""Child workflows, parent-close policies and cancellation, on memory and JetStream."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from riverrun import (
    CancellationError,
    EventType,
    ParentClosePolicy,
    RunStatus,
    WorkflowAlreadyRunning,
    continue_as_new,
    execute_child,
    start_child,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@step()
async def double(x: int) -> int:
    return 2 * x


@workflow()
async def child(x: int) -> int:
    return await double(x)


@workflow()
async def chained_child(x: int, rounds: int) -> int:
    x = await double(x)
    if rounds > 1:
        continue_as_new(x, rounds - 1)
    return x


@workflow()
async def parent(x: int) -> list[int]:
    a = await execute_child(child, x, workflow_id=f"{x}-child-a")
    b = await execute_child(chained_child, x, 3, workflow_id=f"{x}-child-b")
    return [a, b]


@workflow()
async def forever(tag: str) -> None:
    await wait_for_signal("never")


@workflow()
async def middle(tag: str) -> None:
    await start_child(forever, tag, workflow_id=f"{tag}-grandchild")
    await wait_for_signal("never")


@workflow()
async def continuing_parent(tag: str, round_: int, policy: str) -> str:
    if round_ == 0:
        await start_child(
            middle, tag, workflow_id=f"{tag}-child", parent_close_policy=ParentClosePolicy(policy)
        )
        await wait_for_signal("go")
        continue_as_new(tag, 1, policy)
    return "done"


@workflow()
async def waiting_parent(tag: str) -> None:
    await start_child(middle, tag, workflow_id=f"{tag}-child")
    await wait_for_signal("never")


async def test_execute_child_and_a_child_that_continues_as_new(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[parent, child, chained_child]) as rt:
        handle = await rt.client.start(parent, 5, workflow_id="p5")
        assert [10, 40] == await handle.result(timeout=30)
        b_chain = await rt.client.list_runs(workflow_id="5-child-b")
        types = [e.type for e in await handle.events()]
    assert 3 == len(b_chain)
    assert {"p5"} == {r.parent_workflow_id for r in b_chain}
    assert 2 == types.count(EventType.CHILD_STARTED)
    assert 2 == types.count(EventType.CHILD_COMPLETED)
    assert EventType.CHILD_FAILED not in types


async def status_of(rt: Any, workflow_id: str) -> RunStatus:
    return (await rt.client.get_handle(workflow_id).describe()).status


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("cancel", RunStatus.CANCELLED), ("abandon", RunStatus.RUNNING)],
)
async def test_continue_as_new_closes_children_per_policy(
    make_runtime: RuntimeFactory, policy: str, expected: RunStatus
) -> None:
    tag = f"can-{policy}"
    async with make_runtime(workflows=[continuing_parent, middle, forever]) as rt:
        handle = await rt.client.start(continuing_parent, tag, 0, policy, workflow_id=tag)

        async def grandchild_started() -> bool:
            return bool(await rt.client.list_runs(workflow_id=f"{tag}-grandchild"))

        await wait_until(grandchild_started)
        await handle.signal("go")
        assert "done" == await handle.result(timeout=30)

        async def settled() -> bool:
            return expected == await status_of(rt, f"{tag}-grandchild")

        await wait_until(settled)
        assert expected == await status_of(rt, f"{tag}-child")


async def test_cancelling_a_parent_reaches_every_descendant(make_runtime: RuntimeFactory) -> None:
    tag = "cancel-tree"
    async with make_runtime(workflows=[waiting_parent, middle, forever]) as rt:
        handle = await rt.client.start(waiting_parent, tag, workflow_id=tag)

        async def grandchild_started() -> bool:
            return bool(await rt.client.list_runs(workflow_id=f"{tag}-grandchild"))

        await wait_until(grandchild_started)
        assert await handle.cancel()
        with pytest.raises(CancellationError):
            await handle.result(timeout=30)
        for workflow_id in (f"{tag}-child", f"{tag}-grandchild"):
            with pytest.raises(CancellationError):
                await rt.client.get_handle(workflow_id).result(timeout=30)
        events = await handle.events()
    assert EventType.CANCELLATION_REQUESTED in [e.type for e in events]
    assert EventType.WORKFLOW_CANCELLED == events[-1].type


@step()
async def slow_step(seconds: float) -> str:
    await anyio.sleep(seconds)
    return "finished"


@step()
async def cleanup(tag: str) -> str:
    return f"cleaned {tag}"


@workflow()
async def cancellable(tag: str) -> str:
    try:
        await slow_step(60)
    except CancellationError:
        await cleanup(tag)  # cleanup still runs steps after the cancellation arrived
        raise
    return "not cancelled"


async def test_cancel_interrupts_a_step_in_flight_and_cleanup_runs(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[cancellable]) as rt:
        handle = await rt.client.start(cancellable, "t", workflow_id="slow")
        await anyio.sleep(0.3)  # let the step start; the cancel must interrupt it
        with anyio.fail_after(20):  # far below the step's 60 s
            assert await handle.cancel()
            with pytest.raises(CancellationError):
                await handle.result()
        run = await handle.describe()
        events = await handle.events()
        assert not await handle.cancel()  # already ended
    assert RunStatus.CANCELLED == run.status
    types = [e.type for e in events]
    assert [
        EventType.WORKFLOW_STARTED,
        EventType.CANCELLATION_REQUESTED,
        EventType.STEP_COMPLETED,
        EventType.WORKFLOW_CANCELLED,
    ] == types
    assert "cleaned t" == events[2].data["result"]


@workflow()
async def duplicate_child_parent(tag: str) -> str:
    await start_child(forever, tag, workflow_id=f"{tag}-only")
    try:
        await start_child(forever, tag, workflow_id=f"{tag}-only")
    except WorkflowAlreadyRunning as err:
        return f"refused: {type(err).__name__}"
    return "unreachable"


async def test_starting_a_child_id_that_runs_raises_in_the_workflow(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[duplicate_child_parent, forever]) as rt:
        handle = await rt.client.start(duplicate_child_parent, "dup", workflow_id="dup-parent")
        assert "refused: WorkflowAlreadyRunning" == await handle.result(timeout=30)


CLEANUPS: list[str] = []


@step()
async def clean_up(tag: str) -> str:
    CLEANUPS.append(tag)
    return "cleaned"


@workflow()
async def stubborn(tag: str) -> str:
    try:
        await wait_for_signal("never")
    except CancellationError:
        return await clean_up(tag)  # handles a cancellation: finishes its own way
    return "signalled"


@workflow()
async def closing_parent(tag: str, policy: str) -> str:
    await start_child(
        stubborn, tag, workflow_id=f"{tag}-child", parent_close_policy=ParentClosePolicy(policy)
    )
    await wait_for_signal("go")
    return "done"


async def test_terminate_policy_ends_a_child_without_running_its_handlers(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[closing_parent, stubborn]) as rt:
        results: dict[str, Any] = {}
        for policy in ("cancel", "terminate"):
            tag = f"close-{policy}-{id(rt)}"
            handle = await rt.client.start(closing_parent, tag, policy, workflow_id=tag)

            async def child_waits(tag: str = tag) -> bool:
                return bool(await rt.client.list_runs(workflow_id=f"{tag}-child"))

            await wait_until(child_waits)
            await handle.signal("go")
            assert "done" == await handle.result(timeout=30)
            child_handle = rt.client.get_handle(f"{tag}-child")
            try:
                results[policy] = await child_handle.result(timeout=30)
            except CancellationError as err:
                results[policy] = err
            events = await child_handle.events()
            if policy == "terminate":
                assert EventType.WORKFLOW_CANCELLED == events[-1].type
                assert events[-1].data["terminated"] is True
                assert RunStatus.CANCELLED == await status_of(rt, f"{tag}-child")
                assert tag not in CLEANUPS
            else:
                assert tag in CLEANUPS
    assert "cleaned" == results["cancel"]  # a cancellation the child handled
    assert isinstance(results["terminate"], CancellationError)


ORPHAN_GATES: dict[str, anyio.Event] = {}


@step()
async def orphan_gate(key: str) -> str:
    await ORPHAN_GATES[key].wait()
    return "done"


@workflow()
async def ends_while_starting_a_child(key: str) -> str:
    starting = asyncio.create_task(start_child(forever, key, workflow_id=f"{key}-orphan"))
    result = await orphan_gate(key)  # its result ends the run while the child is starting
    starting.cancel()
    return result


async def test_a_child_started_as_its_parent_ends_gets_the_parent_close_policy(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch, namespace_key: str
) -> None:
    """The child's chain is started, but the parent's run ends before child.started is
    written: no history knows of the child. It must not run on for ever, unclosed: the
    parent-close policy (cancel, by default) is applied to it."""
    key = f"orphan{abs(hash(namespace_key)) % 10**8}"
    ORPHAN_GATES[key] = gate = anyio.Event()
    async with make_runtime(workflows=[ends_while_starting_a_child, forever]) as rt:
        events = rt.backend.events
        append = events.append

        async def slow_append(run_key: Any, event: Any, **kwargs: Any) -> Any:
            written = await append(run_key, event, **kwargs)
            if run_key.workflow_id == f"{key}-orphan" and not gate.is_set():
                gate.set()  # the step ends now and its result ends the parent's run
                await anyio.sleep(0.5)  # before the child's start returns to the parent
            return written

        monkeypatch.setattr(events, "append", slow_append)
        parent = await rt.client.start(ends_while_starting_a_child, key, workflow_id=key)
        assert "done" == await parent.result(timeout=30)
        assert EventType.CHILD_STARTED not in [e.type for e in await parent.events()]
        orphan = rt.client.get_handle(f"{key}-orphan")
        with pytest.raises(CancellationError):
            await orphan.result(timeout=30)
