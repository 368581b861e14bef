"""Operator notes: per workflow id, the last NOTES_KEPT, advisory (never a failure to read)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from riverrun.persistence import (
    NOTES_KEPT,
    MemorySnapshotStore,
    OperatorNote,
    add_note,
    add_notes,
    read_notes,
)

pytestmark = pytest.mark.anyio


def note(i: int, workflow_id: str = "wf/1 é", kind: str = "quarantined") -> OperatorNote:
    return OperatorNote(
        workflow_id=workflow_id,
        kind=kind,
        message=f"message {i}",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        run_id="r1",
        subject="rr.ns.in.x",
        sequence=i,
        worker_id="w",
    )


async def test_notes_are_kept_per_workflow_id_newest_last() -> None:
    store = MemorySnapshotStore()
    assert [] == await read_notes(store, "wf/1 é")
    assert await add_note(store, note(0))
    assert NOTES_KEPT + 4 == await add_notes(store, [note(i) for i in range(1, NOTES_KEPT + 5)])
    await add_note(store, note(99, workflow_id="other"))
    kept = await read_notes(store, "wf/1 é")
    assert [note(i) for i in range(5, NOTES_KEPT + 5)] == kept
    assert [note(99, workflow_id="other")] == await read_notes(store, "other")


async def test_skip_if_noted_writes_a_note_once() -> None:
    store = MemorySnapshotStore()
    assert await add_note(store, note(1, kind="unregistered_type"), skip_if_noted=True)
    assert not await add_note(store, note(1, kind="unregistered_type"), skip_if_noted=True)
    assert 1 == len(await read_notes(store, "wf/1 é"))


async def test_unreadable_notes_read_as_none() -> None:
    store = MemorySnapshotStore()
    await add_note(store, note(1))
    [key] = list(store._snapshots)
    await store.put(key, b"\xc1 garbage")
    assert [] == await read_notes(store, "wf/1 é")
    assert await add_note(store, note(2))  # and the next note starts afresh
    assert [note(2)] == await read_notes(store, "wf/1 é")


async def test_add_notes_takes_one_workflow_id() -> None:
    with pytest.raises(ValueError, match="one workflow id"):
        await add_notes(MemorySnapshotStore(), [note(1), note(2, workflow_id="other")])
