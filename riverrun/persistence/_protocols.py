"""The storage interfaces. Backends (memory, JetStream, S3) implement them; the runtime uses
nothing else. One contract test suite (tests/persistence/test_contract_*.py) runs against
every backend that implements each protocol.

Design note: sequences in ``EventLog`` are per run (1, 2, 3...), not per stream. A JetStream
backend maps them onto its stream sequences for the ``Nats-Expected-Last-Subject-Sequence``
fence internally; callers only ever see the per-run numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ._model import (
    Append,
    ChainHead,
    InboxMessage,
    Lease,
    Member,
    NewEvent,
    RunKey,
    RunStatus,
    StoredEvent,
    Versioned,
    WorkflowRun,
)

__all__ = [
    "ChainEnds",
    "Clock",
    "EventLog",
    "Inbox",
    "OwnershipStore",
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
    """Run records and chain heads, each with compare-and-set on a revision."""

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


@runtime_checkable
class OwnershipStore(Protocol):
    """Who hosts what: the namespace's partition count, one lease per (queue, partition),
    worker membership by heartbeat, and a per-partition index of running chains."""

    async def partitions(self, requested: int | None) -> int:
        """The namespace's partition count per queue: stored once (``requested``, or the
        default, by the first caller); ``IncompatibleStoreConfig`` if ``requested`` differs
        from what is stored."""
        ...

    async def acquire(self, queue: str, partition: int, owner: str, ttl: timedelta) -> Lease | None:
        """Take the partition's lease if it is free, expired or already ``owner``'s;
        ``None`` while another owner holds an unexpired one."""
        ...

    async def renew(self, lease: Lease, ttl: timedelta) -> Lease | None:
        """Extend a held lease (compare-and-set on its revision); ``None`` if it was lost."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the lease up, unless it was taken over (its revision changed) meanwhile."""
        ...

    async def get_lease(self, queue: str, partition: int) -> Lease | None:
        """The partition's lease as stored (maybe expired or released), or ``None``."""
        ...

    async def heartbeat(self, member: Member) -> None:
        """Record (or refresh) a worker's membership."""
        ...

    async def leave(self, worker_id: str) -> None: ...

    async def members(self) -> list[Member]:
        """Every recorded member, expired ones included (the caller judges by the clock)."""
        ...

    async def index_add(self, queue: str, partition: int, workflow_id: str, run_id: str) -> None:
        """Note a running chain (by its first run id) in its partition's index."""
        ...

    async def index_remove(
        self, queue: str, partition: int, workflow_id: str, run_id: str
    ) -> None: ...

    async def index_list(self, queue: str, partition: int) -> list[tuple[str, str]]:
        """``(workflow_id, first_run_id)`` of every chain noted in the partition."""
        ...


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
        queue: str = "default",
    ) -> int:
        """Append a message to the workflow's inbox (on ``queue``, in the workflow's
        partition) and return its sequence."""
        ...

    async def read(
        self,
        workflow_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        queue: str = "default",
    ) -> list[InboxMessage]:
        """Messages with sequence > ``after``, in order."""
        ...

    async def last_sequence(self, workflow_id: str, *, queue: str = "default") -> int:
        """The sequence of the last message in the workflow's inbox; 0 if it holds none."""
        ...

    async def schedule(
        self,
        workflow_id: str,
        timer_id: str,
        at: datetime,
        kind: str,
        data: Mapping[str, Any],
        *,
        queue: str = "default",
    ) -> None:
        """Durably deliver ``send(workflow_id, kind, data)`` at time ``at`` (once), even across
        restarts of the process or the server; immediately if ``at`` is already past."""
        ...

    async def cancel_schedule(self, workflow_id: str, timer_id: str) -> None: ...

    def watch(
        self, *, queue: str | None = None, partition: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[InboxMessage]]:
        """Every new inbox message of one partition of a queue (or, without them, of every
        workflow), from one shared subscription.

        Delivery is at-least-once and a hint: consumers track their own cursor and read
        with ``read(after=cursor)`` to fill gaps.
        """
        ...

    async def purge(self, workflow_id: str, *, up_to: int, queue: str = "default") -> None:
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


@runtime_checkable
class ChainEnds(Protocol):
    """Word that a chain has ended, for whoever waits on its result in another process.

    Best effort and at most once: it only saves a waiter its polling (a waiter still reads
    the store, and polls it slowly as a backstop for word that never came).
    """

    async def announce(self, workflow_id: str) -> None:
        """Say that ``workflow_id``'s chain has ended (its final run record is written).
        Never raises: an announcement that cannot go out is dropped."""
        ...

    async def listen(self, on_end: Callable[[str], None]) -> None:
        """From now on (once this returns), call ``on_end(workflow_id)`` for every chain of
        the namespace announced as ended, until the backend closes."""
        ...
