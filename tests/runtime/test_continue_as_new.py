"""Continue-as-new, end to end, on the memory backend and on real JetStream."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from riverrun import (
    CancellationError,
    ContinueAsNew,
    EventType,
    RunStatus,
    continue_as_new,
    get_workflow_chain,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.runtime._payloads import PayloadRef
from riverrun.testing import wait_until

from . import workflows as wf
from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


async def test_batch_processor_chain_links_statuses_and_result(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[wf.batch_processor]) as rt:
        handle = await rt.client.start(wf.batch_processor, 0, 100, workflow_id="batch-1")
        assert await handle.result(timeout=30) == "Processed 1000 total items"
        chain = await rt.client.get_workflow_chain(handle.first_run_id)

    assert len(chain) == 11
    assert list(range(1, 12)) == [run.execution for run in chain]
    assert [r.status for r in chain] == [RunStatus.CONTINUED_AS_NEW] * 10 + [RunStatus.COMPLETED]
    assert handle.first_run_id == chain[0].run_id
    assert chain[0].continued_from_run_id is None
    assert chain[-1].continued_to_run_id is None
    for earlier, later in itertools.pairwise(chain):
        assert later.run_id == earlier.continued_to_run_id
        assert earlier.run_id == later.continued_from_run_id
    assert len({run.run_id for run in chain}) == 11
    assert {"batch-1"} == {run.workflow_id for run in chain}
    assert chain[-1].result == "Processed 1000 total items"
    assert all(run.completed_at is not None for run in chain)


async def test_chain_from_any_run_id_and_unknown(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[wf.batch_processor]) as rt:
        handle = await rt.client.start(wf.batch_processor, 0, 100, total=300)
        await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        ids = [r.run_id for r in chain]
        for run_id in ids:
            assert ids == [r.run_id for r in await rt.client.get_workflow_chain(run_id)]
            assert ids == [r.run_id for r in await get_workflow_chain(run_id)]
        assert await rt.client.get_workflow_chain("no-such-run") == []


async def test_continued_as_new_event_and_truncation(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[wf.batch_processor]) as rt:
        handle = await rt.client.start(wf.batch_processor, 0, 100, total=300)
        await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        first_events = await rt.client.events(chain[0].run_id)
        last_events = await rt.client.events(chain[-1].run_id)

    # the old run keeps only its terminal event: the chain link
    assert [e.type for e in first_events] == [EventType.WORKFLOW_CONTINUED_AS_NEW]
    link = first_events[0]
    assert {"new_run_id", "args", "kwargs", "reason"} <= set(link.data)
    assert chain[1].run_id == link.data["new_run_id"]
    assert list(link.data["args"]) == []
    assert dict(link.data["kwargs"]) == {"offset": 100, "batch_size": 100, "total": 300}
    assert link.data["reason"] is None
    # the current run has its full, fresh history whose first event carries the input
    assert [e.type for e in last_events] == [
        EventType.WORKFLOW_STARTED,
        EventType.STEP_COMPLETED,
        EventType.WORKFLOW_COMPLETED,
    ]
    assert last_events[0].sequence == 1
    assert dict(last_events[0].data["kwargs"]) == {"offset": 300, "batch_size": 100, "total": 300}


async def test_positional_keyword_and_nested_arguments_carry(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[wf.carries_args]) as rt:
        handle = await rt.client.start(
            wf.carries_args, 0, label="x", nested={"a": [1, (2, 3)], "b": {"c": None}}
        )
        result = await handle.result(timeout=30)
    assert result == {
        "n": 3,
        "label": "x+++",
        "nested": {"a": [1, (2, 3)], "b": {"c": None}, "seen": [0, 1, 2]},
    }


async def test_except_exception_cannot_swallow_the_continuation(
    make_runtime: RuntimeFactory,
) -> None:
    assert issubclass(ContinueAsNew, BaseException)
    assert not issubclass(ContinueAsNew, Exception)
    async with make_runtime(workflows=[wf.swallower]) as rt:
        handle = await rt.client.start(wf.swallower, 0)
        assert await handle.result(timeout=30) == 2
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
    assert len(chain) == 3


def test_continue_as_new_argument_errors() -> None:
    with pytest.raises(ValueError, match="needs the arguments"):
        continue_as_new()
    with pytest.raises(RuntimeError, match="inside a running workflow"):
        continue_as_new(1)
    with pytest.raises(TypeError, match="cannot be raised directly"):
        ContinueAsNew((1,), {}, None, None)


@workflow()
async def no_args_inside() -> str:
    try:
        continue_as_new()
    except ValueError as err:
        return f"ValueError: {err}"
    return "unreachable"


@workflow()
async def continue_after_cancel(n: int) -> str:
    try:
        await wait_for_signal("never")
    except CancellationError:
        try:
            continue_as_new(n + 1)
        except CancellationError:
            raise
    return "unreachable"


async def test_continue_as_new_inside_workflow_errors(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[no_args_inside, continue_after_cancel]) as rt:
        result = await (await rt.client.start(no_args_inside)).result(timeout=30)
        assert result.startswith("ValueError: continue_as_new() needs")

        handle = await rt.client.start(continue_after_cancel, 0)
        assert await handle.cancel()
        with pytest.raises(CancellationError):
            await handle.result(timeout=30)
        run = await handle.describe()
        assert run.status == RunStatus.CANCELLED
        assert len(await rt.client.get_workflow_chain(handle.first_run_id)) == 1


async def test_twenty_signals_across_continuations_arrive_once_in_order(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[wf.signal_collector]) as rt:
        handle = await rt.client.start(wf.signal_collector, 20, [])
        for i in range(20):
            await handle.signal("item", i)
            if i % 4 == 0:
                await anyio.lowlevel.checkpoint()  # let some continuations interleave with sends
        assert list(range(20)) == await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
    assert len(chain) >= 2
    assert chain[-1].status == RunStatus.COMPLETED


async def test_three_megabyte_argument_is_claim_checked(make_runtime: RuntimeFactory) -> None:
    blob = bytes(range(256)) * (3 * 1024 * 1024 // 256)
    async with make_runtime(workflows=[wf.big_carrier]) as rt:
        handle = await rt.client.start(wf.big_carrier, blob, 2)
        assert len(blob) == await handle.result(timeout=60)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        started = (await rt.client.events(chain[-1].run_id))[0]
        link = (await rt.client.events(chain[0].run_id))[0]
    assert len(chain) == 3
    assert isinstance(started.data["args"], PayloadRef)
    assert isinstance(link.data["args"], PayloadRef)
    assert started.data["args"].size > 3 * 1024 * 1024


async def test_info_inside_workflow(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[wf.info_reporter]) as rt:
        handle = await rt.client.start(wf.info_reporter, 0, workflow_id="info-1")
        result = await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
    assert result["workflow_id"] == "info-1"
    assert chain[-1].run_id == result["run_id"]
    assert result["execution"] == 2
    assert chain[0].run_id == result["continued_from_run_id"]
    assert result["history_length"] == 2  # workflow.started + step.completed
    assert result["suggested"] is False


async def test_continue_as_new_versioned(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[wf.versioned_v1, wf.versioned_v2]) as rt:
        handle = await rt.client.start(wf.versioned_v1, 1)
        assert await handle.result(timeout=30) == "v2 got 2"
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        link = (await rt.client.events(chain[0].run_id))[0]
    assert link.data["version"] == "2"


async def test_cancel_with_an_old_run_id_reaches_the_current_run(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[wf.signal_collector]) as rt:
        handle = await rt.client.start(wf.signal_collector, 100, [])
        for i in range(7):
            await handle.signal("item", i)
        async def three_runs() -> bool:
            return len(await rt.client.get_workflow_chain(handle.first_run_id)) >= 3

        await wait_until(three_runs)
        assert await rt.client.cancel(handle.first_run_id)
        with pytest.raises(CancellationError):
            await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
    assert chain[-1].status == RunStatus.CANCELLED
    assert [RunStatus.CONTINUED_AS_NEW] * (len(chain) - 1) == [r.status for r in chain[:-1]]


async def test_history_limit_suggests_and_auto_continues(make_runtime: RuntimeFactory) -> None:
    from riverrun import HistoryLimits, info, step

    @step()
    async def tick(i: int) -> int:
        return i

    @workflow()
    async def suggester(state: dict[str, Any]) -> dict[str, Any]:
        for i in range(10):
            await tick(i)
            if info().continue_as_new_suggested:
                return {"at": i, "reason": info().continue_as_new_reason}
        return {"at": None}

    @workflow(auto_continue_as_new=True)
    async def auto(state: dict[str, Any]) -> int:
        while state["done"] < 12:
            await tick(state["done"])
            state["done"] += 1
        return state["done"]

    limits = HistoryLimits(max_events=5, max_bytes=10 * 1024 * 1024)
    async with make_runtime(workflows=[suggester, auto], history_limits=limits) as rt:
        result = await (await rt.client.start(suggester, {})).result(timeout=30)
        handle = await rt.client.start(auto, {"done": 0})
        assert await handle.result(timeout=30) == 12
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        link = (await rt.client.events(chain[0].run_id))[0]
    assert result["at"] == 3  # started + 4 steps = 5 events
    assert result["reason"] == "history has 5 events (limit 5)"
    assert len(chain) >= 3
    assert link.data["reason"].startswith("automatic: history has")
    assert [dict(a) for a in link.data["args"]] == [{"done": 4}]


@workflow()
async def to_unknown_version(n: int) -> str:
    from riverrun import WorkflowNotRegistered, continue_as_new_versioned

    try:
        continue_as_new_versioned("9", n)
    except WorkflowNotRegistered as err:
        return f"refused: {err}"
    return "unreachable"


async def test_unknown_version_is_refused_in_workflow_code(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[to_unknown_version]) as rt:
        result = await (await rt.client.start(to_unknown_version, 1)).result(timeout=30)
    assert result.startswith("refused: workflow 'to_unknown_version' has no version '9'")


@workflow()
async def signal_beats_timeout() -> str:
    return str(await wait_for_signal("go", timeout=0.3))


async def test_a_signal_that_wins_retires_its_timeout(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[signal_beats_timeout]) as rt:
        handle = await rt.client.start(signal_beats_timeout)
        await handle.signal("go", "yes")
        assert "yes" == await handle.result(timeout=30)
        await anyio.sleep(0.6)  # past the timeout: its firing must not be recorded
        types = [e.type for e in await handle.events()]
    assert EventType.TIMER_FIRED not in types


RACE_RELEASE: dict[str, anyio.Event] = {}
RACE_STARTED: dict[str, anyio.Event] = {}


@step()
async def race_gate(key: str) -> int:
    RACE_STARTED[key].set()
    await RACE_RELEASE[key].wait()
    return 1


@workflow()
async def race_consumer(key: str, run: int = 0) -> Any:
    if run == 0:
        await race_gate(key)  # its result decides the continuation
        continue_as_new(key, run=1)
    return await wait_for_signal("message")


async def test_a_signal_read_as_a_step_result_ends_the_run_goes_to_the_next_run(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch, namespace_key: str
) -> None:
    """The worker reads a signal from the inbox while a step's result is being written; that
    result decides a continue-as-new. The signal was read by the ended run but never applied
    to it: it must reach the next run, not be recorded into the ended one and lost."""
    RACE_RELEASE[namespace_key] = release = anyio.Event()
    RACE_STARTED[namespace_key] = started = anyio.Event()
    async with make_runtime(workflows=[race_consumer]) as rt:
        inbox, events = rt.backend.inbox, rt.backend.events
        read, append = inbox.read, events.append

        async def slow_read(workflow_id: str, **kwargs: Any) -> Any:
            messages = await read(workflow_id, **kwargs)
            if messages and not release.is_set():
                release.set()  # the step ends now, while this read is in hand
                await anyio.sleep(0.1)  # its task is writing the result (slowly) by now
            return messages

        async def slow_append(key: Any, event: Any, **kwargs: Any) -> Any:
            if event.type == EventType.STEP_COMPLETED.value:
                await anyio.sleep(0.3)  # the drive loop reaches the record lock meanwhile
            return await append(key, event, **kwargs)

        monkeypatch.setattr(inbox, "read", slow_read)
        monkeypatch.setattr(events, "append", slow_append)
        handle = await rt.client.start(race_consumer, namespace_key)
        with anyio.fail_after(10):
            await started.wait()
        await handle.signal("message", "hello")
        assert "hello" == await handle.result(timeout=20)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        first_run = await rt.client.events(chain[0].run_id)

    assert [RunStatus.CONTINUED_AS_NEW, RunStatus.COMPLETED] == [r.status for r in chain]
    # the ended run recorded no signal after its step's result
    assert EventType.SIGNAL_RECEIVED.value not in [e.type for e in first_run]
