"""The storage interfaces. Backends (memory, JetStream, S3) implement them; the runtime uses
nothing else. One contract test suite (tests/persistence/test_contract_*.py) runs against
every backend that implements each protocol.

Design note: sequences in ``EventLog`` are per run (1, 2, 3...), not per stream. A JetStream
backend maps them onto its stream sequences for the ``Nats-Expected-Last-Subject-Sequence``
fence internally; callers only ever see the per-run numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ._model import (
    Append,
    ChainHead,
    InboxMessage,
    Lease,
    NewEvent,
    RunKey,
    RunStatus,
    StoredEvent,
    Versioned,
    WorkflowRun,
)

__all__ = [
    "Clock",
    "EventLog",
    "Inbox",
    "PayloadStore",
    "RunStore",
    "SnapshotStore",
]


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time as the runtime sees it. ``riverrun.testing`` ships a virtual one."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    async def sleep_until(self, deadline: datetime) -> None:
        """Return once ``now() >= deadline``."""
        ...


@runtime_checkable
class EventLog(Protocol):
    """Append-only, per-run event histories with optimistic concurrency."""

    async def append(
        self, key: RunKey, event: NewEvent, *, expected_last: int, idempotency_id: str
    ) -> int:
        """Append one event after sequence ``expected_last`` and return its sequence.

        Raises ``ConcurrencyConflict`` if the run's last sequence is not ``expected_last``,
        unless the last event carries the same ``idempotency_id`` (a retry whose ack was
        lost), in which case its sequence is returned and nothing is written.
        """
        ...

    async def append_atomic(self, appends: Sequence[Append]) -> list[int]:
        """Write several appends (to different runs) all together or not at all."""
        ...

    async def read(
        self, key: RunKey, *, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """Events with sequence > ``after``, in order (at most ``limit``)."""
        ...

    def stream(self, key: RunKey, *, after: int = 0) -> AsyncIterator[StoredEvent]:
        """Like ``read`` but lazily, for long histories; ends at the current last event."""
        ...

    async def last_sequence(self, key: RunKey) -> int:
        """The run's last sequence; 0 if it has no events."""
        ...

    async def truncate(self, key: RunKey, *, keep_last: int) -> None:
        """Remove all but the last ``keep_last`` events of the run (their sequences stay)."""
        ...

    async def delete(self, key: RunKey) -> None:
        """Remove every event of the run."""
        ...


@runtime_checkable
class RunStore(Protocol):
    """Run records, chain heads and leases, each with compare-and-set on a revision."""

    async def get_run(self, run_id: str) -> Versioned[WorkflowRun] | None: ...

    async def put_run(self, run: WorkflowRun, *, expected_revision: int | None) -> int:
        """Create (``expected_revision=None``: fails if it exists) or update a record.

        Returns the new revision; raises ``ConcurrencyConflict`` on a revision mismatch.
        """
        ...

    async def delete_run(self, run_id: str) -> None: ...

    async def list_runs(
        self, *, workflow_id: str | None = None, status: RunStatus | None = None
    ) -> list[WorkflowRun]:
        """Records matching the filters, oldest ``created_at`` first."""
        ...

    async def get_head(self, workflow_id: str) -> Versioned[ChainHead] | None: ...

    async def put_head(self, head: ChainHead, *, expected_revision: int | None) -> int:
        """Create or compare-and-set a chain head, as ``put_run``."""
        ...

    async def delete_head(self, workflow_id: str) -> None: ...

    async def acquire_lease(self, workflow_id: str, owner: str, ttl: timedelta) -> Lease | None:
        """Take or renew the lease; ``None`` if another owner holds an unexpired one."""
        ...

    async def release_lease(self, lease: Lease) -> None: ...


@runtime_checkable
class Inbox(Protocol):
    """Per-workflow-id inboxes (signals, cancels, fired timers, child results) and durable
    timers that deliver into them."""

    async def send(
        self,
        workflow_id: str,
        kind: str,
        data: Mapping[str, Any],
        *,
        idempotency_id: str | None = None,
    ) -> int:
        """Append a message to the workflow's inbox and return its sequence."""
        ...

    async def read(
        self, workflow_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[InboxMessage]:
        """Messages with sequence > ``after``, in order."""
        ...

    async def last_sequence(self, workflow_id: str) -> int:
        """The sequence of the last message in the workflow's inbox; 0 if it holds none."""
        ...

    async def schedule(
        self,
        workflow_id: str,
        timer_id: str,
        at: datetime,
        kind: str,
        data: Mapping[str, Any],
    ) -> None:
        """Durably deliver ``send(workflow_id, kind, data)`` at time ``at`` (once), even across
        restarts of the process or the server; immediately if ``at`` is already past."""
        ...

    async def cancel_schedule(self, workflow_id: str, timer_id: str) -> None: ...

    def watch(self) -> AbstractAsyncContextManager[AsyncIterator[InboxMessage]]:
        """Every new inbox message of every workflow, from one shared subscription.

        Delivery is at-least-once and a hint: consumers track their own cursor and read
        with ``read(after=cursor)`` to fill gaps.
        """
        ...

    async def purge(self, workflow_id: str, *, up_to: int) -> None:
        """Drop messages with sequence <= ``up_to`` (already consumed)."""
        ...


@runtime_checkable
class PayloadStore(Protocol):
    """Content-addressed blobs: the claim check for large arguments and results."""

    async def put(self, data: bytes) -> str:
        """Store ``data`` and return its reference (``sha256:<hex>``); idempotent."""
        ...

    async def get(self, ref: str) -> bytes:
        """Raises ``NotFoundInStore`` for an unknown reference."""
        ...

    async def delete(self, ref: str) -> None: ...

    async def exists(self, ref: str) -> bool: ...


@runtime_checkable
class SnapshotStore(Protocol):
    """Named snapshots (bytes), overwritten in place."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

