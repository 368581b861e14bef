"""Identities and chains: workflow ids, child ids, reused ids, ended chains, lost records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from riverrun import (
    Retention,
    RunStatus,
    WorkflowFailed,
    WorkflowNotRunning,
    WorkflowRun,
    continue_as_new,
    execute_child,
    start_child,
    wait_for_signal,
    workflow,
)
from riverrun.runtime._children import default_child_id
from riverrun.runtime._options import validate_workflow_id

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@workflow()
async def echo(value: Any) -> Any:
    return value


@workflow()
async def approval() -> Any:
    return await wait_for_signal("approve")


@workflow()
async def approve_once() -> Any:
    # consumes one "approve" and ends: a second "approve" stays in the inbox, unconsumed
    return await wait_for_signal("approve")


# -- workflow ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "a\n", "a b", "x" * 201, "é"])
def test_invalid_workflow_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid workflow_id"):
        validate_workflow_id(bad)


async def test_start_refuses_an_empty_or_newline_terminated_id(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[echo]) as rt:
        for bad in ("", "order-1\n"):
            with pytest.raises(ValueError, match="invalid workflow_id"):
                await rt.client.start(echo, 1, workflow_id=bad)
        assert [] == await rt.client.list_runs(workflow_name="echo")


# -- signals and cancels to a chain that has ended ------------------------------------------


async def test_signal_to_an_ended_chain_raises_with_its_status(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[echo, approval]) as rt:
        done = await rt.client.start(echo, 7, workflow_id="ended-signal")
        assert 7 == await done.result(timeout=30)
        with pytest.raises(WorkflowNotRunning, match="completed") as caught:
            await done.signal("approve", True)
        assert caught.value.status == "completed"
        assert caught.value.workflow_id == "ended-signal"
        assert caught.value.run_id == done.first_run_id
        # by run id too
        with pytest.raises(WorkflowNotRunning, match="completed"):
            await rt.client.signal(done.first_run_id, "approve")
        # cancel of an ended chain sends nothing and says so
        assert await done.cancel() is False

        cancelled = await rt.client.start(approval, workflow_id="ended-cancelled")
        assert await cancelled.cancel() is True
        with pytest.raises(Exception, match="cancelled"):
            await cancelled.result(timeout=30)
        with pytest.raises(WorkflowNotRunning, match="cancelled") as caught:
            await cancelled.signal("approve")
        assert caught.value.status == "cancelled"

        # a running chain still gets its signal
        running = await rt.client.start(approval, workflow_id="running-signal")
        await running.signal("approve", "yes")
        assert "yes" == await running.result(timeout=30)


@workflow()
async def continue_once(n: int = 0) -> Any:
    if n == 0:
        continue_as_new(1)
    return await wait_for_signal("approve")


async def test_signal_by_an_old_run_id_reaches_the_running_successor(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[continue_once]) as rt:
        handle = await rt.client.start(continue_once, workflow_id="old-run-signal")
        await rt.client.signal(handle.first_run_id, "approve", "ok")
        assert "ok" == await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        assert [RunStatus.CONTINUED_AS_NEW, RunStatus.COMPLETED] == [r.status for r in chain]


# -- child ids --------------------------------------------------------------------------------


def test_default_child_ids_are_valid_and_distinct_for_long_parent_ids() -> None:
    run_id = "0123456789abcdef"
    short = default_child_id("order-1", run_id, 3)
    assert "order-1.child-01234567-3" == short
    ids = {default_child_id(p + "x" * 190, run_id, 12345) for p in ("a", "b")}
    assert 2 == len(ids)
    for child_id in ids | {default_child_id("p" * 200, run_id, 10**9)}:
        assert validate_workflow_id(child_id) == child_id
        assert child_id.startswith(("axxx", "bxxx", "pppp"))


@workflow()
async def parent_of_default(tag: str) -> Any:
    return await execute_child(echo, tag)


@workflow()
async def parent_with_bad_child_id(catch: bool) -> Any:
    try:
        await start_child(echo, 1, workflow_id="bad id with spaces")
    except ValueError as err:
        if not catch:
            raise
        return f"refused: {err}"
    return "started"


async def test_a_long_parent_id_gets_a_valid_default_child_id(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[echo, parent_of_default]) as rt:
        parent_id = "p" * 190
        handle = await rt.client.start(parent_of_default, "ok", workflow_id=parent_id)
        assert "ok" == await handle.result(timeout=30)
        children = await rt.client.list_runs(workflow_name="echo")
        assert [parent_id] == [r.parent_workflow_id for r in children]
        assert len(children[0].workflow_id) <= 200


async def test_an_invalid_explicit_child_id_raises_value_error_in_the_workflow(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[echo, parent_with_bad_child_id]) as rt:
        caught = await rt.client.start(parent_with_bad_child_id, True, workflow_id="bad-child-1")
        assert (await caught.result(timeout=30)).startswith("refused: invalid workflow_id")
        uncaught = await rt.client.start(parent_with_bad_child_id, False, workflow_id="bad-child-2")
        with pytest.raises(WorkflowFailed, match="ValueError"):
            await uncaught.result(timeout=30)
        assert [] == await rt.client.list_runs(workflow_name="echo")


# -- a reused workflow id -------------------------------------------------------------------


async def test_a_new_chain_does_not_get_the_previous_chains_leftover_messages(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[approval]) as rt:
        old = await rt.client.start(approval, workflow_id="reused-id")
        await old.signal("approve", "old-1")
        assert "old-1" == await old.result(timeout=30)
        # addressed to the old chain, never consumed by it: a second approve that raced the
        # chain's end, and a late cancel
        await rt.backend.inbox.send("reused-id", "signal", {"name": "approve", "payload": "old-2"})
        await rt.backend.inbox.send("reused-id", "cancel", {"reason": "late"})

        new = await rt.client.start(approval, workflow_id="reused-id")
        assert new.first_run_id != old.first_run_id
        await new.signal("approve", "new-1")
        assert "new-1" == await new.result(timeout=30)
        types = [e.type.value for e in await new.events()]
        assert "cancellation.requested" not in types
        assert 1 == types.count("signal.received")


# -- run records rebuilt from the log -------------------------------------------------------


@workflow()
async def counts_down(n: int) -> str:
    if n > 0:
        continue_as_new(n - 1)
    return "liftoff"


@workflow()
async def fails(message: str) -> None:
    raise KeyError(message)


def _timeless(run: WorkflowRun) -> WorkflowRun:
    # the store's timestamps are taken when the records are written, a moment after the events
    return attrs.evolve(run, created_at=_EPOCH, completed_at=None)


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


async def test_a_deleted_run_record_is_rebuilt_from_the_log(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[echo, fails]) as rt:
        handle = await rt.client.start(echo, {"answer": 42}, workflow_id="lost-record")
        assert {"answer": 42} == await handle.result(timeout=30)
        original = await handle.describe()
        await rt.backend.runs.delete_run(handle.first_run_id)
        assert await rt.backend.runs.get_run(handle.first_run_id) is None

        fresh = rt.client.get_handle("lost-record")
        assert {"answer": 42} == await fresh.result(timeout=30)
        assert _timeless(original) == _timeless(await fresh.describe())
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        assert [_timeless(original)] == [_timeless(r) for r in chain]
        assert await rt.backend.runs.get_run(handle.first_run_id) is not None  # written back
        with pytest.raises(WorkflowNotRunning, match="completed"):
            await fresh.signal("anything")

        failed = await rt.client.start(fails, "boom", workflow_id="lost-failed")
        with pytest.raises(WorkflowFailed, match="boom"):
            await failed.result(timeout=30)
        original = await failed.describe()
        assert (RunStatus.FAILED, "KeyError: 'boom'") == (original.status, original.error)
        await rt.backend.runs.delete_run(failed.first_run_id)
        rebuilt = await rt.client.get_handle("lost-failed").describe()
        assert _timeless(original) == _timeless(rebuilt)


async def test_deleted_records_of_a_chain_are_rebuilt_from_the_log(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[counts_down], retention=Retention(keep_last=10)) as rt:
        handle = await rt.client.start(counts_down, 3, workflow_id="lost-chain")
        assert "liftoff" == await handle.result(timeout=30)
        original = await rt.client.get_workflow_chain(handle.first_run_id)
        assert 4 == len(original)
        for run in original:
            await rt.backend.runs.delete_run(run.run_id)

        current = await rt.client.get_handle("lost-chain").describe()
        assert _timeless(original[-1]) == _timeless(current)
        assert "liftoff" == await rt.client.get_handle("lost-chain").result(timeout=30)
        rebuilt = await rt.client.get_workflow_chain(current.run_id)
        assert [_timeless(r) for r in original] == [_timeless(r) for r in rebuilt]


async def test_a_chain_whose_head_is_lost_is_still_reached_by_its_run_ids(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[counts_down]) as rt:
        handle = await rt.client.start(counts_down, 1, workflow_id="lost-head")
        assert "liftoff" == await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        await rt.backend.runs.delete_head("lost-head")

        assert chain[-1] == await handle.describe()  # from its first run, through the links
        assert chain == await rt.client.get_workflow_chain(handle.first_run_id)
        with pytest.raises(WorkflowNotRunning, match="completed") as caught:
            await rt.client.signal(handle.first_run_id, "approve")
        assert chain[-1].run_id == caught.value.run_id
