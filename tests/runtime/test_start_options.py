"""Start options: ``queue=`` per start (and per child), kept across continue-as-new, and the
start's own keywords (``workflow_id``, ``queue``, ``parent_close_policy``) never taken for a
workflow's arguments."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from riverrun import (
    Runtime,
    continue_as_new,
    continue_as_new_versioned,
    execute_child,
    start_child,
    workflow,
)

pytestmark = pytest.mark.anyio

SharedRuntime = Callable[..., AbstractAsyncContextManager[Runtime]]


@workflow()
async def countdown(n: int) -> str:
    if n > 0:
        continue_as_new(n - 1)
    return "done"


@workflow(queue="c")
async def on_c(n: int) -> str:
    return f"c{n}"


@workflow()
async def parent(n: int) -> list[str]:
    # the child's own queue (c: its decorator's), never the parent's (b), which does not
    # register it; then a child of the default-queue type on a queue named here
    first = await execute_child(on_c, n, workflow_id=f"child-c-{n}")
    second = await execute_child(countdown, 1, queue="c", workflow_id=f"child-cd-{n}")
    return [first, second]


@workflow()
async def bad_child_queue() -> str:
    try:
        await start_child(countdown, 0, queue="no.dots")
    except ValueError as exc:
        return str(exc)
    return "started"


@workflow()
async def echo(queue: str, /, **rest: Any) -> list[Any]:
    return [queue, sorted(rest)]


@workflow()
async def tagged(n: int, version: str = "") -> str:
    if n > 0:
        continue_as_new_versioned("1", n - 1, version=f"tag-{n}")
    return version


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_start_on_a_queue_runs_on_that_queues_worker_through_continue_as_new(
    shared_runtime: SharedRuntime,
) -> None:
    async with (
        shared_runtime(workflows=[countdown]) as default,
        shared_runtime(workflows=[countdown], queues=["b"]) as b,
    ):
        assert default.worker is not None and b.worker is not None
        assert ["default"] == default.worker.queues and ["b"] == b.worker.queues
        # started by the default queue's runtime, of a type it registers on `default`
        on_b = await default.client.start(countdown, 2, workflow_id="on-b", queue="b")
        assert "done" == await on_b.result(timeout=20)
        chain = await default.client.get_workflow_chain(on_b.first_run_id)
        assert 3 == len(chain)
        assert ["b", "b", "b"] == [run.queue for run in chain]  # sticky across continue-as-new
        assert "b" == (await on_b.describe()).queue
        assert 0 == default.worker.statistics().started
        assert 1 == b.worker.statistics().started
        # without queue=, the decorator's queue
        plain = await b.client.start(countdown, 0, workflow_id="on-default")
        assert "done" == await plain.result(timeout=20)
        assert "default" == (await plain.describe()).queue
        assert 1 == default.worker.statistics().started == b.worker.statistics().started


async def test_a_child_is_served_on_its_own_queue_or_the_one_start_child_names(
    shared_runtime: SharedRuntime,
) -> None:
    async with (
        shared_runtime(workflows=[countdown]) as default,
        shared_runtime(workflows=[parent], queues=["b"]) as b,
        shared_runtime(workflows=[on_c, countdown], queues=["c"]) as c,
    ):
        assert default.worker is not None and b.worker is not None and c.worker is not None
        handle = await default.client.start(parent, 1, workflow_id="parent-1", queue="b")
        assert ["c1", "done"] == await handle.result(timeout=20)
        children = [await default.client.get_handle(i).describe() for i in ("child-c-1", "child-cd-1")]
        assert ["c", "c"] == [run.queue for run in children]
        assert 0 == default.worker.statistics().started
        assert 1 == b.worker.statistics().started
        assert 2 == c.worker.statistics().started


async def test_an_invalid_queue_is_refused_at_the_call() -> None:
    async with Runtime.in_memory(workflows=[countdown, bad_child_queue]) as rt:
        for queue in ("", "a.b", "x" * 65, "sp ace"):
            with pytest.raises(ValueError, match="queue must be 1-64 characters"):
                await rt.client.start(countdown, 0, queue=queue)
            with pytest.raises(ValueError, match="queue must be 1-64 characters"):
                await rt.client.start("countdown", 0, queue=queue)
        assert [] == await rt.client.list_runs()
        handle = await rt.client.start(bad_child_queue)
        assert "queue must be 1-64 characters" in await handle.result(timeout=10)


async def test_a_positional_only_parameter_named_like_an_option_is_the_workflows() -> None:
    async with Runtime.in_memory(workflows=[echo], queues=["default", "b"]) as rt:
        handle = await rt.client.start(echo, "mine", queue="b", other=1)
        assert ["mine", ["other"]] == await handle.result(timeout=10)
        assert "b" == (await handle.describe()).queue


@pytest.mark.parametrize("reserved", ["workflow_id", "queue", "parent_close_policy"])
def test_a_workflow_parameter_named_like_a_start_option_is_refused(reserved: str) -> None:
    namespace: dict[str, Any] = {}
    for signature in (f"{reserved}", f"n, {reserved}=None", f"*, {reserved}"):
        exec(f"async def wf({signature}):\n    return 1\n", namespace)
        with pytest.raises(TypeError, match=rf"parameter named '{reserved}'.*positional-only"):
            workflow()(namespace["wf"])
    # positional-only, or only through **kwargs/*args: no collision
    for signature in (f"{reserved}, /", "*args, **kwargs"):
        exec(f"async def wf({signature}):\n    return 1\n", namespace)
        workflow()(namespace["wf"])


def test_the_refusal_says_what_to_do() -> None:
    async def ship(order: str, queue: str) -> None: ...

    with pytest.raises(TypeError) as caught:
        workflow()(ship)
    assert str(caught.value) == (
        "@workflow test_the_refusal_says_what_to_do.<locals>.ship() has a parameter named "
        "'queue', a keyword that start() and start_child() take for themselves (reserved: "
        "workflow_id, queue, parent_close_policy): rename it, or make it positional-only (put "
        "'/' after it) and pass it positionally"
    )


async def test_a_keyword_named_version_goes_to_the_next_run_of_a_versioned_continuation() -> None:
    async with Runtime.in_memory(workflows=[tagged]) as rt:
        handle = await rt.client.start(tagged, 1)
        assert "tag-1" == await handle.result(timeout=10)
