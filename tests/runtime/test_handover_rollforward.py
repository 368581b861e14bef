"""The hand-over is one fenced append (the link); the successor's first event is rolled
forward from it, by the worker that continues or by whoever finds the link alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from riverrun import (
    EventType,
    RunStatus,
    Runtime,
    continue_as_new,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.persistence import NewEvent, RunKey, StoredEvent
from riverrun.runtime._handover import roll_forward, successor_first_event
from riverrun.runtime._instance import next_run_id

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@step()
async def add(x: int, y: int) -> int:
    return x + y


@workflow()
async def counts_down(n: int, total: int = 0) -> int:
    total = await add(total, n)
    if n > 0:
        continue_as_new(n - 1, total=total)
    return total


@workflow()
async def hop(n: int) -> int:
    if n == 0:
        await wait_for_signal("go")
        continue_as_new(n + 1)
    return n


def _link(old: RunKey, timestamp: Any, **changes: Any) -> NewEvent:
    data = {
        "new_run_id": next_run_id(old.run_id),
        "args": [7],
        "kwargs": {},
        "reason": None,
        "version": None,
        "workflow_name": "hop",
        "execution": 2,
        "parent": None,
        "inbox_cursor": 0,
        "pending_signals": [],
        **changes,
    }
    return NewEvent(type=EventType.WORKFLOW_CONTINUED_AS_NEW.value, timestamp=timestamp, data=data)


async def test_a_hand_over_is_one_append_and_no_batch(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[counts_down]) as rt:
        events = rt.backend.events
        batches: list[Sequence[Any]] = []
        appended: list[str] = []
        append, append_atomic = events.append, events.append_atomic

        async def counting_batch(appends: Sequence[Any]) -> list[int]:
            batches.append(appends)
            return await append_atomic(appends)

        async def counting(key: RunKey, event: NewEvent, **kwargs: Any) -> int:
            appended.append(event.type)
            return await append(key, event, **kwargs)

        events.append_atomic = counting_batch  # type: ignore[method-assign]
        events.append = counting  # type: ignore[method-assign]
        handle = await rt.client.start(counts_down, 3, workflow_id="one-append")
        assert 6 == await handle.result(timeout=20)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)

    assert [] == batches
    assert [RunStatus.CONTINUED_AS_NEW] * 3 + [RunStatus.COMPLETED] == [r.status for r in chain]
    # per hand-over: the link, then the successor's first event, each one append
    links = [i for i, t in enumerate(appended) if t == EventType.WORKFLOW_CONTINUED_AS_NEW]
    assert 3 == len(links)
    assert all(appended[i + 1] == EventType.WORKFLOW_STARTED for i in links)


async def test_racing_roll_forwards_write_one_successor(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[]) as rt:
        handle = await rt.client.start("hop", 0, workflow_id="racing")
        old = RunKey(workflow_id="racing", run_id=handle.first_run_id)
        log = rt.backend.events
        first = (await log.read(old))[0]
        await log.append(old, _link(old, first.timestamp), expected_last=1, idempotency_id="x")
        link = (await log.read(old))[-1]
        new = RunKey(workflow_id="racing", run_id=next_run_id(old.run_id))
        results: list[bool] = []

        async def one() -> None:
            results.append(await roll_forward(log, link))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
        written = await log.read(new)
        # a different writer's first event there already: a conflict, reported as False
        other = RunKey(workflow_id="racing", run_id="elsewhere")
        await log.append(
            other, successor_first_event(link), expected_last=0, idempotency_id="other:1"
        )
        elsewhere = StoredEvent(
            key=link.key,
            sequence=link.sequence,
            type=link.type,
            timestamp=link.timestamp,
            data={**link.data, "new_run_id": "elsewhere"},
        )
        lost = await roll_forward(log, elsewhere)

    assert [EventType.WORKFLOW_STARTED] == [e.type for e in written]
    assert old.run_id == written[0].data["continued_from_run_id"]
    assert [7] == written[0].data["args"]
    assert all(results)  # the same event each time: the retries are its duplicates
    assert lost is False


async def test_terminate_rolls_a_lone_link_forward_and_ends_the_successor(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[]) as rt:
        handle = await rt.client.start("hop", 0, workflow_id="lone-link")
        old = RunKey(workflow_id="lone-link", run_id=handle.first_run_id)
        log = rt.backend.events
        now = (await log.read(old))[0].timestamp
        await log.append(old, _link(old, now), expected_last=1, idempotency_id=f"{old.run_id}:2")

        final = await rt.client.terminate("lone-link")
        new = RunKey(workflow_id="lone-link", run_id=next_run_id(old.run_id))
        events = await log.read(new)

    assert new.run_id == final.run_id
    assert RunStatus.CANCELLED == final.status
    assert [EventType.WORKFLOW_STARTED, EventType.WORKFLOW_CANCELLED] == [e.type for e in events]


async def test_a_worker_recovers_a_link_left_without_its_successor(
    nats_server: Any, namespace: str
) -> None:
    # a worker wrote the link (the hand-over committed) and died before the new run's first
    # event: the next worker rolls the successor forward from the link and runs it
    async with Runtime.connect(nats_server.url, namespace=namespace, worker=False) as client:
        handle = await client.client.start(hop, 0, workflow_id="recovered")
        old = RunKey(workflow_id="recovered", run_id=handle.first_run_id)
        log = client.backend.events
        now = (await log.read(old))[0].timestamp
        await log.append(old, _link(old, now), expected_last=1, idempotency_id=f"{old.run_id}:2")
        new = RunKey(workflow_id="recovered", run_id=next_run_id(old.run_id))
        assert 0 == await log.last_sequence(new)

        async with Runtime.connect(
            nats_server.url, namespace=namespace, workflows=[hop], worker=True
        ):
            assert 7 == await handle.result(timeout=20)
        chain = await client.client.get_workflow_chain(handle.first_run_id)
        events = await log.read(new)

    assert [old.run_id, new.run_id] == [r.run_id for r in chain]
    assert [RunStatus.CONTINUED_AS_NEW, RunStatus.COMPLETED] == [r.status for r in chain]
    assert [EventType.WORKFLOW_STARTED, EventType.WORKFLOW_COMPLETED] == [e.type for e in events]
