"""The in-memory event log.

Design note: events are kept encoded (the exact bytes a real log would store) and decoded and
upcast on every read, so the memory backend fails where the real ones fail: a value the codec
cannot carry raises ``CodecError`` at ``append``, and ``size`` is the real encoded size. Each
operation checks everything first and then mutates without awaiting, so it is atomic with
respect to other tasks; a checkpoint at the start of each call lets racing writers interleave
the way they would against a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio.lowlevel
import attrs

from .._errors import CodecError, ConcurrencyConflict
from ._codec import Codec
from ._envelope import decode_event, encode_event
from ._model import Append, NewEvent, RunKey, StoredEvent

__all__ = ["MemoryEventLog"]

_DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


@attrs.define(eq=False)
class _Stored:
    sequence: int
    raw: bytes
    idempotency_id: str


@attrs.define(eq=False)
class _History:
    events: list[_Stored] = attrs.field(factory=list)
    #: survives truncation, like a stream's last sequence
    last_sequence: int = 0
    last_idempotency_id: str | None = None


class MemoryEventLog:
    """``EventLog`` kept in process memory. For tests and ``Runtime.in_memory()``.

    Args:
        codec: encodes events on append and decodes (and upcasts) them on read.
        max_event_bytes: encoded events larger than this are refused with ``CodecError``,
            as a NATS server refuses messages over its ``max_payload``.
    """

    def __init__(self, codec: Codec, *, max_event_bytes: int = _DEFAULT_MAX_EVENT_BYTES) -> None:
        self._codec = codec
        self._max_event_bytes = max_event_bytes
        self._runs: dict[RunKey, _History] = {}

    def __repr__(self) -> str:
        events = sum(len(h.events) for h in self._runs.values())
        return f"<MemoryEventLog runs={len(self._runs)} events={events}>"

    async def append(
        self, key: RunKey, event: NewEvent, *, expected_last: int, idempotency_id: str
    ) -> int:
        """Append one event after ``expected_last``; see ``EventLog.append``."""
        await anyio.lowlevel.checkpoint()
        raw = self._encode(key, event)
        history = self._runs.get(key) or _History()
        duplicate = self._check(key, history, expected_last, idempotency_id)
        if duplicate is not None:
            return duplicate
        return self._write(key, history, raw, idempotency_id)

    async def append_atomic(self, appends: Sequence[Append]) -> list[int]:
        """Write every append or none; every ``expected_last`` is checked before any write.

        An append whose run already ends with its ``idempotency_id`` (a retried hand-over)
        is not written again; its existing sequence is returned.
        """
        await anyio.lowlevel.checkpoint()
        encoded = [self._encode(a.key, a.event) for a in appends]
        # Simulate the batch on copies of each run's tail, so that two appends to the same run
        # in one batch chain correctly, then commit only if every check passed.
        tails: dict[RunKey, tuple[int, str | None]] = {}
        plan: list[int | None] = []
        for a in appends:
            history = self._runs.get(a.key) or _History()
            last, last_id = tails.get(a.key, (history.last_sequence, history.last_idempotency_id))
            view = _History(last_sequence=last, last_idempotency_id=last_id)
            duplicate = self._check(a.key, view, a.expected_last, a.idempotency_id)
            plan.append(duplicate)
            if duplicate is None:
                tails[a.key] = (last + 1, a.idempotency_id)
        sequences: list[int] = []
        for a, raw, duplicate in zip(appends, encoded, plan, strict=True):
            if duplicate is not None:
                sequences.append(duplicate)
            else:
                history = self._runs.get(a.key) or _History()
                sequences.append(self._write(a.key, history, raw, a.idempotency_id))
        return sequences

    async def read(
        self, key: RunKey, *, after: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """Events with sequence > ``after``, in order (at most ``limit``)."""
        await anyio.lowlevel.checkpoint()
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        selected = self._select(key, after)
        if limit is not None:
            selected = selected[:limit]
        return [self._decode(key, stored) for stored in selected]

    async def stream(self, key: RunKey, *, after: int = 0) -> AsyncIterator[StoredEvent]:
        """Like ``read`` but lazily; ends at the last event present when it started."""
        selected = self._select(key, after)
        for stored in selected:
            await anyio.lowlevel.checkpoint()
            yield self._decode(key, stored)

    async def last_sequence(self, key: RunKey) -> int:
        """The run's last sequence; 0 if it has no events."""
        await anyio.lowlevel.checkpoint()
        history = self._runs.get(key)
        return 0 if history is None else history.last_sequence

    async def truncate(self, key: RunKey, *, keep_last: int) -> None:
        """Remove all but the last ``keep_last`` events (their sequences stay)."""
        await anyio.lowlevel.checkpoint()
        if keep_last < 0:
            raise ValueError(f"keep_last must be >= 0, got {keep_last}")
        history = self._runs.get(key)
        if history is not None:
            history.events = history.events[len(history.events) - keep_last :] if keep_last else []

    async def delete(self, key: RunKey) -> None:
        """Remove every event of the run."""
        await anyio.lowlevel.checkpoint()
        self._runs.pop(key, None)

    # -- internals -------------------------------------------------------------------------

    def _encode(self, key: RunKey, event: NewEvent) -> bytes:
        raw = encode_event(self._codec, event, key=key)
        if len(raw) > self._max_event_bytes:
            raise CodecError(
                f"run {key.workflow_id}/{key.run_id}: {event.type} event is {len(raw)} bytes, "
                f"over the log's limit of {self._max_event_bytes}; put large values in the "
                "payload store and record the reference"
            )
        return raw

    @staticmethod
    def _check(
        key: RunKey, history: _History, expected_last: int, idempotency_id: str
    ) -> int | None:
        """``None`` if the append may proceed, its sequence if it is a retried duplicate."""
        if history.last_sequence > 0 and history.last_idempotency_id == idempotency_id:
            return history.last_sequence
        if history.last_sequence != expected_last:
            raise ConcurrencyConflict(
                f"run {key.workflow_id}/{key.run_id}: expected last sequence {expected_last} "
                f"but it is {history.last_sequence}; another writer appended first — reload "
                "the history and decide again"
            )
        return None

    def _write(self, key: RunKey, history: _History, raw: bytes, idempotency_id: str) -> int:
        history.last_sequence += 1
        history.last_idempotency_id = idempotency_id
        history.events.append(_Stored(history.last_sequence, raw, idempotency_id))
        self._runs[key] = history
        return history.last_sequence

    def _select(self, key: RunKey, after: int) -> list[_Stored]:
        history = self._runs.get(key)
        if history is None or not history.events:
            return []
        # Kept sequences are contiguous, so the first wanted one is found by arithmetic.
        start = max(0, after - history.events[0].sequence + 1)
        return history.events[start:]

    def _decode(self, key: RunKey, stored: _Stored) -> StoredEvent:
        return decode_event(self._codec, stored.raw, key=key, sequence=stored.sequence)
