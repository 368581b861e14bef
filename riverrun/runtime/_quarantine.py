"""Which inbox messages a workflow instance cannot use, and how it quarantines them.

Design note. The inbox is written by clients, workers, the server's schedules, and anyone
else allowed to publish on its subjects. A message that did not decode (``problem`` set by
the store) or whose data does not have the shape its kind needs (a signal without a name, a
timer id that is not a string) is quarantined: reported once to the backend's
``Quarantine`` (one ERROR log line, counted), recorded as an operator note of its workflow,
and skipped: the run's cursor moves past it, so the messages after it are delivered and it
is never retried. Checking the shape here, before anything is recorded, keeps one bad message
from failing the instance, which would restart, read it again and fail again for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import PersistenceError, WorkflowNotRegistered
from ..persistence import (
    NOTES_KEPT,
    Backend,
    InboxMessage,
    OperatorNote,
    QuarantinedMessage,
    add_notes,
)

__all__ = [
    "INBOX_KINDS",
    "QUARANTINED",
    "UNREGISTERED_TYPE",
    "note",
    "note_quarantined",
    "quarantine_record",
    "unusable",
    "warn_unregistered",
]

if TYPE_CHECKING:
    from ._services import Services

log = logging.getLogger("riverrun.quarantine")

#: operator note kinds
QUARANTINED = "quarantined"
UNREGISTERED_TYPE = "unregistered_type"

#: every kind of inbox message riverrun writes; a new kind must be added here
INBOX_KINDS = frozenset({"signal", "cancel", "terminate", "timer", "child", "start"})


def _str_or_none(data: Mapping[Any, Any], key: str) -> bool:
    value = data.get(key)
    return value is None or isinstance(value, str)


def unusable(message: InboxMessage) -> str | None:
    """Why ``message`` cannot be used by any run, or ``None`` if it can."""
    if message.problem is not None:
        return message.problem
    kind, data = message.kind, message.data
    if kind not in INBOX_KINDS:
        return f"unknown message kind {kind!r} (riverrun writes {', '.join(sorted(INBOX_KINDS))})"
    if kind == "signal":
        if not isinstance(data.get("name"), str):
            return "a signal message without a name (its 'name' must be a string)"
    elif kind in ("cancel", "terminate"):
        if not _str_or_none(data, "reason"):
            return f"a {kind} message whose 'reason' is not a string"
    elif kind == "timer":
        if not (isinstance(data.get("timer_id"), str) and isinstance(data.get("run_id"), str)):
            return "a timer message without a string 'timer_id' and 'run_id'"
    elif kind == "child":
        if not isinstance(data.get("child_workflow_id"), str):
            return "a child message without a string 'child_workflow_id'"
        if not (_str_or_none(data, "status") and _str_or_none(data, "message")):
            return "a child message whose 'status' or 'message' is not a string"
    return None


def quarantine_record(message: InboxMessage, reason: str, run_id: str | None) -> QuarantinedMessage:
    """The quarantine report for an inbox message."""
    return QuarantinedMessage(
        subject=message.subject or f"inbox:{message.workflow_id}",
        sequence=message.sequence,
        reason=reason,
        workflow_id=message.workflow_id or None,
        run_id=run_id,
    )


async def note_quarantined(backend: Backend, workflow_id: str, worker_id: str) -> None:
    """Write the quarantine reports about ``workflow_id`` not yet noted as operator notes."""
    reports = backend.quarantine.take_unnoted(workflow_id)[-NOTES_KEPT:]
    await note(
        backend,
        *(
            OperatorNote(
                workflow_id=workflow_id,
                kind=QUARANTINED,
                message=(
                    f"message {report.subject} #{report.sequence} was quarantined (skipped): "
                    f"{report.reason}"
                ),
                at=report.at,
                run_id=report.run_id,
                subject=report.subject,
                sequence=report.sequence,
                worker_id=worker_id,
            )
            for report in reports
        ),
    )


async def note(backend: Backend, *notes: OperatorNote, skip_if_noted: bool = False) -> None:
    """Write operator notes of one workflow id; a store fault is logged, never raised (notes
    are advisory)."""
    if not notes:
        return
    try:
        await add_notes(backend.snapshots, notes, skip_if_noted=skip_if_noted)
    except PersistenceError as exc:
        log.warning(
            "workflow %s: could not write %d operator note(s) (%s): %s",
            notes[0].workflow_id,
            len(notes),
            notes[-1].message,
            exc,
        )


async def warn_unregistered(
    services: Services, workflow_id: str, run_id: str | None, err: WorkflowNotRegistered
) -> None:
    """Log (WARNING) and note that this worker does not register a run's workflow type.

    The run is left as it is: several workers with different code may share a namespace,
    and one that registers the type may still host it.
    """
    try:
        head = await services.backend.runs.get_head(workflow_id)
    except PersistenceError:
        head = None
    name = head.value.workflow_name if head is not None else "?"
    registered = ", ".join(services.registry.names()) or "none"
    logging.getLogger("riverrun.worker").warning(
        "workflow %s run %s: workflow type %r is not registered with this worker "
        "(it registers: %s); the run stays running for a worker that registers it: %s",
        workflow_id,
        run_id,
        name,
        registered,
        err,
    )
    await note(
        services.backend,
        OperatorNote(
            workflow_id=workflow_id,
            kind=UNREGISTERED_TYPE,
            message=(
                f"worker {services.worker_id} does not register workflow type {name!r} "
                f"(it registers: {registered}); the run stays running until a worker "
                "that registers it picks it up"
            ),
            at=services.clock.now(),
            run_id=run_id,
            worker_id=services.worker_id,
        ),
        skip_if_noted=True,
    )
