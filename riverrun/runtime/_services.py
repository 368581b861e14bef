"""What a runtime's client, worker and workflow instances share: the backend, the codec, the
registry, the options, and the few run-store operations they all need (start a chain, move a
chain head, update a run record, apply retention, wait for a chain to end)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._errors import ConcurrencyConflict, WorkflowAlreadyRunning
from ..persistence import (
    DEFAULT_QUEUE,
    Backend,
    ChainHead,
    NewEvent,
    RunKey,
    RunStatus,
    StoredEvent,
    Versioned,
    WorkflowRun,
    as_stored,
    partition_of,
)
from ..persistence._codec import Codec
from ._definitions import WorkflowRegistry
from ._events import EventType
from ._machine import WorkflowMachine
from ._membership import MembersCache
from ._options import RuntimeOptions, validate_workflow_id
from ._payloads import Payloads
from ._projection import rebuild_run
from ._telemetry import Telemetry, carrier, end_span

if TYPE_CHECKING:
    from opentelemetry.context import Context

_log = logging.getLogger("riverrun.client")

__all__ = ["STOPPING", "ChainEnd", "Services"]

#: inbox message kinds that stop a run (also the parent-close policies that send one)
STOPPING = frozenset({"cancel", "terminate"})


@attrs.define(eq=False)
class ChainEnd:
    """The end of a chain started through this process, as its worker here recorded it."""

    #: the chain's first run (``None``: a waiter's placeholder, not made by a start)
    first_run_id: str | None = None
    event: anyio.Event = attrs.field(factory=anyio.Event)
    #: the final run record as written; ``None`` when the end happened elsewhere (another
    #: worker hosted the chain), so the waiter reads the store
    run: WorkflowRun | None = None


@attrs.define(eq=False)
class Services:
    backend: Backend
    codec: Codec
    registry: WorkflowRegistry
    options: RuntimeOptions
    payloads: Payloads
    force_continue: Callable[[WorkflowMachine], str | None] | None = None
    passivation_enabled: bool = True
    #: a worker runs in this process (chain ends are announced through done events)
    local_worker: bool = False
    #: this runtime's identity as a lease owner
    worker_id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    _done: dict[str, ChainEnd] = attrs.field(factory=dict)
    #: records and heads this process wrote last, with their revisions: an update can
    #: compare-and-set without reading first (a conflict falls back to reading)
    _known_runs: dict[str, Versioned[WorkflowRun]] = attrs.field(factory=dict)
    # final records a waiting handle was given before they were written (the projection
    # follows): what this process reads of those runs meanwhile
    _ahead: dict[str, WorkflowRun] = attrs.field(factory=dict)
    _known_heads: dict[str, Versioned[ChainHead]] = attrs.field(factory=dict)
    #: set by the worker while it runs: host a chain (workflow id, queue) just started in
    #: this process, whose first event it takes from ``take_fresh`` (False: it cannot, e.g.
    #: it does not own the chain's partition; send the start message)
    on_started: Callable[[str, str], bool] | None = None
    #: first events of chains started here, for the local worker to host without reading them
    _fresh: dict[str, StoredEvent] = attrs.field(factory=dict)
    telemetry: Telemetry = attrs.field(factory=Telemetry)
    #: the queues this process's worker serves (set by the worker)
    served_queues: frozenset[str] = frozenset()
    members_cache: MembersCache = attrs.field(factory=MembersCache)

    _step_limiter: anyio.CapacityLimiter | None = None
    _rehydrating: anyio.CapacityLimiter | None = None
    #: listening for chain ends announced by the namespace's workers (``watch_ends``):
    #: set once it listens, ``False`` if it cannot
    _ends: asyncio.Future[bool] | None = None

    @property
    def clock(self) -> Any:
        return self.backend.clock

    @property
    def step_limiter(self) -> anyio.CapacityLimiter:
        """The worker-wide bound on steps running at once (``max_concurrent_steps``)."""
        if self._step_limiter is None:
            self._step_limiter = anyio.CapacityLimiter(self.options.max_concurrent_steps)
        return self._step_limiter

    @property
    def rehydrating(self) -> anyio.CapacityLimiter:
        """The worker-wide bound on chains being read back from the store at once (their head
        and history): a claimed partition of thousands of chains is resumed a batch at a time,
        not with thousands of reads going out together (they would time out together)."""
        if self._rehydrating is None:
            self._rehydrating = anyio.CapacityLimiter(_REHYDRATING)
        return self._rehydrating

    # -- chains -------------------------------------------------------------------------------

    async def start_chain(
        self,
        workflow_name: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        workflow_id: str,
        version: str | None = None,
        parent: Mapping[str, Any] | None = None,
        idempotent_run_id: str | None = None,
        trace_parent: Context | None = None,
        queue: str | None = None,
    ) -> str:
        """Write a new chain's first run and point the head at it. Returns its run id.

        ``queue``: the task queue it is served on (default: the registered workflow's, else
        ``default``).

        Traced as ``start NAME`` (``start_child NAME`` under ``trace_parent``, the parent's
        run span); the span's context goes into the first event for the run to continue.
        """
        span = self.telemetry.start_span(
            workflow_name, workflow_id, child=parent is not None, context=trace_parent
        )
        try:
            run_id = await self._start_chain(
                workflow_name,
                args,
                kwargs,
                workflow_id=workflow_id,
                version=version,
                parent=parent,
                idempotent_run_id=idempotent_run_id,
                trace=carrier(span),
                queue=queue or self.queue_of_type(workflow_name),
            )
        except BaseException as exc:
            end_span(span, exc)
            raise
        end_span(span)
        return run_id

    async def _start_chain(
        self,
        workflow_name: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        workflow_id: str,
        version: str | None,
        parent: Mapping[str, Any] | None,
        idempotent_run_id: str | None,
        trace: Mapping[str, str] | None,
        queue: str = "default",
    ) -> str:
        """``start_chain`` (see there).

        The log write comes before the head's compare-and-set: the head is what commits a
        start, so two racing starts of one id leave exactly one chain. The run record is
        created while the inbox cursor is read (a crash before the head commits leaves a
        record of a chain that never started, as a crash between record and head always did).

        Critical path: 3 store round trips (cursor + record, first event, head). A chain this
        process's worker hosts gets its first event in memory (``take_fresh``) and no start
        message; any other gets the start message (a 4th).
        """
        validate_workflow_id(workflow_id)
        runs = self.backend.runs
        head = None
        if idempotent_run_id is not None:
            head = await runs.get_head(workflow_id)
            if head is not None and head.value.first_run_id == idempotent_run_id:
                # a child start redone after a crash, which may have come between the head's
                # commit and the start message: without that message no worker hosts it
                await self.announce_start(workflow_id, idempotent_run_id, head.value.queue)
                return idempotent_run_id
            if head is not None:
                await self._check_not_running(workflow_id, head.value.current_run_id)
        run_id = idempotent_run_id or uuid.uuid4().hex
        # A new chain starts after everything addressed to earlier chains of this id: their
        # unconsumed signals, cancels and child results stay behind its inbox cursor. (A
        # message sent to an earlier chain after this read and before the head moves, which
        # needs a sender that saw that chain running, still reaches the new chain.)
        data = {
            "workflow_name": workflow_name,
            "version": version,
            "args": list(args),
            "kwargs": dict(kwargs),
            "execution": 1,
            "continued_from_run_id": None,
            "parent": dict(parent) if parent else None,
            "queue": queue,
        }
        if trace:
            data["trace"] = dict(trace)  # the start's span, parent of the runs' spans
        packed = await self.payloads.pack_data(data, f"workflow {workflow_name!r} arguments")
        now = self.clock.now()
        record = WorkflowRun(
            run_id=run_id,
            workflow_id=workflow_id,
            workflow_name=workflow_name,
            status=RunStatus.RUNNING,
            execution=1,
            created_at=now,
            parent_run_id=parent["run_id"] if parent else None,
            parent_workflow_id=parent["workflow_id"] if parent else None,
            version=version,
            queue=queue,
        )
        key = RunKey(workflow_id=workflow_id, run_id=run_id)

        async def create_record() -> None:
            try:
                await self.create_run(record)
            except ConcurrencyConflict:
                if idempotent_run_id is None:
                    raise

        cursor: list[int] = []

        async def read_cursor() -> None:
            cursor.append(await self.backend.inbox.last_sequence(workflow_id, queue=queue))

        try:
            await _both(create_record, read_cursor)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await runs.delete_run(run_id)
            raise
        inbox_cursor = cursor[0]
        packed["inbox_cursor"] = inbox_cursor
        first = NewEvent(type=EventType.WORKFLOW_STARTED.value, timestamp=now, data=packed)
        partition = self.partition_of(workflow_id)

        async def append_first() -> None:
            await self.backend.events.append(
                key, first, expected_last=0, idempotency_id=f"{run_id}:1"
            )

        async def add_to_index() -> None:
            await self.backend.owners.index_add(queue, partition, workflow_id, run_id)

        # The partition's index of running chains gets the chain before the head commits it
        # (and concurrently with the log write): whoever claims the partition after a crash
        # finds it there. An entry whose start then fails is dropped here, or by the claimer.
        try:
            await _both(append_first, add_to_index)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await runs.delete_run(run_id)
                await self.backend.owners.index_remove(queue, partition, workflow_id, run_id)
            raise
        new_head = ChainHead(
            workflow_id=workflow_id,
            workflow_name=workflow_name,
            first_run_id=run_id,
            current_run_id=run_id,
            queue=queue,
        )
        try:
            await self._commit_head(new_head, head.revision if head else None)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.backend.events.delete(key)
                await runs.delete_run(run_id)
                await self.backend.owners.index_remove(queue, partition, workflow_id, run_id)
            raise
        # (a chain on a queue this worker does not serve is hosted elsewhere: its end is read)
        if self.local_worker and workflow_name in self.registry and queue in self.served_queues:
            self._done[workflow_id] = ChainEnd(run_id)  # this worker will announce the end
            if self.on_started is not None:
                # the first event as a replay would read it: the worker hosts the run from it
                # (only if it owns the chain's partition; else the start message goes out)
                _bounded_put(self._fresh, workflow_id, as_stored(self.codec, key, 1, first))
                if self.on_started(workflow_id, queue):
                    return run_id
                self._fresh.pop(workflow_id, None)
        await self.announce_start(workflow_id, run_id, queue)
        return run_id

    def take_fresh(self, workflow_id: str) -> StoredEvent | None:
        """The first event of a chain this process just started (once), if any."""
        return self._fresh.pop(workflow_id, None)

    async def announce_start(self, workflow_id: str, run_id: str, queue: str) -> None:
        """Tell the workers of the queue that a chain was started (sent again by a redone
        start: the inbox drops the copy within its duplicate window, the worker ignores it)."""
        await self.backend.inbox.send(
            workflow_id,
            "start",
            {"run_id": run_id},
            idempotency_id=f"start:{run_id}",
            queue=queue,
        )

    async def close_child(
        self, parent_workflow_id: str, parent_run_id: str, child_id: str, policy: str
    ) -> None:
        """Apply a parent-close policy to one child of a run that ended (idempotent per run
        and child): ``cancel`` and ``terminate`` are sent as the inbox message of that kind,
        ``abandon`` leaves the child alone."""
        if policy in STOPPING:
            await self.backend.inbox.send(
                child_id,
                policy,
                {"reason": f"parent {parent_workflow_id} closed ({policy})"},
                idempotency_id=f"close:{parent_run_id}:{child_id}",
                queue=await self.queue_of(child_id),
            )

    # -- queues and partitions -----------------------------------------------------------------

    def partition_of(self, workflow_id: str) -> int:
        return partition_of(workflow_id, self.backend.partitions)

    def queue_of_type(self, workflow_name: str) -> str:
        """The queue a registered workflow type is served on (``default`` if unknown here)."""
        if workflow_name in self.registry:
            return self.registry.get(workflow_name).queue
        return DEFAULT_QUEUE

    async def queue_of(self, workflow_id: str) -> str:
        """The queue a chain is served on, from its head (``default`` if it has none)."""
        head = self._known_heads.get(workflow_id)
        if head is None:
            head = await self.backend.runs.get_head(workflow_id)
        return head.value.queue if head is not None else DEFAULT_QUEUE

    async def _commit_head(self, head: ChainHead, revision: int | None) -> None:
        """Point the chain head at a new chain: the step that commits a start.

        The common case, a new id, is one create. An existing head is replaced only when its
        chain has ended; a start racing another for the same id loses here.
        """
        runs = self.backend.runs
        try:
            self._remember_head(head, await runs.put_head(head, expected_revision=revision))
            return
        except ConcurrencyConflict:
            if revision is not None:
                raise self._already_running(head.workflow_id, "another client") from None
        existing = await runs.get_head(head.workflow_id)
        if existing is None:
            raise self._already_running(head.workflow_id, "another client")
        await self._check_not_running(head.workflow_id, existing.value.current_run_id)
        try:
            revision = await runs.put_head(head, expected_revision=existing.revision)
        except ConcurrencyConflict:
            raise self._already_running(head.workflow_id, "another client") from None
        self._remember_head(head, revision)

    async def _check_not_running(self, workflow_id: str, current_run_id: str) -> None:
        current = await self.read_run(current_run_id, workflow_id=workflow_id)
        if (
            current is None
            or not current.status.is_terminal
            or current.status == RunStatus.CONTINUED_AS_NEW
        ):
            raise self._already_running(workflow_id, f"run {current_run_id}")

    @staticmethod
    def _already_running(workflow_id: str, holder: str) -> WorkflowAlreadyRunning:
        return WorkflowAlreadyRunning(
            f"workflow {workflow_id!r} is already running ({holder}); use "
            f"client.get_handle({workflow_id!r}) to reach it, or pick another workflow_id"
        )

    # -- reading records (rebuilt from the log when missing) -----------------------------------

    async def read_run(
        self,
        run_id: str,
        *,
        workflow_id: str | None = None,
        workflow_name: str = "",
        execution: int = 0,
    ) -> WorkflowRun | None:
        """A run's record; if it is missing and ``workflow_id`` is known, rebuilt from the
        run's events (``workflow_name``/``execution``: for a run truncated to its link).

        ``None`` when neither the record nor (with ``workflow_id``) any event exists.
        """
        record = await self.backend.runs.get_run(run_id)
        if record is not None:
            return record.value
        if workflow_id is None:
            return None
        return await rebuild_run(
            self.backend,
            workflow_id,
            run_id,
            workflow_name=workflow_name,
            execution=execution,
        )

    async def follow(self, run: WorkflowRun) -> WorkflowRun:
        """The last run reached from ``run`` through its continue-as-new links."""
        while run.continued_to_run_id:
            following = await self.read_run(
                run.continued_to_run_id,
                workflow_id=run.workflow_id,
                workflow_name=run.workflow_name,
                execution=run.execution + 1,
            )
            if following is None:
                break  # the successor is being rolled forward from the link
            run = following
        return run

    async def create_run(self, run: WorkflowRun) -> None:
        """Create a run record (``ConcurrencyConflict`` if it exists) and remember it."""
        revision = await self.backend.runs.put_run(run, expected_revision=None)
        self._remember_run(run, revision)

    async def update_run(self, run_id: str, **changes: Any) -> WorkflowRun | None:
        """Compare-and-set a run record; one write when this process wrote it last.

        Returns the record as written, ``None`` if there is no such run."""
        runs = self.backend.runs
        current = self._known_runs.pop(run_id, None)
        while True:
            if current is None:
                current = await runs.get_run(run_id)
                if current is None:
                    return None
            updated = attrs.evolve(current.value, **changes)
            if updated == current.value:
                return updated
            try:
                revision = await runs.put_run(updated, expected_revision=current.revision)
            except ConcurrencyConflict:
                current = None
                continue
            if not updated.status.is_terminal:
                self._remember_run(updated, revision)
            return updated

    def expected_record(self, run_id: str, **changes: Any) -> WorkflowRun | None:
        """The record ``update_run(run_id, **changes)`` will write, if this process wrote the
        record last (else ``None``: unknown without a read)."""
        current = self._known_runs.get(run_id)
        return None if current is None else attrs.evolve(current.value, **changes)

    def run_ahead(self, run: WorkflowRun) -> None:
        """``run``'s final record is decided (its terminal event is on the log) and about to
        be written: until ``run_written``, reads of it in this process see it already."""
        _bounded_put(self._ahead, run.run_id, run)

    def run_written(self, run_id: str) -> None:
        self._ahead.pop(run_id, None)

    def newest(self, run: WorkflowRun) -> WorkflowRun:
        """``run`` as read from the store, or its final record if this process has decided it
        and not written it yet (a handle's ``result()`` returned: ``describe()`` agrees)."""
        if run.status.is_terminal:
            return run
        return self._ahead.get(run.run_id, run)

    async def move_head(self, workflow_id: str, run_id: str) -> None:
        runs = self.backend.runs
        head = self._known_heads.pop(workflow_id, None)
        while True:
            if head is None:
                head = await runs.get_head(workflow_id)
                if head is None:
                    return
            if head.value.current_run_id == run_id:
                self._remember_head(head.value, head.revision)
                return
            moved = attrs.evolve(head.value, current_run_id=run_id)
            try:
                revision = await runs.put_head(moved, expected_revision=head.revision)
            except ConcurrencyConflict:
                head = None
                continue
            self._remember_head(moved, revision)
            return

    def _remember_run(self, run: WorkflowRun, revision: int) -> None:
        _bounded_put(self._known_runs, run.run_id, Versioned(value=run, revision=revision))

    def _remember_head(self, head: ChainHead, revision: int) -> None:
        _bounded_put(self._known_heads, head.workflow_id, Versioned(value=head, revision=revision))

    def forget(self, workflow_id: str) -> None:
        """Drop cached store state of a chain that ended."""
        self._known_heads.pop(workflow_id, None)

    async def apply_retention(self, workflow_id: str, previous_run_id: str) -> None:
        """Truncate earlier runs that fall outside the retention window to their link event."""
        retention = self.options.retention
        if retention.keep_last == 0 and retention.keep_newer_than is None:
            # the default: every earlier run is cut to its link as soon as it ends
            await self.backend.events.truncate(
                RunKey(workflow_id=workflow_id, run_id=previous_run_id), keep_last=1
            )
            return
        cutoff: datetime | None = None
        if retention.keep_newer_than is not None:
            cutoff = self.clock.now() - retention.keep_newer_than
        run_id: str | None = previous_run_id
        index = 0
        while run_id is not None:
            record = await self.backend.runs.get_run(run_id)
            if record is None:
                return
            run = record.value
            kept = index < retention.keep_last or (
                cutoff is not None and run.completed_at is not None and run.completed_at >= cutoff
            )
            key = RunKey(workflow_id=workflow_id, run_id=run_id)
            if not kept:
                events = await self.backend.events.read(key, limit=2)
                if len(events) <= 1:
                    return  # already truncated: everything before it was handled earlier
                await self.backend.events.truncate(key, keep_last=1)
            run_id = run.continued_from_run_id
            index += 1

    # -- waiting for chains to end (same process) ----------------------------------------------

    def notify_done(self, workflow_id: str, final: WorkflowRun | None = None) -> None:
        """The chain ended (``final``: its last run record, as this process wrote it)."""
        end = self._done.pop(workflow_id, None)
        if end is not None:
            end.run = final
            end.event.set()

    async def watch_ends(self) -> bool:
        """Listen (once, from the first call on) for the chain ends the namespace's workers
        announce, setting the done events of the chains waited on here; whether it listens.

        Best effort: a backend that cannot (a user without the permission to subscribe, a
        connection lost) leaves the waiters to poll the store, as before.
        """
        if self._ends is None:
            self._ends = asyncio.get_running_loop().create_future()
            try:
                # (a chain this process's worker ended gave the waiters here its final record
                # already: a waiter still there when the word comes reads the store)
                await self.backend.ends.listen(self.notify_done)
            except Exception as exc:
                _log.warning(
                    "not listening for chain ends (result waiters poll the store): %s: %s",
                    type(exc).__name__,
                    exc,
                )
                self._ends.set_result(False)
            except BaseException:
                self._ends.cancel()
                self._ends = None  # cancelled: the next waiter tries again
                raise
            else:
                self._ends.set_result(True)
        return await asyncio.shield(self._ends)

    async def announce_end(self, workflow_id: str) -> None:
        """Tell the result waiters of other processes (``watch_ends``) that the chain's final
        record is written."""
        await self.backend.ends.announce(workflow_id)

    def announced_end(self, workflow_id: str) -> ChainEnd | None:
        """What this process's worker sets when the chain it started ends, if any."""
        return self._done.get(workflow_id)

    def done_event(self, workflow_id: str) -> anyio.Event:
        end = self._done.get(workflow_id)
        if end is None:
            end = self._done[workflow_id] = ChainEnd()
        return end.event


_CACHE_MAX = 10_000


async def _both(first: Callable[[], Awaitable[None]], second: Callable[[], Awaitable[None]]) -> None:
    """Run both concurrently (one round trip's wait); the first error is raised as itself.

    ``second`` runs in a plain asyncio task (an anyio task group costs a scope, an event and
    two task lookups per task, on every start): it is cancelled and waited for if ``first``
    fails or this is cancelled, and a cancellation reaches it through the ``await``.
    """
    other = asyncio.ensure_future(second())
    try:
        await first()
    except BaseException:
        other.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait((other,))
        if not other.cancelled():
            other.exception()  # retrieved: the first error is the one raised
        raise
    await other


_REHYDRATING = 32  # chains read back at once per worker


def _bounded_put(cache: dict[str, Any], key: str, value: Any) -> None:
    cache.pop(key, None)
    if len(cache) >= _CACHE_MAX:
        for old in list(cache)[: _CACHE_MAX // 2]:  # oldest first: dicts keep insertion order
            del cache[old]
    cache[key] = value
