"""The codec: msgpack with extension types, registered attrs classes and event upcasting.

Design note: the common case (dicts of strings, numbers, lists) never leaves msgpack's C
packer, so ``dumps`` of a small dict costs well under a microsecond more than a bare
``msgpack.packb``. Everything msgpack cannot carry natively goes through the ``default``
hook as an ``ExtType`` whose payload is itself msgpack (encoded by the same rules), and
comes back through ``ext_hook``. ``strict_types=True`` is what keeps a tuple a tuple (and a
``StrEnum`` out of plain ``str``). Sets are written sorted where their items sort, so the
same set encodes to the same bytes in every process. The walk that names the offending path
only runs after packing has failed, so it costs nothing on the fast path. Packers are reused
(one per nesting level and thread): an extension's payload is packed while the value holding
it is, and a new packer per call cost an allocation of its buffer each time. Never pickle:
decoding stored bytes must never run code chosen by whoever wrote them.
"""

from __future__ import annotations

import enum
import functools
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs
import msgpack

from .._errors import CodecError
from ._model import ChainHead, InboxMessage, Lease, Member, RunKey, RunStatus, WorkflowRun

__all__ = ["Codec", "Upcaster"]

#: maps an event's ``data`` at schema version v to version v + 1
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# Extension type codes. Stored data depends on them: never renumber, only add.
_TUPLE: Final = 1
_BIGINT: Final = 2
_SET: Final = 3
_FROZENSET: Final = 4
_DATETIME: Final = 5
_DATE: Final = 6
_TIMEDELTA: Final = 7
_UUID: Final = 8
_DECIMAL: Final = 9
_ATTRS: Final = 10
_ENUM: Final = 11

#: nesting deeper than this is refused (msgpack's own limit is 512 levels per container)
_MAX_DEPTH: Final = 500

#: the persistence model's own values, registered in every codec under stable names
_MODEL_TYPES: Final[tuple[tuple[type[Any], str], ...]] = (
    (ChainHead, "riverrun.ChainHead"),
    (InboxMessage, "riverrun.InboxMessage"),
    (Lease, "riverrun.Lease"),
    (Member, "riverrun.Member"),
    (RunKey, "riverrun.RunKey"),
    (RunStatus, "riverrun.RunStatus"),
    (WorkflowRun, "riverrun.WorkflowRun"),
)


@attrs.frozen
class _Registered:
    cls: type[Any]
    name: str
    #: attrs classes: (field name, __init__ argument name) of every init field
    fields: tuple[tuple[str, str], ...] | None


class _EncodeFailure(Exception):
    """Raised inside the ``default`` hook; carries the offending object."""

    def __init__(self, obj: object, reason: str) -> None:
        super().__init__(reason)
        self.obj = obj
        self.reason = reason


#: a packer whose buffer grew past this for one value is replaced, not kept
_KEEP_PACKER_BYTES: Final = 1 << 20


class _Packers(threading.local):
    """The packers of one codec in one thread, one per nesting level (``depth``: the level
    being packed now)."""

    def __init__(self, default: Callable[[Any], Any]) -> None:
        self.default = default
        self.stack: list[msgpack.Packer] = []
        self.depth = 0

    def new(self) -> msgpack.Packer:
        return msgpack.Packer(
            default=self.default, strict_types=True, use_bin_type=True, autoreset=True
        )


