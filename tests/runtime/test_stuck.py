"""Why a run is stuck: the worker notes parks and restart loops (bounded), and a terminate
lets a parked workflow go."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from riverrun import EventType, Runtime, step, wait_for_signal, workflow
from riverrun.persistence import NewEvent, OperatorNote, RunKey, read_notes
from riverrun.runtime._stuck import RESTART_LOOP_AFTER, RestartStreaks, stuck
from riverrun.testing import wait_until

from .conftest import RuntimeFactory, fail_history_reads

pytestmark = pytest.mark.anyio


@workflow()
async def waits_for_go() -> Any:
    return await wait_for_signal("go")


@step()
async def echo(value: int) -> int:
    return value


@workflow()
async def healthy(value: int) -> int:
    return await echo(value)


async def _notes(rt: Runtime, workflow_id: str, kind: str) -> list[OperatorNote]:
    return [n for n in await read_notes(rt.backend.snapshots, workflow_id) if n.kind == kind]


async def _park(rt: Runtime, corrupt: dict[str, Any], type_: EventType) -> tuple[str, RunKey]:
    """Start ``waits_for_go``, append ``corrupt`` to its history and have it replayed."""
    worker = rt.worker
    assert worker is not None
    handle = await rt.client.start(waits_for_go)
    key = RunKey(workflow_id=handle.workflow_id, run_id=handle.first_run_id)
    await rt.backend.events.append(
        key,
        NewEvent(type=type_.value, timestamp=datetime.now(UTC), data=corrupt),
        expected_last=1,
        idempotency_id="corrupt",
    )
    await handle.signal("go", 1)  # the hosting actor loses its fence and lets go

    async def released() -> bool:
        return worker.statistics().active == 0 or handle.workflow_id in worker.parked

    await wait_until(released)
    await worker.deliver(handle.workflow_id, None)  # host it again: replay the corruption

    async def parked() -> bool:  # and noted (the note is written just after)
        noted = await _notes(rt, handle.workflow_id, "parked")
        return handle.workflow_id in worker.parked and bool(noted)

    await wait_until(parked)
    return handle.workflow_id, key


async def test_non_determinism_park_is_noted_and_terminate_unparks(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[waits_for_go]) as rt:
        worker = rt.worker
        assert worker is not None
        # history says a step ran where the code waits for a signal
        workflow_id, key = await _park(
            rt, {"position": 0, "name": "gone", "result": None}, EventType.STEP_COMPLETED
        )
        [note] = await _notes(rt, workflow_id, "parked")
        last = await rt.client.last_event(key.run_id)
        why = stuck(
            await read_notes(rt.backend.snapshots, workflow_id),
            key.run_id,
            last.timestamp if last else None,
        )

        await rt.client.terminate(workflow_id, reason="cannot replay")

        async def unparked() -> bool:
            return workflow_id not in worker.parked

        await wait_until(unparked)
        stats = worker.statistics()
        run = await rt.client.get_handle(workflow_id).describe()
    assert note.run_id == key.run_id and note.worker_id
    assert "position 0" in note.message and "riverrun runs terminate" in note.message
    assert why is not None and why.kind == "parked" and why.describe().startswith("parked: ")
    assert stats.parked == 0 and run.status == "cancelled"


async def test_repeated_crash_park_is_noted_once(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(
        workflows=[waits_for_go], restart_backoff=0.0, park_after_failures=3
    ) as rt:
        # a corrupt event: replaying it raises KeyError (no signal name), every time
        workflow_id, key = await _park(
            rt, {"payload": 1, "inbox_seq": 0}, EventType.SIGNAL_RECEIVED
        )
        parked = await _notes(rt, workflow_id, "parked")
        loops = await _notes(rt, workflow_id, "restart_loop")
    [note] = parked
    assert "3 times in a row" in note.message and "KeyError" in note.message
    assert note.run_id == key.run_id
    assert loops == []  # parked on the third crash: a park, not a restart loop


async def test_a_restart_loop_is_noted_once(
    make_runtime: RuntimeFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="riverrun.worker")
    async with make_runtime(workflows=[healthy], restart_backoff=0.0, park_after_failures=2) as rt:
        worker = rt.worker
        assert worker is not None

        def crash(n: int, key: RunKey) -> BaseException | None:
            # a different message each time: never the same crash twice, never parked
            return RuntimeError(f"crash number {n}") if n <= 7 else None

        fail_history_reads(monkeypatch, rt, crash)
        handle = await rt.client.start(healthy, 4)
        assert await handle.result(timeout=30) == 4
        loops = await _notes(rt, handle.workflow_id, "restart_loop")
        stats = worker.statistics()
    assert stats.parked == 0 and stats.restarts >= 7
    [note] = loops  # one note for the whole loop, not one per restart
    assert f"crash number {RESTART_LOOP_AFTER}" in note.message
    assert f"restarted {RESTART_LOOP_AFTER} times in a row" in note.message
    logged = [r for r in caplog.records if "restart loop" in r.getMessage()]
    assert len(logged) == 1 and handle.workflow_id in logged[0].getMessage()


def test_restart_streaks_start_again_after_progress() -> None:
    streaks = RestartStreaks()
    due = [streaks.crashed("w", ("r1", 3)) for _ in range(5)]
    assert due == [None, None, RESTART_LOOP_AFTER, None, None]
    # it got further (more history, or its next run): a new loop may be noted
    assert [streaks.crashed("w", ("r1", 4)) for _ in range(3)] == [None, None, 3]
    assert [streaks.crashed("w", ("r2", 1)) for _ in range(3)] == [None, None, 3]
    streaks.forget("w")  # a clean end
    assert [streaks.crashed("w", ("r2", 1)) for _ in range(3)] == [None, None, 3]


def test_a_note_older_than_the_last_event_is_history() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 1, 2, tzinfo=UTC)
    notes = [
        OperatorNote(workflow_id="w", kind="quarantined", message="q", at=later, run_id="r"),
        OperatorNote(workflow_id="w", kind="restart_loop", message="Boom: x", at=at, run_id="r"),
    ]
    found = stuck(notes, "r", at)
    assert found is not None and found.describe() == "restart loop: Boom: x"
    assert stuck(notes, "r", later) is None  # the run recorded an event after the note
    assert stuck(notes, "other", at) is None  # a note about another run of the chain


async def test_a_terminate_beating_the_hosting_worker_is_logged_as_such(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="riverrun.worker")
    async with make_runtime(workflows=[waits_for_go]) as rt:
        worker = rt.worker
        assert worker is not None
        handle = await rt.client.start(waits_for_go)

        async def hosted() -> bool:
            return worker.statistics().active == 1

        await wait_until(hosted)
        # its terminate message wakes the hosting actor, whose append fails the fence
        await handle.terminate(reason="stop now")

        async def released() -> bool:
            return worker.statistics().active == 0

        await wait_until(released)
    messages = [r.getMessage() for r in caplog.records if r.name == "riverrun.worker"]
    assert not any("another worker owns it" in m for m in messages), messages
    [ended] = [m for m in messages if "ended by another writer" in m]
    assert handle.workflow_id in ended and "terminated: stop now" in ended
