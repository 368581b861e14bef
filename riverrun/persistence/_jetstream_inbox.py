"""The JetStream inbox: one subject per workflow id, timers as JetStream message schedules.

Design note. ``RIVERRUN_<NS>_INBOX`` holds ``rr.<ns>.in.<queue>.<partition>.<workflow_id>`` (signals, cancels,
child results, fired timers) and ``rr.<ns>.sched.<workflow_id>.<timer_id>`` (one pending
timer each). An inbox message's sequence is its stream sequence: strictly increasing per
workflow (not dense), and ``read(after=)`` is one batch direct get from ``after + 1``.

A timer is a message schedule (ADR-51, ``Nats-Schedule: @at <RFC3339>``) whose target is the
workflow's inbox subject, so the server itself delivers it: durably, once (the held message
is removed when it fires), across server restarts (a schedule due while the server was down
fires when it comes back), and at once if the time is already past. Scheduling the same
timer again replaces it (``Nats-Rollup: sub`` on its subject); cancelling purges the subject.
The fired message keeps our headers, so its kind and timestamp (the scheduled time) survive.

``watch(queue=, partition=)`` is one ordered push consumer on
``rr.<ns>.in.<queue>.<partition>.*`` (deliver new) for every workflow of a partition, never
one consumer per workflow: a worker watches the partitions it owns, routes what it sees to its
actors, which then ``read(after=cursor)`` to fill any gap.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from .._errors import CodecError
from ._codec import Codec
from ._jetstream_conn import JetStreamConnection, translate_errors
from ._jetstream_names import HDR_KIND, HDR_MSG_ID, HDR_TIMESTAMP, Names, escape_token
from ._model import InboxMessage
from ._partitions import DEFAULT_PARTITIONS, partition_of
from ._protocols import Clock

__all__ = ["JetStreamInbox"]

_READ_BATCH = 1000


def _parse_nats_time(value: str) -> datetime:
    """``2026-01-02T03:04:05.123456789Z`` (nanoseconds) -> an aware datetime."""
    head, _, frac = value.rstrip("Z").partition(".")
    micro = (frac + "000000")[:6] if frac else "000000"
    return datetime.fromisoformat(f"{head}.{micro}+00:00")


class JetStreamInbox:
    """``Inbox`` on a JetStream stream. Build it with ``open_jetstream_backend``."""

    def __init__(
        self,
        conn: JetStreamConnection,
        names: Names,
        codec: Codec,
        clock: Clock,
        *,
        partitions: int = DEFAULT_PARTITIONS,
    ) -> None:
        self._partitions = partitions
        self._conn = conn
        self._names = names
        self._codec = codec
        self._clock = clock
        self._stream = names.inbox_stream

    def __repr__(self) -> str:
        return f"<JetStreamInbox {self._stream}>"

    def _subject(self, workflow_id: str, queue: str) -> str:
        return self._names.inbox_subject(
            workflow_id, queue, partition_of(workflow_id, self._partitions)
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
        """Append a message and return its sequence.

        A repeated ``idempotency_id`` for the same workflow returns the first message's
        sequence and stores nothing — within the stream's duplicate window (2 minutes).
        """
        body = self._codec.dumps(_as_dict(data), what=f"{kind} message for {workflow_id}")
        headers = {HDR_KIND: kind, HDR_TIMESTAMP: self._clock.now().isoformat()}
        if idempotency_id is not None:
            headers[HDR_MSG_ID] = f"{escape_token(workflow_id)}:{idempotency_id}"
        subject = self._subject(workflow_id, queue)
        with translate_errors(self._conn, f"send {kind} to {workflow_id}"):
            ack = await self._conn.publish(subject, body, headers)
        return int(ack["seq"])

    async def read(
        self,
        workflow_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        queue: str = "default",
    ) -> list[InboxMessage]:
        """Messages with sequence > ``after``, in order (at most ``limit``)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        subject = self._subject(workflow_id, queue)
        out: list[InboxMessage] = []
        start = after + 1
        while limit is None or len(out) < limit:
            batch = _READ_BATCH if limit is None else min(_READ_BATCH, limit - len(out))
            with translate_errors(self._conn, f"read the inbox of {workflow_id}"):
                msgs, pending = await self._conn.direct_batch(
                    self._stream, subject, start_seq=start, batch=batch
                )
            for msg in msgs:
                headers = msg.headers or {}
                out.append(
                    self._decode(
                        workflow_id,
                        int(headers["Nats-Sequence"]),
                        msg,
                        headers.get("Nats-Time-Stamp"),
                        subject=subject,
                    )
                )
            if not msgs or pending == 0:
                break
            start = out[-1].sequence + 1
        return out

    async def last_sequence(self, workflow_id: str, *, queue: str = "default") -> int:
        """The sequence of the workflow's last inbox message (one direct get); 0 if none."""
        subject = self._subject(workflow_id, queue)
        with translate_errors(self._conn.url, f"read the last inbox message of {workflow_id}"):
            msg = await self._conn.direct_last(self._stream, subject)
        if msg is None:
            return 0
        return int((msg.headers or {})["Nats-Sequence"])

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
        """Have the server deliver ``send(workflow_id, kind, data)`` at ``at``, once.

        Scheduling an existing ``timer_id`` again replaces the pending schedule; a time in
        the past fires at once.
        """
        if at.tzinfo is None:
            raise ValueError("schedule() needs a timezone-aware time")
        body = self._codec.dumps(_as_dict(data), what=f"{kind} timer {timer_id} for {workflow_id}")
        when = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        headers = {
            "Nats-Schedule": f"@at {when}",
            "Nats-Schedule-Target": self._subject(workflow_id, queue),
            "Nats-Rollup": "sub",  # replaces an earlier schedule of the same timer
            HDR_KIND: kind,
            HDR_TIMESTAMP: at.isoformat(),
        }
        subject = self._names.schedule_subject(workflow_id, timer_id)
        with translate_errors(self._conn, f"schedule timer {timer_id} of {workflow_id}"):
            await self._conn.publish(subject, body, headers)

    async def cancel_schedule(self, workflow_id: str, timer_id: str) -> None:
        """Drop a pending schedule (nothing happens if it fired or never existed)."""
        subject = self._names.schedule_subject(workflow_id, timer_id)
        with translate_errors(self._conn, f"cancel timer {timer_id} of {workflow_id}"):
            await self._conn.purge(self._stream, subject=subject)

    @asynccontextmanager
    async def watch(
        self, *, queue: str | None = None, partition: int | None = None
    ) -> AsyncIterator[AsyncIterator[InboxMessage]]:
        """Every message sent (or fired) after entering to one partition of a queue (or,
        without them, to any workflow), from one shared ordered consumer. At-least-once and
        a hint: read with ``read(after=)`` to fill gaps.
        """
        if queue is None:
            subject = self._names.inbox_filter
        else:
            subject = self._names.inbox_partition_filter(queue, partition or 0)
        with translate_errors(self._conn, "watch the inboxes"):
            self._conn.check_connected("watch the inboxes")
            sub = await self._conn.js.subscribe(
                subject,
                stream=self._stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
                # nats-py recreates an ordered consumer after two missed heartbeats: 1 s
                # heartbeats make a worker hear its inbox again ~2 s after a server restart
                # (the default 5 s left it deaf for 10-20 s)
                idle_heartbeat=1.0,
            )
        try:
            yield self._messages(sub.messages)
        finally:
            # (the connection may be gone: then there is nothing left to free)
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(self._conn.timeout),
                contextlib.suppress(Exception),
            ):
                await sub.unsubscribe()

    async def _messages(self, msgs: AsyncIterator[Msg]) -> AsyncIterator[InboxMessage]:
        # Never raises on a message: anyone allowed to publish on the inbox subjects could
        # otherwise end every worker's watch. A bad one is yielded with ``problem`` set.
        async for msg in msgs:
            meta = msg.metadata
            sequence = meta.sequence.stream
            try:
                _, partition, workflow_id = self._names.parse_inbox_subject(msg.subject)
                if partition != partition_of(workflow_id, self._partitions):
                    raise ValueError(
                        f"{msg.subject!r} names partition {partition}, but workflow "
                        f"{workflow_id!r} belongs to partition "
                        f"{partition_of(workflow_id, self._partitions)}"
                    )
            except ValueError as exc:
                yield InboxMessage(
                    workflow_id="",
                    sequence=sequence,
                    kind="",
                    data={},
                    timestamp=meta.timestamp or self._clock.now(),
                    problem=str(exc),
                    subject=msg.subject,
                )
                continue
            yield self._decode(
                workflow_id, sequence, msg, None, meta.timestamp, subject=msg.subject
            )

    async def purge(self, workflow_id: str, *, up_to: int, queue: str = "default") -> None:
        """Drop the workflow's messages with sequence <= ``up_to``."""
        if up_to <= 0:
            return
        subject = self._subject(workflow_id, queue)
        with translate_errors(self._conn, f"purge the inbox of {workflow_id}"):
            await self._conn.purge(self._stream, subject=subject, seq=up_to + 1)

    def _decode(
        self,
        workflow_id: str,
        sequence: int,
        msg: Msg,
        nats_time: str | None,
        stored_at: datetime | None = None,
        *,
        subject: str,
    ) -> InboxMessage:
        """Decode one message; one that does not decode comes back with ``problem`` set
        (never an exception: the caller quarantines it and moves on)."""
        headers = msg.headers or {}
        what = f"inbox message {sequence} of {workflow_id}"
        try:
            kind, timestamp, data = self._decode_fields(headers, msg.data, what, nats_time)
        except Exception as exc:  # foreign bytes may break a decoder in any way
            return InboxMessage(
                workflow_id=workflow_id,
                sequence=sequence,
                kind="",
                data={},
                timestamp=stored_at or self._clock.now(),
                problem=str(exc) if isinstance(exc, CodecError) else f"cannot decode {what}: {exc!r}",
                subject=subject,
            )
        queue, partition = "default", 0
        with contextlib.suppress(ValueError):
            queue, partition, _ = self._names.parse_inbox_subject(subject)
        return InboxMessage(
            workflow_id=workflow_id,
            sequence=sequence,
            kind=kind,
            data=data,
            timestamp=timestamp if timestamp is not None else stored_at or self._clock.now(),
            subject=subject,
            queue=queue,
            partition=partition,
        )

    def _decode_fields(
        self, headers: Mapping[str, str], body: bytes, what: str, nats_time: str | None
    ) -> tuple[str, datetime | None, dict[str, Any]]:
        try:
            kind = headers[HDR_KIND]
            stamp = headers.get(HDR_TIMESTAMP)
            timestamp: datetime | None = None
            if stamp is not None:
                timestamp = datetime.fromisoformat(stamp)
                if timestamp.tzinfo is None:
                    raise ValueError("naive timestamp")
            elif nats_time is not None:
                timestamp = _parse_nats_time(nats_time)
        except (KeyError, ValueError) as exc:
            raise CodecError(f"cannot decode {what}: missing or bad riverrun headers") from exc
        data = self._codec.loads(body, what=what)
        if not isinstance(data, dict):
            raise CodecError(f"cannot decode {what}: its data is not a mapping")
        return kind, timestamp, data


def _as_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    return data if type(data) is dict else dict(data)