@attrs.define(eq=False)
class Codec:
    """Encodes values to bytes and back, and upgrades old event schemas.

    Round-trips exactly: ``None``, ``bool``, ``int`` (any size), ``float``, ``str``,
    ``bytes``, ``list``, ``tuple``, ``dict`` (any encodable keys), ``set``, ``frozenset``,
    timezone-aware ``datetime`` (its tzinfo kept: fixed offsets and ``ZoneInfo`` zones),
    ``date``, ``timedelta``, ``UUID``, ``Decimal``, and classes registered with
    :meth:`register_type` (attrs classes and enums). Other mappings are encoded as ``dict``,
    ``bytearray`` and ``memoryview`` as ``bytes``.
    The persistence model values (``WorkflowRun``, ``RunStatus``, ``ChainHead``, ``Lease``,
    ``InboxMessage``, ``RunKey``) are registered in every codec.
    """

    _by_type: dict[type[Any], _Registered] = attrs.field(init=False, factory=dict)
    _by_name: dict[str, _Registered] = attrs.field(init=False, factory=dict)
    _versions: dict[str, int] = attrs.field(init=False, factory=dict)
    _upcasters: dict[tuple[str, int], Upcaster] = attrs.field(init=False, factory=dict)
    _unpack: Callable[[bytes], Any] = attrs.field(init=False)
    _packers: _Packers = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._packers = _Packers(self._default)
        self._unpack = functools.partial(
            msgpack.unpackb,
            ext_hook=self._ext_hook,
            use_list=True,
            strict_map_key=False,
            raw=False,
        )
        for cls, name in _MODEL_TYPES:
            self.register_type(cls, name=name)

    def _pack(self, value: Any) -> bytes:
        """msgpack with the codec's extension hook, on this thread's packer for the current
        nesting level (see the module note)."""
        packers = self._packers
        depth = packers.depth
        stack = packers.stack
        if depth == len(stack):
            stack.append(packers.new())
        packers.depth = depth + 1
        try:
            out: bytes = stack[depth].pack(value)
        finally:
            packers.depth = depth
        if len(out) > _KEEP_PACKER_BYTES:
            stack[depth] = packers.new()  # do not keep a buffer grown for one large value
        return out

    def __repr__(self) -> str:
        return f"<Codec types={len(self._by_name)} event_types={len(self._versions)}>"

    # -- registration ----------------------------------------------------------------------

    def register_type(self, cls: type[Any], name: str | None = None) -> None:
        """Make an attrs class or an enum encodable.

        Args:
            cls: an attrs class (encoded as its init fields) or an ``enum.Enum`` subclass
                (encoded as its value).
            name: the stable name written into the data; defaults to the qualified class
                name. Keep it when moving or renaming the class, or old data will not decode.

        Raises:
            TypeError: ``cls`` is neither an attrs class nor an enum.
            ValueError: ``name`` (or ``cls``) is already registered to something else.
        """
        name = name if name is not None else f"{cls.__module__}.{cls.__qualname__}"
        fields: tuple[tuple[str, str], ...] | None
        if isinstance(cls, type) and issubclass(cls, enum.Enum):
            fields = None
        elif attrs.has(cls):
            fields = tuple((f.name, f.alias or f.name) for f in attrs.fields(cls) if f.init)
        else:
            raise TypeError(f"register_type({cls!r}): only attrs classes and enums are encodable")
        known = self._by_name.get(name)
        if known is not None and known.cls is not cls:
            raise ValueError(f"type name {name!r} is already registered to {known.cls!r}")
        if cls in self._by_type and self._by_type[cls].name != name:
            raise ValueError(f"{cls!r} is already registered as {self._by_type[cls].name!r}")
        entry = _Registered(cls, name, fields)
        self._by_type[cls] = entry
        self._by_name[name] = entry

    def registered_name(self, cls: type[Any]) -> str | None:
        """The name ``cls`` is registered under, or ``None``."""
        entry = self._by_type.get(cls)
        return None if entry is None else entry.name

    def register_event(self, event_type: str, version: int) -> None:
        """Declare the current schema version of ``event_type`` (default 1)."""
        if version < 1:
            raise ValueError(f"schema version of {event_type!r} must be >= 1, got {version}")
        self._versions[event_type] = version

    def current_version(self, event_type: str) -> int:
        """The schema version new ``event_type`` events are written with."""
        return self._versions.get(event_type, 1)

    def register_upcaster(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        """Register ``fn``, which maps ``event_type`` data at ``from_version`` to the next."""
        self._upcasters[(event_type, from_version)] = fn

    def upcast(
        self, event_type: str, version: int, data: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """Bring ``data`` stored at ``version`` up to the current version of ``event_type``.

        Returns:
            The upgraded data and its version.

        Raises:
            CodecError: an upcaster in the chain is missing or failed, or ``version`` is newer
                than this code knows (written by a newer release).
        """
        current = self.current_version(event_type)
        if version > current:
            raise CodecError(
                f"{event_type!r} data has schema version {version} but this code knows only "
                f"up to {current}; upgrade riverrun/your workflow code before reading it"
            )
        while version < current:
            fn = self._upcasters.get((event_type, version))
            if fn is None:
                raise CodecError(
                    f"no upcaster for {event_type!r} from schema version {version} to "
                    f"{version + 1}; register one with codec.register_upcaster()"
                )
            try:
                data = fn(data)
            except Exception as exc:
                raise CodecError(
                    f"upcaster for {event_type!r} v{version} -> v{version + 1} failed: {exc!r}"
                ) from exc
            version += 1
        return data, version

    # -- bytes -----------------------------------------------------------------------------

    def dumps(self, value: Any, *, what: str = "value") -> bytes:
        """Encode ``value``.

        Args:
            value: anything made of the supported types.
            what: how to name ``value`` in an error (the root of the offending path).

        Raises:
            CodecError: naming the offending path, e.g.
                ``args[1]['x']: cannot encode object of type Foo``.
        """
        try:
            return self._pack(value)
        except Exception as exc:
            try:
                path, reason = self._find_failure(value, what)
            except RecursionError:  # the walk itself ran out of stack
                path, reason = what, "the value is nested too deeply (or contains itself)"
            raise CodecError(f"{path}: {reason}") from exc

    def loads(self, data: bytes, *, what: str) -> Any:
        """Decode bytes written by :meth:`dumps`.

        Args:
            data: the encoded bytes.
            what: names the data in an error, e.g. ``"run wf-1/abc event #7"``.

        Raises:
            CodecError: for anything that does not decode, naming ``what``.
        """
        try:
            return self._unpack(data)
        except CodecError as exc:
            raise CodecError(f"cannot decode {what}: {exc}") from exc
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise CodecError(f"cannot decode {what}: corrupt or foreign data ({detail})") from exc

    # -- msgpack hooks ---------------------------------------------------------------------

    def _default(self, obj: Any) -> Any:
        # Exact-type dispatch first (cheap); subclass checks only as a fallback.
        cls = type(obj)
        if cls is tuple:
            return msgpack.ExtType(_TUPLE, self._pack(list(obj)))
        if cls is int:  # msgpack's native ints stop at 64 bits
            size = (obj.bit_length() + 8) // 8
            return msgpack.ExtType(_BIGINT, obj.to_bytes(size, "big", signed=True))
        if cls is datetime:
            if obj.tzinfo is UTC:  # every timestamp riverrun records: packed by hand
                return msgpack.ExtType(_DATETIME, _utc_datetime_payload(obj))
            return msgpack.ExtType(_DATETIME, self._pack(_datetime_parts(obj)))
        if cls is date:
            return msgpack.ExtType(_DATE, self._pack(obj.toordinal()))
        if cls is timedelta:
            return msgpack.ExtType(
                _TIMEDELTA, self._pack([obj.days, obj.seconds, obj.microseconds])
            )
        if cls is UUID:
            return msgpack.ExtType(_UUID, obj.bytes)
        if cls is Decimal:
            return msgpack.ExtType(_DECIMAL, str(obj).encode())
        if cls is set:
            return msgpack.ExtType(_SET, self._pack(_ordered(obj)))
        if cls is frozenset:
            return msgpack.ExtType(_FROZENSET, self._pack(_ordered(obj)))
        entry = self._by_type.get(cls)
        if entry is not None:
            if entry.fields is None:
                return msgpack.ExtType(_ENUM, self._pack([entry.name, obj.value]))
            fields = {name: getattr(obj, name) for name, _ in entry.fields}
            return msgpack.ExtType(_ATTRS, self._pack([entry.name, fields]))
        if isinstance(obj, Mapping):
            return dict(obj)
        if cls is bytearray or cls is memoryview:
            return bytes(obj)
        raise _EncodeFailure(obj, f"cannot encode object of type {cls.__qualname__}")

    def _ext_hook(self, code: int, payload: bytes) -> Any:
        if code == _TUPLE:
            return tuple(self._unpack(payload))
        if code == _BIGINT:
            return int.from_bytes(payload, "big", signed=True)
        if code == _DATETIME:
            return _datetime_from_parts(self._unpack(payload))
        if code == _DATE:
            return date.fromordinal(self._unpack(payload))
        if code == _TIMEDELTA:
            days, seconds, microseconds = self._unpack(payload)
            return timedelta(days=days, seconds=seconds, microseconds=microseconds)
        if code == _UUID:
            return UUID(bytes=payload)
        if code == _DECIMAL:
            return Decimal(payload.decode())
        if code == _SET:
            return set(self._unpack(payload))
        if code == _FROZENSET:
            return frozenset(self._unpack(payload))
        if code in (_ATTRS, _ENUM):
            name, body = self._unpack(payload)
            entry = self._by_name.get(name)
            if entry is None:
                raise CodecError(
                    f"unknown type name {name!r}; register the class with "
                    f"codec.register_type(cls, name={name!r})"
                )
            if entry.fields is None:
                return entry.cls(body)
            # Fields the class no longer has are ignored; missing ones take their defaults.
            return entry.cls(**{alias: body[name] for name, alias in entry.fields if name in body})
        raise CodecError(f"unknown msgpack extension type {code}")

    # -- error reporting (slow path) -------------------------------------------------------

    def _find_failure(
        self, value: Any, path: str, outer: frozenset[int] = frozenset()
    ) -> tuple[str, str]:
        """Walk ``value`` to the first part that does not encode; return (path, reason).

        ``outer`` holds the ids of the containers on the way down: one met again is a
        reference cycle, which no encoding can carry.
        """
        if id(value) in outer:
            return path, (
                "the value contains itself (a reference cycle); pass a copy without the cycle"
            )
        if len(outer) >= _MAX_DEPTH:
            return f"{path[:100]}...", f"the value is nested more than {_MAX_DEPTH} levels deep"
        inner = outer | {id(value)}
        cls = type(value)
        if cls is dict or (isinstance(value, Mapping) and cls not in self._by_type):
            for key, item in value.items():
                if not self._encodes(key):
                    return self._find_failure(key, f"{path} key {key!r}", inner)
                if not self._encodes(item):
                    return self._find_failure(item, f"{path}[{key!r}]", inner)
        elif cls in (list, tuple, set, frozenset):
            for index, item in enumerate(value):
                if not self._encodes(item):
                    return self._find_failure(item, f"{path}[{index}]", inner)
        elif cls in self._by_type and self._by_type[cls].fields is not None:
            for name, _ in self._by_type[cls].fields or ():
                item = getattr(value, name)
                if not self._encodes(item):
                    return self._find_failure(item, f"{path}.{name}", inner)
        elif cls is datetime and value.tzinfo is None:
            return path, "cannot encode a naive datetime; use a timezone-aware one"
        elif cls is datetime and value.utcoffset() is None:
            return path, "cannot encode a datetime whose tzinfo gives no UTC offset"
        try:
            self._pack(value)
        except _EncodeFailure as exc:
            return path, exc.reason
        except Exception as exc:
            return path, f"cannot encode {cls.__qualname__}: {exc}"
        return path, f"cannot encode object of type {cls.__qualname__}"  # pragma: no cover

    def _encodes(self, value: Any) -> bool:
        try:
            self._pack(value)
        except Exception:
            return False
        return True


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    """A set's items in a deterministic order where they sort (strings' hashes, and so a set's
    iteration order, change from one process to the next); as they come otherwise."""
    try:
        return sorted(items)
    except TypeError:
        return list(items)


def _datetime_parts(value: datetime) -> list[Any]:
    tz = value.tzinfo
    if tz is None:
        raise _EncodeFailure(value, "cannot encode a naive datetime; use a timezone-aware one")
    zone: str | int
    if isinstance(tz, ZoneInfo) and tz.key is not None:
        zone = tz.key
    else:
        offset = value.utcoffset()
        if offset is None:
            raise _EncodeFailure(value, "cannot encode a datetime whose tzinfo gives no offset")
        zone = offset // timedelta(microseconds=1)
    return [
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        value.fold,
        zone,
    ]


def _utc_datetime_payload(value: datetime) -> bytes:
    """``msgpack.packb(_datetime_parts(value))`` for a datetime in UTC, byte for byte, in a
    third of the time: month to second are positive fixints, fold and the zone (0) too."""
    return b"".join((
        b"\x99",  # an array of 9
        _msgpack_uint(value.year),
        bytes((value.month, value.day, value.hour, value.minute, value.second)),
        _msgpack_uint(value.microsecond),
        b"\x01\x00" if value.fold else b"\x00\x00",
    ))


def _msgpack_uint(n: int) -> bytes:
    """A non-negative int below 2**32 as msgpack writes it (its shortest form)."""
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return b"\xcc" + bytes((n,))
    if n < 0x10000:
        return b"\xcd" + n.to_bytes(2, "big")
    return b"\xce" + n.to_bytes(4, "big")


def _datetime_from_parts(parts: list[Any]) -> datetime:
    year, month, day, hour, minute, second, microsecond, fold, zone = parts
    tz = (
        ZoneInfo(zone)
        if isinstance(zone, str)
        else UTC
        if zone == 0
        else timezone(timedelta(microseconds=zone))
    )
    return datetime(year, month, day, hour, minute, second, microsecond, tz, fold=fold)
