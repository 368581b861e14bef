"""``patched()`` / ``deprecate_patch()``: a deployed change does not break runs in flight.

Each test "deploys" new code by closing the runtime and opening another, with other
workflow definitions under the same name, on the same store (memory and JetStream).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from riverrun import (
    EventType,
    RunStatus,
    Runtime,
    WorkflowFailed,
    WorkflowHandle,
    deprecate_patch,
    patched,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.persistence import RunKey, StoredEvent, open_memory_backend
from riverrun.runtime._patching import PatchState, replay_order
from riverrun.testing import wait_until

pytestmark = pytest.mark.anyio

RUNS: Counter[str] = Counter()
Deploy = Callable[[Iterable[Any]], contextlib.AbstractAsyncContextManager[Runtime]]


@step()
async def old_step(key: str) -> str:
    RUNS[f"{key}:old"] += 1
    return "old"


@step()
async def new_step(key: str) -> str:
    RUNS[f"{key}:new"] += 1
    return "new"


@step()
async def first_step(key: str) -> str:
    RUNS[f"{key}:first"] += 1
    return "first"


@workflow(name="pricing")
async def pricing_v1(key: str) -> list[Any]:
    first = await first_step(key)
    second = await old_step(key)
    return [first, second, await wait_for_signal("go")]


@workflow(name="pricing")
async def pricing_v2(key: str) -> list[Any]:
    first = await first_step(key)
    # asked twice: the first answer holds for the run
    second = await (new_step(key) if patched("new-price") else old_step(key))
    assert patched("new-price") == (second == "new")
    return [first, second, await wait_for_signal("go")]


@workflow(name="pricing")
async def pricing_v3(key: str) -> list[Any]:
    first = await first_step(key)
    deprecate_patch("new-price")
    second = await new_step(key)
    return [first, second, await wait_for_signal("go")]


@pytest.fixture(params=["memory", "jetstream"])
async def deploy(request: pytest.FixtureRequest) -> AsyncIterator[Deploy]:
    """``async with deploy([workflows]) as rt``: each deployment on the same store."""
    if request.param == "memory":
        async with open_memory_backend() as backend:

            def memory(workflows: Iterable[Any]) -> Runtime:
                return Runtime(
                    lambda codec: contextlib.nullcontext(backend),
                    workflows=workflows,
                    description="memory",
                )

            yield memory
        return
    server = request.getfixturevalue("nats_server")
    namespace = request.getfixturevalue("namespace")

    def jetstream(workflows: Iterable[Any]) -> Runtime:
        return Runtime.connect(server.url, workflows=workflows, namespace=namespace, worker=True)

    yield jetstream


async def _parked_at_signal(handle: WorkflowHandle[Any], steps: int) -> None:
    async def done() -> bool:
        events = await handle.events()
        return steps == sum(e.type == EventType.STEP_COMPLETED for e in events)

    await wait_until(done)


def _types(events: list[Any]) -> list[str]:
    return [e.type.value for e in events if e.type.value != "step.started"]


async def test_a_run_of_the_old_code_replays_onto_the_old_path(
    deploy: Deploy, namespace_key: str
) -> None:
    key = f"old-{namespace_key}"
    async with deploy([pricing_v1]) as rt:
        handle = await rt.client.start(pricing_v1, key, workflow_id="p-old")
        await _parked_at_signal(handle, 2)
    async with deploy([pricing_v2]) as rt:
        handle = rt.client.get_handle("p-old")
        await handle.signal("go", "sig")
        assert ["first", "old", "sig"] == await handle.result(timeout=30)
        assert "workflow.patched" not in _types(await handle.events())
    assert {f"{key}:first": 1, f"{key}:old": 1} == {k: v for k, v in RUNS.items() if key in k}


async def test_a_new_run_takes_the_new_path_and_replays_onto_it(
    deploy: Deploy, namespace_key: str
) -> None:
    key = f"new-{namespace_key}"
    async with deploy([pricing_v2]) as rt:
        handle = await rt.client.start(pricing_v2, key, workflow_id="p-new")
        await _parked_at_signal(handle, 2)
        events = await handle.events()
    # the marker comes right after the event that resumed the code, before the new step
    assert [
        "workflow.started",
        "step.completed",
        "workflow.patched",
        "step.completed",
    ] == _types(events)
    assert [{"patch_id": "new-price"}] == [
        dict(e.data) for e in events if e.type == EventType.WORKFLOW_PATCHED
    ]
    async with deploy([pricing_v2]) as rt:  # a restart: the run replays with its marker
        handle = rt.client.get_handle("p-new")
        await handle.signal("go", "sig")
        assert ["first", "new", "sig"] == await handle.result(timeout=30)
        assert 1 == _types(await handle.events()).count("workflow.patched")
    assert {f"{key}:first": 1, f"{key}:new": 1} == {k: v for k, v in RUNS.items() if key in k}


async def test_a_deprecated_patch_replays_runs_that_recorded_it(
    deploy: Deploy, namespace_key: str
) -> None:
    key = f"dep-{namespace_key}"
    async with deploy([pricing_v2]) as rt:
        handle = await rt.client.start(pricing_v2, key, workflow_id="p-dep")
        await _parked_at_signal(handle, 2)
    async with deploy([pricing_v3]) as rt:
        handle = rt.client.get_handle("p-dep")
        await handle.signal("go", "sig")
        assert ["first", "new", "sig"] == await handle.result(timeout=30)
        fresh = await rt.client.start(pricing_v3, key, workflow_id="p-dep-fresh")
        await fresh.signal("go", "x")
        assert ["first", "new", "x"] == await fresh.result(timeout=30)
        assert "workflow.patched" not in _types(await fresh.events())
    assert {f"{key}:first": 2, f"{key}:new": 2} == {k: v for k, v in RUNS.items() if key in k}


@workflow()
async def bad_patch_id(patch_id: Any, deprecate: bool) -> str:
    if deprecate:
        deprecate_patch(patch_id)
    else:
        patched(patch_id)
    return "unreachable"


@pytest.mark.parametrize("patch_id", ["", 3, None])
@pytest.mark.parametrize("deprecate", [False, True])
async def test_a_bad_patch_id_fails_the_run(patch_id: Any, deprecate: bool) -> None:
    async with Runtime.in_memory(workflows=[bad_patch_id]) as rt:
        handle = await rt.client.start(bad_patch_id, patch_id, deprecate)
        with pytest.raises(WorkflowFailed, match="non-empty string patch id"):
            await handle.result(timeout=30)
        assert RunStatus.FAILED == (await handle.describe()).status


def test_outside_a_workflow_they_raise_runtime_error() -> None:
    with pytest.raises(RuntimeError, match=r"patched\(\) can only be called inside"):
        patched("x")
    with pytest.raises(RuntimeError, match=r"deprecate_patch\(\) can only be called inside"):
        deprecate_patch("x")
    with pytest.raises(ValueError, match="non-empty string"):
        patched("")


async def _history(*types: str) -> AsyncIterator[StoredEvent]:
    key = RunKey(workflow_id="w", run_id="r")
    for seq, type_ in enumerate(types, 1):
        data = {"patch_id": "x"} if type_ == "workflow.patched" else {}
        yield StoredEvent(
            key=key, sequence=seq, type=type_, timestamp=datetime.now(UTC), data=data
        )


async def test_replay_decides_by_the_markers_that_follow_each_event() -> None:
    # a crash after the marker was written, before the step it led to: the history ends
    # with the marker, which the replayed decision consumes (it is not recorded twice)
    state = PatchState()
    seen = []
    async for event in replay_order(
        _history("workflow.started", "step.completed", "workflow.patched"), state
    ):
        if event.type == "workflow.started":
            seen.append(("z", state.decide("z")))  # more history follows, no marker: old path
        elif event.type == "step.completed":
            seen.append(("x", state.decide("x")))  # its marker follows
            seen.append(("y", state.decide("y")))  # past the end of history: live
        else:
            state.applied(event.data, event.sequence)
    assert [("z", False), ("x", True), ("y", True)] == seen
    assert ["y"] == state.take_unrecorded()
    # a crash before the marker was written: the decision is taken again, live
    state = PatchState()
    async for event in replay_order(_history("workflow.started", "step.completed"), state):
        if event.type == "step.completed":
            assert state.decide("x")
    assert ["x"] == state.take_unrecorded()
