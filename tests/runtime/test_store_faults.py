"""Store faults at awkward moments of the runtime's multi-write operations, on memory and
JetStream: the operation is redone after the fault and nothing is left unannounced."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from riverrun import execute_child, step, workflow
from riverrun.persistence import ConcurrencyConflict, StoreUnavailable

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@step()
async def triple(x: int) -> int:
    return 3 * x


@workflow()
async def faulty_child(x: int) -> int:
    return await triple(x)


@workflow()
async def faulty_parent(x: int) -> int:
    return await execute_child(faulty_child, x, workflow_id=f"fp-{x}-child") + 1


async def test_a_child_start_cut_before_its_start_message_still_runs_the_child(
    make_runtime: RuntimeFactory,
) -> None:
    # The store goes away after the child's chain head was committed and before its "start"
    # message was sent (a nats-server killed at that moment): the parent's instance fails,
    # restarts from its history and redoes the child start, which finds the chain already
    # there. It must still announce the chain, or no worker ever hosts the child and the
    # parent waits for ever.
    faults: list[str] = []
    async with make_runtime(workflows=[faulty_parent, faulty_child]) as rt:
        inbox = rt.backend.inbox
        send = inbox.send

        async def cut_once(workflow_id: str, kind: str, data: Any, **kwargs: Any) -> int:
            if kind == "start" and workflow_id == "fp-7-child" and not faults:
                faults.append(workflow_id)
                raise StoreUnavailable("injected: the server went away before the start message")
            return await send(workflow_id, kind, data, **kwargs)

        inbox.send = cut_once  # type: ignore[method-assign]
        # chains are announced by their start message, as when another worker hosts them
        # (a chain started in this process is otherwise handed to its worker directly)
        rt._services.on_started = None  # type: ignore[union-attr]
        handle = await rt.client.start(faulty_parent, 7, workflow_id="fp-7")

        assert 22 == await handle.result(timeout=30)
    assert ["fp-7-child"] == faults


@workflow()
async def quick_child(x: int) -> int:
    return await triple(x)


@workflow()
async def patient_parent(x: int) -> int:
    return await execute_child(quick_child, x, workflow_id=f"pp-{x}-child") + 1


async def test_a_child_that_ends_before_its_parent_recorded_its_start_is_not_lost(
    make_runtime: RuntimeFactory,
) -> None:
    # The parent started the child's chain, then failed to record `child.started` (the store
    # went away), and restarted from its history only after the child had ended and told it.
    # The child's end is in the parent's inbox before the parent knows the child: it must be
    # kept for once the start is recorded, not skipped as noise (the parent would wait for
    # ever).
    faults: list[str] = []
    async with make_runtime(workflows=[patient_parent, quick_child]) as rt:
        child_told = anyio.Event()
        inbox, events = rt.backend.inbox, rt.backend.events
        send, append = inbox.send, events.append

        async def watch_child_end(workflow_id: str, kind: str, data: Any, **kwargs: Any) -> int:
            seq = await send(workflow_id, kind, data, **kwargs)
            if kind == "child" and workflow_id == "pp-5":
                child_told.set()
            return seq

        async def fail_start_record(key: Any, event: Any, **kwargs: Any) -> Any:
            if event.type == "child.started" and key.workflow_id == "pp-5" and not faults:
                await child_told.wait()
                faults.append(key.workflow_id)
                raise StoreUnavailable("injected: the server went away before child.started")
            return await append(key, event, **kwargs)

        inbox.send = watch_child_end  # type: ignore[method-assign]
        events.append = fail_start_record  # type: ignore[method-assign]
        handle = await rt.client.start(patient_parent, 5, workflow_id="pp-5")

        assert 16 == await handle.result(timeout=30)
    assert ["pp-5"] == faults


@workflow()
async def one_step(x: int) -> int:
    return await triple(x)


async def test_a_write_conflict_on_a_worker_that_owns_the_workflow_reloads_it(
    make_runtime: RuntimeFactory,
) -> None:
    # An append the store refuses as a conflict although no one else writes there (after a
    # nats-server was killed and restarted, a retried append of a child's first event was
    # refused while the subject read back empty). The worker still owns the workflow's
    # partition: letting the workflow go left it hosted by no one until a message came, and
    # here none comes. It must reload the history and decide again.
    faults: list[str] = []
    async with make_runtime(workflows=[one_step]) as rt:
        events = rt.backend.events
        append = events.append

        async def conflict_once(key: Any, event: Any, **kwargs: Any) -> int:
            if key.workflow_id == "os-8" and event.type == "step.completed" and not faults:
                faults.append(key.workflow_id)
                raise ConcurrencyConflict("injected: the store refused the append as a conflict")
            return await append(key, event, **kwargs)

        events.append = conflict_once  # type: ignore[method-assign]
        handle = await rt.client.start(one_step, 8, workflow_id="os-8")

        assert 24 == await handle.result(timeout=20)
        assert rt.worker is not None and rt.worker.statistics().restarts >= 1
    assert ["os-8"] == faults
