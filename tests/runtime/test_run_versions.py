"""The version a run executes is recorded: at start when the starter knows it, else by the
worker that first hosts the run, which pins it for every later replay."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest

from riverrun import EventType, Runtime, continue_as_new, wait_for_signal, workflow
from riverrun.persistence import open_memory_backend
from riverrun.testing import wait_until

pytestmark = pytest.mark.anyio

Deploy = Callable[..., contextlib.AbstractAsyncContextManager[Runtime]]


@workflow(name="versioned", version="1")
async def versioned_v1(n: int) -> str:
    if n > 0:
        continue_as_new(n - 1)
    return f"v1:{await wait_for_signal('go')}"


@workflow(name="versioned", version="2")
async def versioned_v2(n: int) -> str:
    return f"v2:{await wait_for_signal('go')}"


@pytest.fixture(params=["memory", "jetstream"])
async def deploy(request: pytest.FixtureRequest) -> AsyncIterator[Deploy]:
    """``async with deploy([workflows], worker=...) as rt``: runtimes on one store."""
    if request.param == "memory":
        async with open_memory_backend() as backend:

            def memory(workflows: Iterable[Any], *, worker: bool = True) -> Runtime:
                return Runtime(
                    lambda codec: contextlib.nullcontext(backend),
                    workflows=workflows,
                    worker=worker,
                    description="memory",
                )

            yield memory
        return
    server = request.getfixturevalue("nats_server")
    namespace = request.getfixturevalue("namespace")

    def jetstream(workflows: Iterable[Any], *, worker: bool = True) -> Runtime:
        return Runtime.connect(server.url, workflows=workflows, namespace=namespace, worker=worker)

    yield jetstream


async def test_a_start_by_name_records_the_version_its_worker_registers(deploy: Deploy) -> None:
    async with deploy([], worker=False) as starter:
        handle = await starter.client.start("versioned", 0, workflow_id="by-name")
        events = await handle.events()
        assert None is events[0].data["version"]  # the starter does not know the workflow
        async with deploy([versioned_v1, versioned_v2]):

            async def hosted() -> bool:
                return (await handle.describe()).version is not None

            await wait_until(hosted)
            assert "2" == (await handle.describe()).version
            await handle.signal("go", "x")
            assert "v2:x" == await handle.result(timeout=30)
        assert "2" == (await starter.client.get_run(handle.first_run_id)).version


async def test_the_first_hosting_pins_the_version_for_later_replays(deploy: Deploy) -> None:
    async with deploy([], worker=False) as starter:
        handle = await starter.client.start("versioned", 0, workflow_id="pinned")
        async with deploy([versioned_v1]):

            async def hosted() -> bool:
                return (await handle.describe()).version is not None

            await wait_until(hosted)
        # a deploy that adds version 2: the run replays on version 1, where it started
        async with deploy([versioned_v1, versioned_v2]):
            await handle.signal("go", "x")
            assert "v1:x" == await handle.result(timeout=30)
        assert "1" == (await handle.describe()).version


async def test_a_start_with_the_function_records_its_version(deploy: Deploy) -> None:
    async with deploy([versioned_v1, versioned_v2]) as rt:
        handle = await rt.client.start(versioned_v1, 1, workflow_id="by-function")
        assert "1" == (await rt.client.get_run(handle.first_run_id)).version
        started = (await handle.events(handle.first_run_id))[0]
        assert EventType.WORKFLOW_STARTED == started.type and "1" == started.data["version"]
        await handle.signal("go", "y")
        assert "v1:y" == await handle.result(timeout=30)
        # the run it continued into keeps the version
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        assert ["1", "1"] == [run.version for run in chain]


def test_runs_show_prints_the_version() -> None:
    from datetime import UTC, datetime

    from rich.console import Console

    from riverrun.cli._format import print_run, run_to_json
    from riverrun.persistence import RunStatus, WorkflowRun

    run = WorkflowRun(
        run_id="r",
        workflow_id="w",
        workflow_name="versioned",
        status=RunStatus.RUNNING,
        execution=1,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        version="2",
    )
    console = Console(record=True, width=120)
    print_run(console, run)
    assert any(
        line.split() == ["Version:", "2"] for line in console.export_text().splitlines()
    )
    assert "2" == run_to_json(run)["version"]
