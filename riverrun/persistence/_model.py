"""Values stored by the persistence layer: events, run records, chain heads, inbox messages.

These are the only shapes that cross the persistence boundary. ``WorkflowRun`` and
``RunStatus`` are also public (re-exported by the ``riverrun`` facade): a run record is what a
user reads back about a run, so it is defined once, here, where it is stored.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

import attrs

__all__ = [
    "Append",
    "ChainHead",
    "InboxMessage",
    "Lease",
    "Member",
    "NewEvent",
    "RunKey",
    "RunStatus",
    "StoredEvent",
    "Versioned",
    "WorkflowRun",
]

T = TypeVar("T")


class RunStatus(enum.StrEnum):
    """Status of one run. ``completed``, ``failed``, ``cancelled`` and ``continued_as_new``
    are terminal."""

    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CONTINUED_AS_NEW = "continued_as_new"

    @property
    def is_terminal(self) -> bool:
        return self not in (RunStatus.RUNNING, RunStatus.SUSPENDED)


@attrs.frozen(kw_only=True)
class RunKey:
    """Addresses one run's event history."""

    workflow_id: str
    run_id: str


@attrs.frozen(kw_only=True)
class NewEvent:
    """An event about to be appended. ``data`` must be encodable by the codec."""

    type: str
    timestamp: datetime
    data: Mapping[str, Any] = attrs.field(factory=dict)
    schema_version: int = 1


@attrs.frozen(kw_only=True)
class StoredEvent:
    """An event read back from a run's history, already decoded and upcast.

    ``sequence`` is 1-based and dense within the run (truncation keeps the numbers of the
    events it keeps). ``size`` is the encoded size in bytes, for history-size limits.
    """

    key: RunKey
    sequence: int
    type: str
    timestamp: datetime
    data: Mapping[str, Any]
    schema_version: int = 1
    size: int = 0


@attrs.frozen(kw_only=True)
class Append:
    """One append of an atomic multi-run write (the continue-as-new hand-over).

    ``expected_last`` is the run's last sequence the writer saw (0: the run must be empty).
    ``idempotency_id`` makes a retried append (after a lost ack) store nothing twice.
    """

    key: RunKey
    event: NewEvent
    expected_last: int
    idempotency_id: str


@attrs.frozen(kw_only=True)
class Versioned(Generic[T]):
    """A value read from a compare-and-set store with the revision to pass back."""

    value: T
    revision: int


@attrs.frozen(kw_only=True)
class WorkflowRun:
    """One run of a workflow chain, as recorded in the run store."""

    run_id: str
    workflow_id: str
    workflow_name: str
    status: RunStatus
    execution: int
    continued_from_run_id: str | None = None
    continued_to_run_id: str | None = None
    created_at: datetime
    completed_at: datetime | None = None
    result: Any = None
    error: str | None = None
    #: run id of the parent workflow's run, when this chain was started as a child
    parent_run_id: str | None = None
    parent_workflow_id: str | None = None
    #: the workflow version the run executes: given at start, else the one its worker
    #: registered when it first hosted the run (``None`` until then)
    version: str | None = None
    #: the task queue the chain is served on (workers serving it host the chain)
    queue: str = "default"


@attrs.frozen(kw_only=True)
class ChainHead:
    """Points from a ``workflow_id`` to its chain: first run and current (last) run."""

    workflow_id: str
    workflow_name: str
    first_run_id: str
    current_run_id: str
    #: the task queue the chain is served on
    queue: str = "default"


@attrs.frozen(kw_only=True)
class Lease:
    """Ownership of one partition of a queue by one worker. ``revision`` is the fencing
    token: every grant and renewal gets a new one, and no two grants share one. A released
    lease has ``owner == ""``."""

    queue: str
    partition: int
    owner: str
    expires_at: datetime
    revision: int


@attrs.frozen(kw_only=True)
class Member:
    """A live worker of the namespace, as its last heartbeat said."""

    worker_id: str
    host: str = ""
    pid: int = 0
    #: the queues it serves
    queues: tuple[str, ...] = ()
    #: the workflow types it registers
    workflows: tuple[str, ...] = ()
    expires_at: datetime


@attrs.frozen(kw_only=True)
class InboxMessage:
    """A message addressed to a workflow id: signal, cancel, fired timer, child result.

    ``sequence`` increases strictly within one workflow's inbox; a run stores the last
    sequence it consumed (its inbox cursor) and resumes after it.
    """

    workflow_id: str
    sequence: int
    kind: str
    data: Mapping[str, Any]
    timestamp: datetime
    #: set when the message could not be decoded: why (``kind`` and ``data`` are then empty);
    #: the runtime quarantines such a message instead of using it
    problem: str | None = None
    #: where the message is stored (its NATS subject), for operators; ``""`` in memory
    subject: str = ""
    #: the queue and partition of the inbox it was sent to
    queue: str = "default"
    partition: int = 0
