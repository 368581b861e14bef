"""Public event values: ``EventType`` and ``Event``, and conversion from stored events."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from ..persistence import StoredEvent

__all__ = ["Event", "EventType", "to_event"]


class EventType(enum.StrEnum):
    """Types of the events in a run's history (dotted lowercase strings)."""

    WORKFLOW_STARTED = "workflow.started"
    WORKFLOW_COMPLETED = "workflow.completed"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_CANCELLED = "workflow.cancelled"
    WORKFLOW_CONTINUED_AS_NEW = "workflow.continued_as_new"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    STEP_FAILED = "step.failed"
    STEP_RETRYING = "step.retrying"
    #: workflow code gave up on the step (a timeout, a cancelled task, the workflow's
    #: cancellation): its result, if it still comes, is not recorded
    STEP_CANCELLED = "step.cancelled"
    TIMER_STARTED = "timer.started"
    TIMER_FIRED = "timer.fired"
    #: workflow code gave up on a started timer (``asyncio.timeout`` left in time, a sleep's
    #: task cancelled): it will not fire
    TIMER_CANCELLED = "timer.cancelled"
    SIGNAL_RECEIVED = "signal.received"
    CHILD_STARTED = "child.started"
    CHILD_COMPLETED = "child.completed"
    CHILD_FAILED = "child.failed"
    CHILD_CANCELLED = "child.cancelled"
    CANCELLATION_REQUESTED = "cancellation.requested"
    #: ``patched(id)`` took the new path here: ``data = {patch_id}``
    WORKFLOW_PATCHED = "workflow.patched"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
        EventType.WORKFLOW_CONTINUED_AS_NEW,
    }
)


@attrs.frozen(kw_only=True)
class Event:
    """One event of a run's history, as users read it back."""

    run_id: str
    sequence: int
    type: EventType
    timestamp: datetime
    data: Mapping[str, Any]


def to_event(stored: StoredEvent) -> Event:
    return Event(
        run_id=stored.key.run_id,
        sequence=stored.sequence,
        type=EventType(stored.type),
        timestamp=stored.timestamp,
        data=stored.data,
    )
