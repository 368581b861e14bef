"""Faults injected at one exact point of the continue-as-new hand-over.

The hand-over is one fenced append, the old run's terminal event (the link, the commit
point), then the new run's first event rolled forward from the link, then a projection into
the run store: new run record, old run record, chain head, truncation, inbox purge
(``WorkflowInstance._complete_hand_over``). A crash at any point leaves either the old run
still running (it redoes the hand-over) or a committed link that recovery completes, never
two successors. Here the store fails once at a chosen point, after another part of the
hand-over got through; the worker's supervisor restarts the instance from its history, as it
does after any store fault.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import pytest

from riverrun import (
    EventType,
    RunStatus,
    Runtime,
    continue_as_new,
    step,
    workflow,
)
from riverrun.persistence import ChainHead, NewEvent, RunKey, StoreUnavailable
from riverrun.runtime._instance import next_run_id
from riverrun.testing import wait_until

pytestmark = pytest.mark.anyio

RuntimeFactory = Callable[..., AbstractAsyncContextManager[Runtime]]


@step()
async def count(run: int, i: int) -> int:
    return run * 100 + i


@workflow()
async def short_chain(runs: int, run: int = 0, total: int = 0) -> int:
    for i in range(3):
        total += await count(run, i)
    if run + 1 < runs:
        continue_as_new(runs, run + 1, total)
    return total


@pytest.fixture(params=["memory", "jetstream"])
def runtime_factory(request: pytest.FixtureRequest) -> RuntimeFactory:
    if request.param == "memory":

        @asynccontextmanager
        async def memory(**opts: Any) -> AsyncIterator[Runtime]:
            async with Runtime.in_memory(workflows=[short_chain], **opts) as rt:
                yield rt

        return memory
    server = request.getfixturevalue("nats_server")
    namespace = request.getfixturevalue("namespace")

    @asynccontextmanager
    async def jetstream(**opts: Any) -> AsyncIterator[Runtime]:
        async with Runtime.connect(
            server.url, workflows=[short_chain], namespace=namespace, worker=True, **opts
        ) as rt:
            yield rt

    return jetstream


def fail_once(
    store: Any, method: str, *, when: Callable[..., bool], after: Callable[[], Awaitable[bool]]
) -> list[Any]:
    """The first time ``store.method(*args)`` is called with ``when(*args)`` true: wait until
    ``after()`` holds (another part of the projection got through; a runtime that orders
    the projection so that it cannot is given 2 s), then fail with ``StoreUnavailable``, as
    a NATS outage or the death of the worker would. Returns the arguments of the failed
    call."""
    original = getattr(store, method)
    failed: list[Any] = []

    async def failing(*args: Any, **kwargs: Any) -> Any:
        if not failed and when(*args):
            failed.append(args[0])
            with contextlib.suppress(TimeoutError):
                await wait_until(after, timeout=2, interval=0.001)
            raise StoreUnavailable("injected: the store went away during the hand-over")
        return await original(*args, **kwargs)

    setattr(store, method, failing)
    return failed


def head_moved(rt: Runtime, workflow_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        head = await rt.backend.runs.get_head(workflow_id)
        return head is not None and head.value.current_run_id != head.value.first_run_id

    return check


def first_run_truncated(rt: Runtime, workflow_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        head = await rt.backend.runs.get_head(workflow_id)
        assert head is not None
        key = RunKey(workflow_id=workflow_id, run_id=head.value.first_run_id)
        return 1 == len(await rt.backend.events.read(key))

    return check


def moves_to_a_later_run(head: ChainHead) -> bool:
    return head.current_run_id != head.first_run_id


def any_run(key: RunKey) -> bool:
    return True


async def test_a_fault_before_the_head_moves_does_not_strand_the_chain(
    runtime_factory: RuntimeFactory,
) -> None:
    async with runtime_factory(restart_backoff=0.01) as rt:
        workflow_id = "fault-before-head"
        failed = fail_once(
            rt.backend.runs,
            "put_head",
            when=moves_to_a_later_run,
            after=first_run_truncated(rt, workflow_id),
        )
        handle = await rt.client.start(short_chain, 2, workflow_id=workflow_id)
        with anyio.move_on_after(15):
            await wait_until(_parked_or_done(rt, handle.first_run_id), timeout=None)
        assert 1 == len(failed)
        assert {} == (rt.worker.parked if rt.worker else {})
        assert 3 + 303 == await handle.result(timeout=15)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        first_events = await rt.client.events(chain[0].run_id)

    assert [RunStatus.CONTINUED_AS_NEW, RunStatus.COMPLETED] == [r.status for r in chain]
    assert [EventType.WORKFLOW_CONTINUED_AS_NEW] == [e.type for e in first_events]


async def test_a_fault_in_truncation_after_the_head_moved_still_truncates(
    runtime_factory: RuntimeFactory,
) -> None:
    async with runtime_factory(restart_backoff=0.01) as rt:
        workflow_id = "fault-in-truncation"
        failed = fail_once(
            rt.backend.events, "truncate", when=any_run, after=head_moved(rt, workflow_id)
        )
        handle = await rt.client.start(short_chain, 3, workflow_id=workflow_id)
        assert 3 + 303 + 603 == await handle.result(timeout=30)
        assert 1 == len(failed)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        events = [await rt.client.events(run.run_id) for run in chain]
        restarts = rt.worker.statistics().restarts if rt.worker else 0

    assert 1 <= restarts
    assert [RunStatus.CONTINUED_AS_NEW] * 2 + [RunStatus.COMPLETED] == [r.status for r in chain]
    assert [[EventType.WORKFLOW_CONTINUED_AS_NEW]] * 2 == [
        [e.type for e in ev] for ev in events[:2]
    ]


def is_successor_first_event(key: RunKey, event: NewEvent, **kwargs: Any) -> bool:
    return event.type == EventType.WORKFLOW_STARTED and bool(
        event.data.get("continued_from_run_id")
    )


async def test_a_fault_after_the_link_rolls_the_successor_forward_once(
    runtime_factory: RuntimeFactory,
) -> None:
    # the hand-over committed (the old run's link is written) and the store fails before the
    # new run's first event: the restarted instance finds the link without its successor and
    # writes it from the link; the chain goes on as if nothing happened
    async with runtime_factory(restart_backoff=0.01) as rt:
        workflow_id = "fault-after-link"
        seen: list[tuple[str | None, int]] = []
        written: list[tuple[str, int]] = []

        async def link_written() -> bool:
            return True

        failed = fail_once(
            rt.backend.events, "append", when=is_successor_first_event, after=link_written
        )
        original = rt.backend.events.append

        async def watching(key: RunKey, event: NewEvent, **kwargs: Any) -> int:
            if is_successor_first_event(key, event) and not seen:
                # at the crash point: the link is the old run's last event, the new run empty
                old = RunKey(workflow_id=key.workflow_id, run_id=event.data["continued_from_run_id"])
                last = (await rt.backend.events.read(old))[-1]
                seen.append((last.type, await rt.backend.events.last_sequence(key)))
            sequence = await original(key, event, **kwargs)
            if is_successor_first_event(key, event):
                written.append((key.run_id, sequence))
            return sequence

        rt.backend.events.append = watching  # type: ignore[method-assign]
        handle = await rt.client.start(short_chain, 3, workflow_id=workflow_id)
        assert 3 + 303 + 603 == await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        restarts = rt.worker.statistics().restarts if rt.worker else 0

    assert 1 == len(failed)
    assert (EventType.WORKFLOW_CONTINUED_AS_NEW, 0) == seen[0]
    assert 1 <= restarts
    assert [RunStatus.CONTINUED_AS_NEW] * 2 + [RunStatus.COMPLETED] == [r.status for r in chain]
    assert [next_run_id(chain[0].run_id), next_run_id(chain[1].run_id)] == [
        r.run_id for r in chain[1:]
    ]
    # each successor's first event written once, at sequence 1 (after the failed attempt)
    assert [(r.run_id, 1) for r in chain[1:]] == written


def _parked_or_done(rt: Runtime, first_run_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        if rt.worker is not None and rt.worker.parked:
            return True
        chain = await rt.client.get_workflow_chain(first_run_id)
        return bool(chain) and chain[-1].status == RunStatus.COMPLETED

    return check
