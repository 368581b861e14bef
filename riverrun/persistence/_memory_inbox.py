"""The in-memory inbox and its durable (within the process) timers.

Design note: one timer task per inbox, not one per timer. It sleeps, through the injected
clock, until the earliest pending schedule, and wakes early whenever the set of schedules
changes (an ``anyio.Event`` replaced on each change), so a virtual clock whose
``sleep_until`` returns when a test advances time drives it exactly like real time. The task
is owned by whoever runs :meth:`MemoryInbox.run_timers` — ``open_memory_backend`` runs it in
its task group.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import attrs
from anyio.streams.memory import MemoryObjectSendStream

from ._codec import Codec
from ._model import InboxMessage
from ._partitions import DEFAULT_PARTITIONS, partition_of
from ._protocols import Clock

__all__ = ["MemoryInbox"]


@attrs.frozen(kw_only=True)
class _Schedule:
    at: datetime
    kind: str
    data: Mapping[str, Any]
    #: tie-break between schedules due at the same time: the order they were made
    order: int


class MemoryInbox:
    """``Inbox`` kept in process memory.

    Args:
        clock: when schedules are due, and the timestamp of each message.
        codec: if given, message data is round-tripped through it, so data the codec cannot
            carry fails at ``send``/``schedule`` as it would against a real store.
    """

    def __init__(
        self, clock: Clock, *, codec: Codec | None = None, partitions: int = DEFAULT_PARTITIONS
    ) -> None:
        self._clock = clock
        self._codec = codec
        self._partitions = partitions
        self._sequence = 0  # one counter for every workflow: strictly increasing per workflow
        #: keyed by (queue, workflow id), as a subject is on JetStream
        self._messages: dict[tuple[str, str], list[InboxMessage]] = {}
        self._sent_ids: dict[tuple[str, str], dict[str, int]] = {}
        self._watchers: dict[
            MemoryObjectSendStream[InboxMessage], tuple[str | None, int | None]
        ] = {}
        self._schedules: dict[tuple[str, str], tuple[str, _Schedule]] = {}
        self._schedule_order = 0
        self._changed: anyio.Event | None = None  # created by the timer task (needs a loop)
        self._timers_running = False

    def __repr__(self) -> str:
        messages = sum(len(m) for m in self._messages.values())
        return (
            f"<MemoryInbox messages={messages} schedules={len(self._schedules)} "
            f"watchers={len(self._watchers)} timers={'running' if self._timers_running else 'stopped'}>"
        )

    async def send(
        self,
        workflow_id: str,
        kind: str,
        data: Mapping[str, Any],
        *,
        idempotency_id: str | None = None,
        queue: str = "default",
    ) -> int:
        """Append a message and return its sequence; a repeated ``idempotency_id`` for the
        same workflow returns the first sequence and stores nothing."""
        await anyio.lowlevel.checkpoint()
        data = self._roundtrip(data, f"{kind} message for {workflow_id}")
        if idempotency_id is not None:
            seen = self._sent_ids.get((queue, workflow_id), {}).get(idempotency_id)
            if seen is not None:
                return seen
        sequence = self._deliver(queue, workflow_id, kind, data)
        if idempotency_id is not None:
            self._sent_ids.setdefault((queue, workflow_id), {})[idempotency_id] = sequence
        return sequence

    async def read(
        self,
        workflow_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        queue: str = "default",
    ) -> list[InboxMessage]:
        """Messages with sequence > ``after``, in order (at most ``limit``)."""
        await anyio.lowlevel.checkpoint()
        selected = [m for m in self._messages.get((queue, workflow_id), ()) if m.sequence > after]
        return selected if limit is None else selected[:limit]

    async def last_sequence(self, workflow_id: str, *, queue: str = "default") -> int:
        """The sequence of the workflow's last inbox message; 0 if it holds none."""
        await anyio.lowlevel.checkpoint()
        messages = self._messages.get((queue, workflow_id))
        return messages[-1].sequence if messages else 0

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
        """Deliver ``send(workflow_id, kind, data)`` at ``at`` (per the clock), once.

        Scheduling an existing ``timer_id`` again replaces the pending schedule.

        Raises:
            RuntimeError: no task runs this inbox's timers (see :meth:`run_timers`).
            ValueError: ``at`` is naive.
        """
        await anyio.lowlevel.checkpoint()
        if at.tzinfo is None:
            raise ValueError("schedule() needs a timezone-aware time")
        if not self._timers_running:
            raise RuntimeError(
                "this MemoryInbox's timers are not running: open it with open_memory_backend(),"
                " or start inbox.run_timers in a task group"
            )
        data = self._roundtrip(data, f"{kind} timer {timer_id} for {workflow_id}")
        self._schedule_order += 1
        self._schedules[(workflow_id, timer_id)] = (
            queue,
            _Schedule(at=at, kind=kind, data=data, order=self._schedule_order),
        )
        self._wake()

    async def cancel_schedule(self, workflow_id: str, timer_id: str) -> None:
        """Drop a pending schedule (nothing happens if it fired or never existed)."""
        await anyio.lowlevel.checkpoint()
        if self._schedules.pop((workflow_id, timer_id), None) is not None:
            self._wake()

    @asynccontextmanager
    async def watch(
        self, *, queue: str | None = None, partition: int | None = None
    ) -> AsyncIterator[AsyncIterator[InboxMessage]]:
        """Every message sent (or fired) after entering, until exit: to one partition of a
        queue, or (without them) to any workflow."""
        send, receive = anyio.create_memory_object_stream[InboxMessage](math.inf)
        self._watchers[send] = (queue, partition)
        try:
            async with receive:
                yield receive
        finally:
            self._watchers.pop(send, None)
            send.close()

    async def purge(self, workflow_id: str, *, up_to: int, queue: str = "default") -> None:
        """Drop the workflow's messages with sequence <= ``up_to``."""
        await anyio.lowlevel.checkpoint()
        key = (queue, workflow_id)
        kept = [m for m in self._messages.get(key, ()) if m.sequence > up_to]
        if kept:
            self._messages[key] = kept
        else:
            self._messages.pop(key, None)

    async def run_timers(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Fire schedules when they are due, until cancelled. Start it with ``tg.start``."""
        if self._timers_running:
            raise RuntimeError("this MemoryInbox's timers are already running")
        self._timers_running = True
        try:
            task_status.started()
            while True:
                self._changed = changed = anyio.Event()
                due = self._fire_due()
                if due is None:
                    await changed.wait()
                    continue
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_cancel_when_set, changed, tg.cancel_scope)
                    await self._clock.sleep_until(due)
                    tg.cancel_scope.cancel()
        finally:
            self._timers_running = False
            self._changed = None

    # -- internals -------------------------------------------------------------------------

    def _fire_due(self) -> datetime | None:
        """Deliver every due schedule; return when the next one is due, if any."""
        now = self._clock.now()
        due = sorted(
            (item for item in self._schedules.items() if item[1][1].at <= now),
            key=lambda item: (item[1][1].at, item[1][1].order),
        )
        for (workflow_id, timer_id), (queue, schedule) in due:
            del self._schedules[(workflow_id, timer_id)]
            self._deliver(queue, workflow_id, schedule.kind, schedule.data)
        return min((s.at for _, s in self._schedules.values()), default=None)

    def _deliver(self, queue: str, workflow_id: str, kind: str, data: Mapping[str, Any]) -> int:
        self._sequence += 1
        partition = partition_of(workflow_id, self._partitions)
        message = InboxMessage(
            workflow_id=workflow_id,
            sequence=self._sequence,
            kind=kind,
            data=data,
            timestamp=self._clock.now(),
            queue=queue,
            partition=partition,
        )
        self._messages.setdefault((queue, workflow_id), []).append(message)
        for watcher, (want_queue, want_partition) in list(self._watchers.items()):
            if want_queue is not None and (want_queue, want_partition) != (queue, partition):
                continue
            try:
                watcher.send_nowait(message)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._watchers.pop(watcher, None)
        return self._sequence

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _roundtrip(self, data: Mapping[str, Any], what: str) -> Mapping[str, Any]:
        if self._codec is None:
            return dict(data)
        decoded: dict[str, Any] = self._codec.loads(
            self._codec.dumps(dict(data), what=what), what=what
        )
        return decoded


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
