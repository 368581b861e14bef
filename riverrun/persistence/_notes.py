"""Operator notes: what a worker wants an operator to know about one workflow id.

Design note. Some faults leave nothing in a workflow's history, because nothing about them
may change what a replay sees: a message quarantined from its inbox or its run's event
subject, a start of a workflow type that the worker seeing it does not register. A worker
logs them, but the log is that worker's; ``riverrun runs show`` runs in another process. So
the worker also writes a note, kept per workflow id in the snapshot store (every backend has
one) under ``notes/<escaped workflow id>``: the last ``NOTES_KEPT`` notes, msgpack-encoded.

Notes are advisory: written read-modify-write without a fence (two workers noting at once
may lose one of the two notes), never read on a hot path, and never part of the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from ._codec import Codec
from ._jetstream_names import escape_token
from ._protocols import SnapshotStore

__all__ = ["NOTES_KEPT", "OperatorNote", "add_note", "add_notes", "read_notes"]

#: how many notes are kept per workflow id (the oldest go first)
NOTES_KEPT = 20

_FIELDS = ("workflow_id", "kind", "message", "at", "run_id", "subject", "sequence", "worker_id")


@attrs.frozen(kw_only=True)
class OperatorNote:
    """One thing an operator should know about a workflow id."""

    workflow_id: str
    #: what happened: ``quarantined`` (a message skipped), ``unregistered_type``, ``parked``
    #: or ``restart_loop`` (see ``riverrun.runtime._stuck``)
    kind: str
    #: what happened and what to do, in a sentence
    message: str
    at: datetime
    run_id: str | None = None
    #: for a quarantined message: where it is stored, and its stream sequence
    subject: str | None = None
    sequence: int | None = None
    #: the worker (lease owner id) that wrote the note
    worker_id: str | None = None


def _key(workflow_id: str) -> str:
    return f"notes/{escape_token(workflow_id)}"


async def read_notes(
    store: SnapshotStore, workflow_id: str, *, codec: Codec | None = None
) -> list[OperatorNote]:
    """The workflow id's notes, oldest first (``[]`` if there are none or they are unreadable).

    Notes hold only plain values, so the default codec reads what any runtime wrote.
    """
    raw = await store.get(_key(workflow_id))
    if raw is None:
        return []
    codec = codec if codec is not None else Codec()
    try:
        items: Any = codec.loads(raw, what=f"operator notes of {workflow_id}")
        return [OperatorNote(**{k: item[k] for k in _FIELDS if k in item}) for item in items]
    except Exception:  # notes are advisory: a bad one must not stop anything
        return []


async def add_note(
    store: SnapshotStore,
    note: OperatorNote,
    *,
    skip_if_noted: bool = False,
    codec: Codec | None = None,
) -> bool:
    """Append ``note`` to its workflow's notes (keeping the last ``NOTES_KEPT``).

    Args:
        skip_if_noted: write nothing if a note of the same kind, run and message exists.

    Returns:
        Whether the note was written.
    """
    return bool(await add_notes(store, [note], skip_if_noted=skip_if_noted, codec=codec))


async def add_notes(
    store: SnapshotStore,
    notes: Sequence[OperatorNote],
    *,
    skip_if_noted: bool = False,
    codec: Codec | None = None,
) -> int:
    """Append several notes of one workflow id in one write; returns how many were added."""
    if not notes:
        return 0
    workflow_id = notes[0].workflow_id
    if any(n.workflow_id != workflow_id for n in notes):
        raise ValueError("add_notes() takes the notes of one workflow id")
    codec = codec if codec is not None else Codec()
    kept = await read_notes(store, workflow_id, codec=codec)
    seen = {(n.kind, n.run_id, n.message) for n in kept}
    new = [n for n in notes if not skip_if_noted or (n.kind, n.run_id, n.message) not in seen]
    if not new:
        return 0
    data = [attrs.asdict(n) for n in [*kept, *new][-NOTES_KEPT:]]
    await store.put(_key(workflow_id), codec.dumps(data, what="operator notes"))
    return len(new)
