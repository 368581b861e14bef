"""Why a run is stuck: the operator notes a worker writes, and their summary for ``runs show``.

Design note. A worker that parks a workflow (non-determinism, a crash that repeats the same
way) or keeps restarting it (an outage, a crash that fails differently each time) says so in
its log; ``riverrun runs show`` runs elsewhere, so the worker also writes an operator note
(``riverrun.persistence`` notes, kept per workflow id). Writes are bounded: one note per
park, and one per restart loop, on its ``RESTART_LOOP_AFTER``-th consecutive crash without
progress (a crash after the history grew, another run, or a clean end starts the count
again), never one per restart. A note is advisory: written under a time limit, a store fault
only logged.

``stuck`` reads the newest of those notes (and ``unregistered_type`` ones) about the run; a
note older than the run's last event is history: the run got further since.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import anyio
import attrs

from .._errors import PersistenceError
from ..persistence import Backend, OperatorNote, RunKey
from ._events import EventType
from ._quarantine import UNREGISTERED_TYPE, note

__all__ = [
    "PARKED",
    "RESTART_LOOP",
    "RESTART_LOOP_AFTER",
    "RestartStreaks",
    "Stuck",
    "run_ended",
    "ended_by_another_writer",
    "note_parked",
    "note_restart_loop",
    "stuck",
]

log = logging.getLogger("riverrun.worker")

#: operator note kinds
PARKED = "parked"
RESTART_LOOP = "restart_loop"

#: the consecutive crash (without progress) of a workflow id that writes a restart-loop note
RESTART_LOOP_AFTER = 3

#: longest a worker waits for a note to be written (the store may be what is failing)
_NOTE_TIMEOUT = 5.0

_ENDINGS = frozenset(t.value for t in EventType if t.is_terminal)

_LABELS = {
    PARKED: "parked",
    RESTART_LOOP: "restart loop",
    UNREGISTERED_TYPE: "no worker registers its workflow type",
}


@attrs.define(eq=False)
class RestartStreaks:
    """Consecutive crashes of each workflow id without progress (bounded memory)."""

    #: workflow id -> (crashes in a row, furthest (run id, sequence) they reached)
    _streaks: dict[str, tuple[int, tuple[str | None, int]]] = attrs.field(factory=dict)

    def crashed(self, workflow_id: str, position: tuple[str | None, int]) -> int | None:
        """Count one crash at ``position``; the count if a restart-loop note is due now."""
        count, furthest = self._streaks.get(workflow_id, (0, position))
        if position[0] != furthest[0] or position[1] > furthest[1]:
            count, furthest = 0, position  # it got further since its last crash
        count += 1
        if workflow_id not in self._streaks and len(self._streaks) >= 10_000:
            self._streaks.clear()
        self._streaks[workflow_id] = (count, furthest)
        return count if count == RESTART_LOOP_AFTER else None

    def forget(self, workflow_id: str) -> None:
        """The workflow's actor ended without crashing (or was parked)."""
        self._streaks.pop(workflow_id, None)


async def _write(backend: Backend, item: OperatorNote) -> None:
    with anyio.move_on_after(_NOTE_TIMEOUT) as timed:
        await note(backend, item)
    if timed.cancelled_caught:
        log.warning(
            "workflow %s: gave up writing a %s operator note after %.0f s",
            item.workflow_id,
            item.kind,
            _NOTE_TIMEOUT,
        )


async def note_parked(
    backend: Backend,
    workflow_id: str,
    run_id: str | None,
    worker_id: str,
    at: datetime,
    reason: str,
) -> None:
    """Note that this worker parked the workflow, and why."""
    await _write(
        backend,
        OperatorNote(
            workflow_id=workflow_id,
            kind=PARKED,
            message=(
                f"{reason} (parked on worker {worker_id} until it restarts: fix the cause and "
                "restart it, or end the run with `riverrun runs terminate`)"
            ),
            at=at,
            run_id=run_id,
            worker_id=worker_id,
        ),
    )


async def note_restart_loop(
    backend: Backend,
    workflow_id: str,
    run_id: str | None,
    worker_id: str,
    at: datetime,
    count: int,
    cause: str,
) -> None:
    """Note (and log, once per loop) that the workflow keeps crashing and restarting."""
    log.error(
        "workflow %s run %s is in a restart loop: %d crashes in a row without progress, "
        "the last: %s",
        workflow_id,
        run_id,
        count,
        cause,
    )
    await _write(
        backend,
        OperatorNote(
            workflow_id=workflow_id,
            kind=RESTART_LOOP,
            message=(
                f"{cause} (restarted {count} times in a row without progress on worker "
                f"{worker_id}; it keeps restarting with backoff: see that worker's log)"
            ),
            at=at,
            run_id=run_id,
            worker_id=worker_id,
        ),
    )


@attrs.frozen(kw_only=True)
class Stuck:
    """Why a run is stuck, from the newest relevant operator note."""

    #: ``parked``, ``restart_loop`` or ``unregistered_type`` (the note's kind)
    kind: str
    #: the note's message
    reason: str
    at: datetime
    worker_id: str | None = None

    def describe(self) -> str:
        return f"{_LABELS.get(self.kind, self.kind)}: {self.reason}"


def stuck(
    notes: Sequence[OperatorNote], run_id: str, last_event_at: datetime | None
) -> Stuck | None:
    """Why the running run ``run_id`` is stuck, or ``None``: the newest parked, restart-loop
    or unregistered-type note about it not older than its last event."""
    for item in reversed(notes):
        if item.kind not in _LABELS or item.run_id not in (None, run_id):
            continue
        if last_event_at is not None and item.at < last_event_at:
            return None  # the run got further after it
        return Stuck(kind=item.kind, reason=item.message, at=item.at, worker_id=item.worker_id)
    return None


async def ended_by_another_writer(backend: Backend, key: RunKey | None) -> str | None:
    """How the run ``key`` was ended by someone else (its log's last event, e.g. a
    terminate), or ``None`` if its log does not show it ended (another worker owns it)."""
    if key is None:
        return None
    try:
        with anyio.fail_after(_NOTE_TIMEOUT):
            last = await backend.events.last_sequence(key)
            events = await backend.events.read(key, after=last - 1) if last else []
    except (PersistenceError, TimeoutError):
        return None
    if not events or events[-1].type not in _ENDINGS:
        return None
    data = events[-1].data
    if events[-1].type == EventType.WORKFLOW_CANCELLED.value and data.get("terminated"):
        return str(data.get("message") or "terminated")
    return f"{events[-1].type}"


async def run_ended(backend: Backend, key: RunKey) -> bool:
    """Whether the run's log ends with a terminal event (``runs terminate`` appends one,
    fenced, before it sends its ``terminate`` message); ``False`` if it cannot be read."""
    try:
        with anyio.fail_after(_NOTE_TIMEOUT):
            last = await backend.events.last_sequence(key)
            events = await backend.events.read(key, after=last - 1) if last else []
    except (PersistenceError, TimeoutError):
        return False
    return bool(events) and events[-1].type in _ENDINGS
