"""The JetStream event log: one subject per run, fenced appends, batch-direct-get reads.

Design note. Every run is one subject, ``rr.<ns>.ev.<workflow_id>.<run_id>``, of the stream
``RIVERRUN_<NS>_EVENTS``. An event is one message: the shared envelope (``_envelope``) as the
body, and headers ``Rr-Seq`` (the per-run sequence callers see), ``Rr-Type``, ``Nats-Msg-Id``
(the idempotency id, scoped to the run because JetStream dedupes stream-wide) and
``Nats-Expected-Last-Subject-Sequence`` — the *stream* sequence of the run's last message,
which is the fence: the server stores the event only if nobody appended to the run since.

The fence needs that stream sequence, so the log caches ``(per-run seq, stream seq, last
Msg-Id)`` per run; the writer that appends keeps it current from its acks, so the hot path is
exactly one request. A cold or stale cache costs one direct get of the subject's last
message. When the server answers 10071 ("wrong last sequence") the log reads the subject's
last message: if its Msg-Id is ours, this was a retry whose ack was lost (the fence check runs
before Msg-Id dedup, so a retry never gets a duplicate ack), and its sequence is returned;
otherwise another writer won and the caller gets ``ConcurrencyConflict``.

Foreign messages. Anyone allowed to publish on a run's subject can put a message there that
riverrun did not write. A message is riverrun's if it is a truncation marker or carries a valid
``Rr-Seq`` and a ``Nats-Msg-Id`` scoped to the run; anything else is foreign: reads skip it
and report it to the backend's quarantine (logged once, counted), and the tail — the fence —
is the last event of riverrun's, at the stream sequence of whatever message is last on the
subject. So a foreign message neither hides recorded events from a replay nor makes the
owner's next append look like a lost race: the append is fenced again after it. (A message
that claims to be riverrun's but does not decode is a corrupt history: ``CodecError``.)

Truncation keeps the per-run numbers: ``keep_last >= 1`` purges the subject keeping the tail;
``keep_last == 0`` rolls the subject up into one body-less marker message that remembers the
last sequence and Msg-Id, so the run's numbering (and the fence) survive an empty history.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Final

from nats.aio.msg import Msg

from .._errors import CodecError, ConcurrencyConflict
from ._codec import Codec
from ._envelope import decode_event, encode_event
from ._jetstream_conn import (
    ERR_BATCH_DUPLICATE_MSG_ID,
    WRONG_LAST_SEQUENCE,
    JetStreamConnection,
    JsApiError,
    translate_errors,
)
from ._jetstream_names import (
    HDR_EXPECTED_LAST_SUBJECT_SEQ,
    HDR_LAST_ID,
    HDR_MARKER,
    HDR_MSG_ID,
    HDR_SEQ,
    HDR_TYPE,
    Names,
    escape_token,
)
from ._model import Append, NewEvent, RunKey, StoredEvent
from ._quarantine import Quarantine, QuarantinedMessage

__all__ = ["JetStreamEventLog"]

_READ_BATCH: Final = 2000
_CACHE_MAX_RUNS: Final = 100_000
_MAX_ATOMIC: Final = 1000  # the server's limit on messages per atomic batch
#: appends fenced again after foreign messages keep arriving on a run's subject, at most
_FOREIGN_RETRIES: Final = 5


class _Run:
    """What the log knows about one run: its subject and (maybe stale) tail."""

    __slots__ = ("id_prefix", "key", "last_id", "seq", "stream_seq", "subject")

    def __init__(self, key: RunKey, subject: str, id_prefix: str) -> None:
        self.key = key
        self.subject = subject
        self.id_prefix = id_prefix
        self.seq: int | None = None  # None: unknown
        self.stream_seq = 0
        self.last_id: str | None = None

    def set_tail(self, seq: int, stream_seq: int, last_id: str | None) -> None:
        self.seq = seq
        self.stream_seq = stream_seq
        self.last_id = last_id


class JetStreamEventLog:
    """``EventLog`` on a JetStream stream. Build it with ``open_jetstream_backend``."""

    def __init__(
        self,
        conn: JetStreamConnection,
        names: Names,
        codec: Codec,
        *,
        max_event_bytes: int,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._conn = conn
        self._quarantine = quarantine if quarantine is not None else Quarantine()
        self._names = names
        self._codec = codec
        self._stream = names.events_stream
        self._max_event_bytes = max_event_bytes
        self._runs: dict[RunKey, _Run] = {}

    def __repr__(self) -> str:
        return f"<JetStreamEventLog {self._stream} cached_runs={len(self._runs)}>"

    # -- appends ---------------------------------------------------------------------------

    async def append(
        self, key: RunKey, event: NewEvent, *, expected_last: int, idempotency_id: str
    ) -> int:
        """Append one event after ``expected_last``; see ``EventLog.append``."""
        run = self._run(key)
        body = self._encode(key, event)
        msg_id = run.id_prefix + idempotency_id
        with translate_errors(self._conn, f"append to run {key.workflow_id}/{key.run_id}"):
            for attempt in range(1, _FOREIGN_RETRIES + 1):
                if run.seq != expected_last and not (run.seq is None and expected_last == 0):
                    await self._refresh(run)
                    if run.seq != expected_last:
                        return self._resolve(key, run, expected_last, msg_id)
                seq = expected_last + 1
                headers = {
                    HDR_MSG_ID: msg_id,
                    HDR_EXPECTED_LAST_SUBJECT_SEQ: str(run.stream_seq),
                    HDR_SEQ: str(seq),
                    HDR_TYPE: event.type,
                }
                try:
                    ack = await self._conn.publish(run.subject, body, headers)
                    break
                except JsApiError as exc:
                    if exc.err_code not in WRONG_LAST_SEQUENCE:
                        raise
                    await self._refresh(run)
                    if run.seq == expected_last and attempt < _FOREIGN_RETRIES:
                        continue  # only foreign messages came after our tail: fence after them
                    return self._resolve(key, run, expected_last, msg_id)
            if ack.get("duplicate"):
                # The fence passed yet the Msg-Id was seen: the id was used before in this run.
                await self._refresh(run)
                return self._resolve(key, run, expected_last, msg_id)
            run.set_tail(seq, ack["seq"], msg_id)
            return seq

    async def append_atomic(self, appends: Sequence[Append]) -> list[int]:
        """Write every append or none, as one JetStream atomic batch.

        Every run's fence (its expected last sequence) is checked by the server at commit,
        under the stream lock, for all messages together. A retried batch whose ack was lost
        is recognised by the Msg-Ids at the runs' tails, and returns the stored sequences.
        """
        if not appends:
            return []
        if len(appends) > _MAX_ATOMIC:
            raise ValueError(f"at most {_MAX_ATOMIC} appends per atomic batch, got {len(appends)}")
        return await self._append_atomic(appends, tries=_FOREIGN_RETRIES)

    async def _append_atomic(self, appends: Sequence[Append], *, tries: int) -> list[int]:
        runs = [self._run(a.key) for a in appends]
        bodies = [self._encode(a.key, a.event) for a in appends]
        msg_ids = [run.id_prefix + a.idempotency_id for run, a in zip(runs, appends, strict=True)]
        with translate_errors(self._conn, "atomic append"):
            # Know each run's tail: the first append of a run carries the fence.
            first_of: dict[RunKey, int] = {}
            for index, (a, run) in enumerate(zip(appends, runs, strict=True)):
                if a.key in first_of:
                    continue
                first_of[a.key] = index
                if run.seq != a.expected_last and not (run.seq is None and a.expected_last == 0):
                    await self._refresh(run)
            planned = self._plan(appends, runs)
            if planned is None:
                return await self._resolve_batch(appends, runs, msg_ids)
            batch_id = uuid.uuid4().hex
            last_index = len(appends) - 1
            try:
                for index, (a, run) in enumerate(zip(appends, runs, strict=True)):
                    headers = {
                        HDR_MSG_ID: msg_ids[index],
                        HDR_SEQ: str(planned[index]),
                        HDR_TYPE: a.event.type,
                        "Nats-Batch-Id": batch_id,
                        "Nats-Batch-Sequence": str(index + 1),
                    }
                    if first_of[a.key] == index:
                        headers[HDR_EXPECTED_LAST_SUBJECT_SEQ] = str(run.stream_seq)
                    if index < last_index:
                        # No reply: the commit's ack reports any failure of the whole batch.
                        self._conn.check_connected("atomic append")
                        await self._conn.nc.publish(run.subject, bodies[index], headers=headers)
                    else:
                        headers["Nats-Batch-Commit"] = "1"
                        ack = await self._conn.publish(run.subject, bodies[index], headers)
            except JsApiError as exc:
                if exc.err_code not in (*WRONG_LAST_SEQUENCE, ERR_BATCH_DUPLICATE_MSG_ID):
                    raise
                for run in {id(r): r for r in runs}.values():
                    await self._refresh(run)
                if (
                    exc.err_code in WRONG_LAST_SEQUENCE
                    and tries > 1
                    and self._plan(appends, runs) is not None
                ):
                    # every run's tail is still what the caller expected: only foreign messages
                    # moved a fence; write the batch again, fenced after them
                    return await self._append_atomic(appends, tries=tries - 1)
                return await self._resolve_batch(appends, runs, msg_ids)
            # The batch's messages have consecutive stream sequences ending at the ack's.
            first_stream_seq = int(ack["seq"]) - last_index
            for index, run in enumerate(runs):
                run.set_tail(planned[index], first_stream_seq + index, msg_ids[index])
            return planned

    def _plan(self, appends: Sequence[Append], runs: list[_Run]) -> list[int] | None:
        """The sequences the batch will get, or ``None`` if a fence already fails."""
        tails: dict[RunKey, int] = {}
        planned: list[int] = []
        for a, run in zip(appends, runs, strict=True):
            last = tails.get(a.key, run.seq or 0)
            if last != a.expected_last:
                return None
            tails[a.key] = last + 1
            planned.append(last + 1)
        return planned

    async def _resolve_batch(
        self, appends: Sequence[Append], runs: list[_Run], msg_ids: list[str]
    ) -> list[int]:
        """After a failed or impossible batch: was it already written (a retry)?"""
        # The batch was applied iff each run's tail is the batch's last append to that run.
        last_of: dict[RunKey, int] = {a.key: i for i, a in enumerate(appends)}
        count_of: dict[RunKey, int] = {}
        for a in appends:
            count_of[a.key] = count_of.get(a.key, 0) + 1
        if all(runs[i].last_id == msg_ids[i] for i in last_of.values()):
            seen: dict[RunKey, int] = {}
            out = []
            for a, run in zip(appends, runs, strict=True):
                seen[a.key] = seen.get(a.key, 0) + 1
                out.append((run.seq or 0) - count_of[a.key] + seen[a.key])
            return out
        conflicts: dict[RunKey, str] = {}
        for a, run in zip(appends, runs, strict=True):
            conflicts.setdefault(
                a.key,
                f"run {a.key.workflow_id}/{a.key.run_id} expected last sequence "
                f"{a.expected_last}, it is {run.seq or 0}",
            )
        raise ConcurrencyConflict(
            "atomic append refused, nothing was written: "
            + "; ".join(conflicts.values())
            + " — another writer appended first; reload and decide again"
        )

    # -- reads -----------------------------------------------------------------------------

    async def read(
        self, key: RunKey, *, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """Events with sequence > ``after``, in order (at most ``limit``)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        out: list[StoredEvent] = []
        if limit == 0:
            return out
        async for chunk in self._chunks(key, after):
            out.extend(chunk)
            if limit is not None and len(out) >= limit:
                del out[limit:]
                break
        return out

    async def stream(self, key: RunKey, *, after: int = 0) -> AsyncIterator[StoredEvent]:
        """Like ``read`` but lazily, a batch at a time; ends at the last event present when
        it started."""
        async for chunk in self._chunks(key, after):
            for event in chunk:
                yield event

    async def _chunks(self, key: RunKey, after: int) -> AsyncIterator[list[StoredEvent]]:
        run = self._run(key)
        what = f"read run {key.workflow_id}/{key.run_id}"
        start = 1
        remaining: int | None = None  # messages left up to the tail seen by the first batch
        while remaining is None or remaining > 0:
            batch = _READ_BATCH if remaining is None else min(_READ_BATCH, remaining)
            with translate_errors(self._conn, what):
                msgs, pending = await self._conn.direct_batch(
                    self._stream, run.subject, start_seq=start, batch=batch
                )
            if not msgs:
                return
            remaining = pending if remaining is None else remaining - len(msgs)
            start = int(msgs[-1].headers["Nats-Sequence"]) + 1  # type: ignore[index]
            yield self._decode_all(key, msgs, after)

    def _decode_all(self, key: RunKey, msgs: list[Msg], after: int) -> list[StoredEvent]:
        out = []
        codec = self._codec
        run = self._run(key)
        for msg in msgs:
            headers = msg.headers or {}
            seq = self._ours(run, msg)
            if seq is None or HDR_MARKER in headers:
                continue
            if seq > after:
                out.append(decode_event(codec, msg.data, key=key, sequence=seq))
        return out

    def _ours(self, run: _Run, msg: Msg) -> int | None:
        """The per-run sequence of a message riverrun wrote; ``None`` (reported to the
        quarantine) for a foreign one."""
        headers = msg.headers or {}
        raw_seq = headers.get(HDR_SEQ, "")
        seq = int(raw_seq) if raw_seq.isascii() and raw_seq.isdigit() else -1
        if HDR_MARKER in headers:
            # a marker is written as a rollup of the subject (which only the stream's
            # permissions can keep a foreign publisher from doing: it removes the history)
            marker = seq >= 0 and not msg.data and "Nats-Rollup" in headers
            reason = None if marker else "a malformed truncation marker"
        elif seq < 1:
            reason = f"no valid {HDR_SEQ} header"
        elif not headers.get(HDR_MSG_ID, "").startswith(run.id_prefix):
            reason = f"no {HDR_MSG_ID} of this run"
        else:
            reason = None
        if reason is None:
            return seq
        self._quarantine.report(
            QuarantinedMessage(
                subject=run.subject,
                sequence=int(headers.get("Nats-Sequence", "0")),
                reason=f"not an event written by riverrun ({reason}); skipped",
                workflow_id=run.key.workflow_id,
                run_id=run.key.run_id,
            )
        )
        return None

    async def last_sequence(self, key: RunKey) -> int:
        """The run's last sequence; 0 if it has no events."""
        run = self._run(key)
        with translate_errors(self._conn, f"read run {key.workflow_id}/{key.run_id}"):
            await self._refresh(run)
        return run.seq or 0

    # -- removal ---------------------------------------------------------------------------

    async def truncate(self, key: RunKey, *, keep_last: int) -> None:
        """Remove all but the last ``keep_last`` events (their sequences stay)."""
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")
        run = self._run(key)
        with translate_errors(self._conn, f"truncate run {key.workflow_id}/{key.run_id}"):
            if keep_last > 0:
                # purge below the first kept event (not `keep=`: a foreign message at the tail
                # would count as one of the kept and cost a real event). The tail is read, not
                # taken from this connection's cache: an append whose ack never came (a
                # cancelled request) or another process may have moved it on since.
                first_kept = await self._nth_last_of_ours(run, keep_last)
                if first_kept is not None:
                    await self._conn.purge(self._stream, subject=run.subject, seq=first_kept)
                return
            while True:
                await self._refresh(run)
                if not run.seq:
                    return
                headers = {
                    HDR_MARKER: "truncated",
                    HDR_SEQ: str(run.seq),
                    HDR_EXPECTED_LAST_SUBJECT_SEQ: str(run.stream_seq),
                    "Nats-Rollup": "sub",
                }
                if run.last_id is not None:
                    headers[HDR_LAST_ID] = run.last_id
                try:
                    ack = await self._conn.publish(run.subject, b"", headers)
                except JsApiError as exc:
                    if exc.err_code in WRONG_LAST_SEQUENCE:
                        continue  # an append raced us: truncate what is there now
                    raise
                run.set_tail(run.seq, ack["seq"], run.last_id)
                return

    async def delete(self, key: RunKey) -> None:
        """Remove every event of the run (its numbering starts again at 1)."""
        run = self._run(key)
        with translate_errors(self._conn, f"delete run {key.workflow_id}/{key.run_id}"):
            await self._conn.purge(self._stream, subject=run.subject)
        self._runs.pop(key, None)

    # -- internals -------------------------------------------------------------------------

    def _run(self, key: RunKey) -> _Run:
        run = self._runs.get(key)
        if run is None:
            if len(self._runs) >= _CACHE_MAX_RUNS:
                # Drop the oldest half; a dropped run costs one direct get when next used.
                for old in list(self._runs)[: _CACHE_MAX_RUNS // 2]:
                    del self._runs[old]
            wf, rid = escape_token(key.workflow_id), escape_token(key.run_id)
            run = _Run(key, f"rr.{self._names.namespace}.ev.{wf}.{rid}", f"{wf}.{rid}:")
            self._runs[key] = run
        return run

    async def _refresh(self, run: _Run) -> None:
        """Read the run's tail from the server (one direct get)."""
        msg = await self._conn.direct_last(self._stream, run.subject)
        if msg is None:
            run.set_tail(0, 0, None)
            return
        stream_seq = int((msg.headers or {})["Nats-Sequence"])
        if self._ours(run, msg) is None:
            # a foreign message is last: riverrun's tail is further back (rare: read it all)
            msg = await self._last_of_ours(run)
            if msg is None:
                run.set_tail(0, stream_seq, None)
                return
        headers = msg.headers or {}
        seq = int(headers.get(HDR_SEQ, "0"))
        last_id = headers.get(HDR_LAST_ID) if HDR_MARKER in headers else headers.get(HDR_MSG_ID)
        # the fence is the subject's last message, whoever wrote it
        run.set_tail(seq, stream_seq, last_id)

    async def _nth_last_of_ours(self, run: _Run, n: int) -> int | None:
        """The stream sequence of riverrun's ``n``-th last message on the run's subject;
        ``None`` if it has fewer."""
        if n == 1:
            last = await self._conn.direct_last(self._stream, run.subject)
            if last is None:
                return None
            if self._ours(run, last) is not None:
                return int((last.headers or {})["Nats-Sequence"])
        kept: deque[int] = deque(maxlen=n)
        async for msg in self._ours_on_subject(run):
            kept.append(int((msg.headers or {})["Nats-Sequence"]))
        return kept[0] if len(kept) == n else None

    async def _last_of_ours(self, run: _Run) -> Msg | None:
        last: Msg | None = None
        async for msg in self._ours_on_subject(run):
            last = msg
        return last

    async def _ours_on_subject(self, run: _Run) -> AsyncIterator[Msg]:
        """riverrun's messages on the run's subject, first to last (foreign ones left out)."""
        start = 1
        while True:
            msgs, pending = await self._conn.direct_batch(
                self._stream, run.subject, start_seq=start, batch=_READ_BATCH
            )
            for msg in msgs:
                if self._ours(run, msg) is not None:
                    yield msg
            if not msgs or pending == 0:
                return
            start = int(msgs[-1].headers["Nats-Sequence"]) + 1  # type: ignore[index]

    def _resolve(self, key: RunKey, run: _Run, expected_last: int, msg_id: str) -> int:
        """The run's fresh tail does not match ``expected_last``: a lost ack or a conflict."""
        if run.last_id == msg_id and run.seq:
            return run.seq
        raise ConcurrencyConflict(
            f"run {key.workflow_id}/{key.run_id}: expected last sequence {expected_last} but "
            f"it is {run.seq or 0}; another writer appended first — reload the history and "
            "decide again"
        )

    def _encode(self, key: RunKey, event: NewEvent) -> bytes:
        raw = encode_event(self._codec, event, key=key)
        if len(raw) > self._max_event_bytes:
            raise CodecError(
                f"run {key.workflow_id}/{key.run_id}: {event.type} event is {len(raw)} bytes, "
                f"over the NATS max_payload limit of {self._max_event_bytes}; put large values "
                "in the payload store and record the reference"
            )
        return raw
