"""A workflow that ends is freed by reference counting, not left to the cycle collector.

A worker holding hundreds of workflows in flight has a large heap; what its ended runs leave in
reference cycles waits for a full collection, which walks that whole heap. These tests run
workflows with the collector off and look for their machines and actor cells afterwards.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from datetime import timedelta

import pytest

from riverrun import WorkflowFailed, continue_as_new, sleep, step, workflow
from riverrun.actors._cell import Cell
from riverrun.runtime._machine import WorkflowMachine
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@step()
async def double(x: int) -> int:
    return 2 * x


@workflow()
async def steps_and_gather(n: int) -> int:
    first = await double(n)
    pair = await asyncio.gather(double(first), double(first + 1))
    return sum(pair)


@workflow()
async def sleeps_then_doubles(n: int) -> int:
    await sleep(timedelta(milliseconds=10))
    return await double(n)


@workflow()
async def fails(n: int) -> int:
    await double(n)
    raise ValueError(f"bad {n}")


@workflow()
async def continues_once(n: int, done: bool = False) -> int:
    if not done:
        continue_as_new(n + 1, True)
    return await double(n)


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _left(prefix: str) -> list[object]:
    """Machines and cells of this test's workflows still tracked by the collector (alive, or
    garbage in a cycle that only a collection would free)."""
    found: list[object] = []
    for obj in gc.get_objects():
        if (isinstance(obj, WorkflowMachine) and obj.workflow_id.startswith(prefix)) or (isinstance(obj, Cell) and obj.name.startswith(prefix)):
            found.append(obj)
    return found


async def test_ended_workflows_leave_nothing_for_the_cycle_collector(
    make_runtime: RuntimeFactory, collector_off: None
) -> None:
    async with make_runtime(
        workflows=[steps_and_gather, sleeps_then_doubles, fails, continues_once]
    ) as rt:
        worker = rt.worker
        assert worker is not None
        handles = []
        for i in range(5):
            handles.append(await rt.client.start(steps_and_gather, i, workflow_id=f"freed-g{i}"))
            handles.append(await rt.client.start(sleeps_then_doubles, i, workflow_id=f"freed-s{i}"))
            handles.append(await rt.client.start(continues_once, i, workflow_id=f"freed-c{i}"))
            handles.append(await rt.client.start(fails, i, workflow_id=f"freed-f{i}"))
        results = []
        for handle in handles:
            try:
                results.append(await handle.result(timeout=30))
            except WorkflowFailed:
                results.append("failed")
        assert results.count("failed") == 5
        assert results[:3] == [2, 0, 2]  # 2*(0+1)... gather of 0 and 2, a sleep, one continue

        async def all_stopped() -> bool:
            return worker.statistics().active == 0

        await wait_until(all_stopped)
        del handles
        left = _left("freed-")
        assert left == [], f"{len(left)} machines or cells not freed: {left[:5]}"
    # the check itself can fail: a cycle made on purpose is found
    machine_cycle: list[object] = []
    machine_cycle.append(machine_cycle)
    assert any(obj is machine_cycle for obj in gc.get_objects())
