"""How one event is laid out as bytes in a log: ``[type, schema_version, timestamp, data]``.

Shared by every ``EventLog`` backend, so that an event's ``size`` means the same thing
everywhere and a history copied between backends decodes the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .._errors import CodecError
from ._codec import Codec
from ._model import NewEvent, RunKey, StoredEvent

__all__ = ["as_stored", "decode_event", "encode_event", "event_what"]


def event_what(key: RunKey, sequence: int) -> str:
    """How errors name one stored event: ``run <workflow_id>/<run_id> event #<sequence>``."""
    return f"run {key.workflow_id}/{key.run_id} event #{sequence}"


def encode_event(codec: Codec, event: NewEvent, *, key: RunKey | None = None) -> bytes:
    """Encode ``event``; a ``CodecError`` names the offending path inside ``data``.

    Raises:
        CodecError: ``data`` (or the timestamp) cannot be encoded.
    """
    where = (
        f"{event.type} event data"
        if key is None
        else (f"run {key.workflow_id}/{key.run_id}: {event.type} event data")
    )
    if event.timestamp.tzinfo is None:
        raise CodecError(f"{where}: the event timestamp is naive; use a timezone-aware one")
    return codec.dumps(
        [event.type, event.schema_version, event.timestamp, _as_dict(event.data)], what=where
    )


def decode_event(codec: Codec, raw: bytes, *, key: RunKey, sequence: int) -> StoredEvent:
    """Decode one stored event and upcast its data to the current schema version.

    Raises:
        CodecError: naming the run and sequence, if the bytes are corrupt or cannot be upcast.
    """
    what = event_what(key, sequence)
    decoded = codec.loads(raw, what=what)
    try:
        type_, version, timestamp, data = decoded
        if not (
            isinstance(type_, str)
            and isinstance(version, int)
            and isinstance(timestamp, datetime)
            and isinstance(data, dict)
        ):
            raise TypeError("unexpected field types")
    except (TypeError, ValueError) as exc:
        raise CodecError(f"cannot decode {what}: not a riverrun event envelope") from exc
    try:
        data, version = codec.upcast(type_, version, data)
    except CodecError as exc:
        raise CodecError(f"cannot decode {what}: {exc}") from exc
    return StoredEvent(
        key=key,
        sequence=sequence,
        type=type_,
        timestamp=timestamp,
        data=data,
        schema_version=version,
        size=len(raw),
    )


def as_stored(codec: Codec, key: RunKey, sequence: int, event: NewEvent) -> StoredEvent:
    """``event`` as a log hands it back once appended at ``sequence``: encoded and decoded
    (and upcast) by the same rules, with the same ``size``.

    A writer that applies what it appends through this sees exactly what a later replay of
    the log sees: the same values (a ``bytearray`` comes back as ``bytes``) and the same size.

    Raises:
        CodecError: ``data`` cannot be encoded (naming the offending path).
    """
    return decode_event(codec, encode_event(codec, event, key=key), key=key, sequence=sequence)


def _as_dict(data: Any) -> Any:
    return data if type(data) is dict else dict(data)
