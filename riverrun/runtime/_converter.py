"""The data converter: typed values to data the codec carries, and back, by type hints.

Design note. The wire format stays the codec's msgpack. What the converter adds is a layer
above it: a value whose parameter (or return, or signal) has a type hint is turned into plain
data by that hint (a dataclass, an attrs class or a pydantic model into a dict of its fields,
an enum into its value; datetimes, UUIDs, decimals, tuples and sets stay themselves, the
codec carries them), and the data is turned back into the hinted type where the value is
handed to user code: the workflow function, the step function, the workflow code awaiting a
step, a signal or a child, and ``handle.result()``. A value that does not fit its hint is a
``SerializationError`` naming the parameter. Without a hint (or with ``Any``) values pass as
they always did: what the codec carries (builtins and registered attrs classes and enums).

Decoding is a pure function of the data and the hint, so a replay decodes exactly what the
live run decoded. Encoding is deterministic (fields in declaration order, sets sorted by the
codec) and never pickles.

The runtime hosting a workflow makes its converter the active one (``bind_converter``, set
for the task that hosts the workflow, like the log context): workflow code reaches it through
``active_converter()`` when it calls a step or waits for a signal.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar, Union, cast
from uuid import UUID

import attrs

from .._errors import SerializationError
from ..persistence._codec import Codec
from ._hints import (
    CARRIED,
    SIMPLE,
    CallHints,
    Mismatch,
    clean_hint,
    field_hints,
    fields_of,
    hint_name,
    is_pydantic,
    parse_as,
    positional_hints,
    type_of,
    unchanged,
)

__all__ = ["DataConverter"]

T = TypeVar("T")


# -- the converter ----------------------------------------------------------------------------


@attrs.frozen
class _Hook:
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


class DataConverter:
    """Turns values into data the codec carries and back, guided by type hints.

    Supported hints: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``,
    timezone-aware ``datetime``, ``date``, ``timedelta``, ``UUID``, ``Decimal``, enums,
    dataclasses, attrs classes, pydantic v2 models (when pydantic is installed), ``list[X]``,
    ``tuple[X, ...]``, ``tuple[X, Y]``, ``set[X]``, ``frozenset[X]``, ``dict[K, V]`` (and their
    ``collections.abc`` forms), ``X | None``, unions, ``Literal[...]``, ``Annotated[X, ...]``,
    ``NewType``, and types given a hook with :meth:`register`. Without a hint (or ``Any``),
    values pass as the codec carries them.

    Args:
        types: attrs classes and enums to register with the codec, for values that travel
            without a hint (see :meth:`register_type`).
        codec: the codec underneath (default: a new ``Codec``).
    """

    def __init__(self, *, types: Iterable[type[Any]] = (), codec: Codec | None = None) -> None:
        self.codec = codec if codec is not None else Codec()
        self._hooks: dict[Any, _Hook] = {}
        #: per CallHints (by id, the object kept alive with it): the hints of the positional
        #: parameters, for the fast path of calls whose arguments need no converting
        self._positional: dict[int, tuple[CallHints, tuple[Any, ...]]] = {}
        for cls in types:
            self.register_type(cls)

    def __repr__(self) -> str:
        return f"<DataConverter hooks={len(self._hooks)} codec={self.codec!r}>"

    # -- registration -----------------------------------------------------------------------

    def register_type(self, cls: type[Any], name: str | None = None) -> None:
        """Register an attrs class or an enum with the codec, so that its instances travel
        where no hint says what they are (an ``Any`` parameter, a signal without ``type=``).

        Raises:
            TypeError: ``cls`` is neither an attrs class nor an enum.
            ValueError: ``name`` is already registered to another class.
        """
        existing = self.codec.registered_name(cls)
        if existing is not None and (name is None or existing == name):
            return  # registered already (a shared converter, or the same list twice)
        self.codec.register_type(cls, name=name)

    def register(
        self, cls: type[T], *, encode: Callable[[T], Any], decode: Callable[[Any], T]
    ) -> None:
        """Teach the converter a type: ``encode`` turns an instance into data the codec
        carries (builtins, lists, dicts...), ``decode`` turns that data back.

        Hooks apply where a hint names ``cls`` exactly; they take precedence over the built-in
        rules (a hook for a dataclass replaces its field-by-field encoding).
        """
        if not isinstance(cls, type):
            raise TypeError(f"register({cls!r}): give a class")
        self._hooks[cls] = _Hook(encode=encode, decode=decode)

    def check_hint(self, hint: Any, what: str) -> None:
        """Raise ``TypeError`` if ``hint`` (or a part of it) is a type this converter cannot
        encode; ``what`` names where the hint is."""
        try:
            self._check(clean_hint(hint), set())
        except Mismatch as err:
            raise TypeError(
                f"{what}: the data converter cannot handle the type hint {err.path}: "
                f"{err.reason}; use a supported type or give it a hook with "
                "DataConverter.register(cls, encode=..., decode=...)"
            ) from None

    # -- values -----------------------------------------------------------------------------

    def to_data(self, value: Any, hint: Any, *, what: str = "value") -> Any:
        """``value`` as data the codec carries, checked against ``hint``.

        Raises:
            SerializationError: ``value`` does not fit ``hint``, naming ``what`` and the path.
        """
        try:
            return self._encode(value, clean_hint(hint), "")
        except Mismatch as err:
            raise SerializationError(f"{what}{err.path}: {err.reason}") from None

    def from_data(self, data: Any, hint: Any, *, what: str = "value") -> Any:
        """Data written by :meth:`to_data`, turned back into ``hint``.

        Raises:
            SerializationError: the data does not decode into ``hint``, naming ``what``.
        """
        try:
            return self._decode(data, clean_hint(hint), "")
        except Mismatch as err:
            raise SerializationError(f"{what}{err.path}: {err.reason}") from None

    def to_plain(self, value: Any, *, what: str = "value") -> Any:
        """``value`` without a hint on this side (a signal payload, a start by name): class
        instances the codec does not know (dataclasses, attrs classes, pydantic models, enums)
        become plain data, for the receiver to decode by its own hint."""
        try:
            return self._plain(value, "")
        except Mismatch as err:
            raise SerializationError(f"{what}{err.path}: {err.reason}") from None
        except RecursionError:  # a value that contains itself: the codec names where
            return value

    # -- calls ------------------------------------------------------------------------------

    def encode_call(
        self, hints: CallHints | None, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments as data, each by its parameter's hint (``hints=None``: no hints known
        here, see :meth:`to_plain`)."""
        if hints is None:
            return (
                tuple(self.to_plain(a, what=f"argument #{i}") for i, a in enumerate(args)),
                {k: self.to_plain(v, what=f"argument {k!r}") for k, v in kwargs.items()},
            )
        if not hints.typed_args or (not kwargs and self._passes(hints, args)):
            return tuple(args), dict(kwargs)
        targets = list(hints.targets(args, kwargs))
        out_args = tuple(
            self.to_data(value, hint, what=hints.what(name))
            for value, (name, hint) in zip(args, targets, strict=False)
        )
        out_kwargs = {
            key: self.to_data(value, hint, what=hints.what(name))
            for (key, value), (name, hint) in zip(kwargs.items(), targets[len(args) :], strict=True)
        }
        return out_args, out_kwargs

    def decode_call(
        self, hints: CallHints, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Stored arguments decoded by the function's hints."""
        if not hints.typed_args or (not kwargs and self._passes(hints, args)):
            return tuple(args), dict(kwargs)
        targets = list(hints.targets(args, kwargs))
        out_args = tuple(
            self.from_data(value, hint, what=hints.what(name))
            for value, (name, hint) in zip(args, targets, strict=False)
        )
        out_kwargs = {
            key: self.from_data(value, hint, what=hints.what(name))
            for (key, value), (name, hint) in zip(kwargs.items(), targets[len(args) :], strict=True)
        }
        return out_args, out_kwargs

    def encode_result(self, hints: CallHints, value: Any) -> Any:
        if not hints.typed_result or (type(value) is hints.returns and hints.returns in SIMPLE):
            return value
        return self.to_data(value, hints.returns, what=hints.result_what())

    def decode_result(self, hints: CallHints, data: Any) -> Any:
        if not hints.typed_result or (type(data) is hints.returns and hints.returns in SIMPLE):
            return data
        return self.from_data(data, hints.returns, what=hints.result_what())

    def _passes(self, hints: CallHints, args: tuple[Any, ...]) -> bool:
        """Whether every positional argument is of exactly its parameter's simple hint (or
        the hint is ``Any``): both walks would hand each one back as it is."""
        entry = self._positional.get(id(hints))
        if entry is None or entry[0] is not hints:
            entry = (hints, positional_hints(hints))
            self._positional[id(hints)] = entry
        positional = entry[1]
        if len(args) > len(positional):
            return False  # *args: the slow path knows their hint
        for value, hint in zip(args, positional, strict=False):
            if hint is not Any and not (type(value) is hint and hint in SIMPLE):
                return False
        return True

    # -- the walks --------------------------------------------------------------------------

    def _hook(self, hint: Any) -> _Hook | None:
        try:
            return self._hooks.get(hint)
        except TypeError:  # an unhashable hint (Annotated with a dict): no hook names it
            return None

    def _encode(self, value: Any, hint: Any, path: str) -> Any:
        if hint is Any or hint is object or (type(value) is hint and hint in SIMPLE):
            return value
        hook = self._hook(hint)
        if hook is not None:
            try:
                return hook.encode(value)
            except Exception as exc:
                raise Mismatch(path, f"the {hint_name(hint)} hook failed: {exc!r}") from exc
        origin = typing.get_origin(hint)
        if origin is not None:
            return self._encode_generic(value, hint, origin, path)
        if hint is type(None):
            if value is not None:
                raise Mismatch(path, f"expected None, got {type_of(value)}")
            return None
        if not isinstance(hint, type):
            supertype = getattr(hint, "__supertype__", None)  # NewType
            if supertype is not None:
                return self._encode(value, supertype, path)
            raise Mismatch(path, f"cannot handle the type hint {hint!r}")
        if not isinstance(value, hint):
            if hint is float and isinstance(value, int) and not isinstance(value, bool):
                return value
            if hint is bytes and isinstance(value, bytearray | memoryview):
                return bytes(value)  # as the codec carries them
            raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(value)}")
        obj: Any = value  # narrowed to object by the isinstance above
        if isinstance(obj, datetime):  # before date, its base class
            if obj.tzinfo is None or obj.utcoffset() is None:
                raise Mismatch(path, "cannot encode a naive datetime; use a timezone-aware one")
            return obj
        if hint in (str, int, float, bool) or issubclass(hint, CARRIED):
            return value
        if issubclass(hint, enum.Enum):
            return obj.value
        return self._encode_object(obj, type(obj), path)

    def _encode_object(self, value: Any, cls: type[Any], path: str) -> Any:
        fields = fields_of(cls)
        if fields is not None:
            encode = self._encode
            return {
                name: encode(getattr(value, name), hint, f"{path}.{name}")
                for name, _, hint in fields
            }
        if is_pydantic(cls):
            return value.model_dump(mode="json")
        if isinstance(value, (list, dict, tuple, set, frozenset)):
            return value  # a subclass of a builtin hint: the codec decides
        raise Mismatch(path, f"cannot handle the type hint {hint_name(cls)}")

    def _encode_generic(self, value: Any, hint: Any, origin: Any, path: str) -> Any:
        args = typing.get_args(hint)
        if origin is typing.Annotated:
            return self._encode(value, args[0], path)
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            errors = []
            for member in args:
                if member is type(None):
                    continue
                try:
                    return self._encode(value, member, path)
                except Mismatch as err:
                    errors.append(err)
            raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(value)}")
        if origin is Literal:
            if value not in args:
                raise Mismatch(path, f"expected one of {list(args)!r}, got {value!r}")
            return value.value if isinstance(value, enum.Enum) else value
        if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
            allowed: tuple[type[Any], ...] = (list,) if origin is list else (list, tuple)
            if not isinstance(value, allowed):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(value)}")
            item = args[0] if args else Any
            return [self._encode(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is tuple:
            if not isinstance(value, tuple):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(value)}")
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self._encode(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
            if args == ((),):
                args = ()
            if len(args) != len(value):
                raise Mismatch(path, f"expected {hint_name(hint)}, got a tuple of {len(value)}")
            return tuple(
                self._encode(v, h, f"{path}[{i}]") for i, (v, h) in enumerate(zip(value, args, strict=True))
            )
        if origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet):
            if not isinstance(value, (set, frozenset)):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(value)}")
            item = args[0] if args else Any
            out = [self._encode(v, item, f"{path}[{v!r}]") for v in value]
            return frozenset(out) if origin is frozenset else set(out)
        if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
            if not isinstance(value, Mapping):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(value)}")
            key_hint, value_hint = args if args else (Any, Any)
            return {
                self._encode(k, key_hint, f"{path} key {k!r}"): self._encode(v, value_hint, f"{path}[{k!r}]")
                for k, v in value.items()
            }
        if origin is type:
            raise Mismatch(path, f"cannot handle the type hint {hint_name(hint)} (a class is not a value)")
        if isinstance(origin, type) and not isinstance(value, origin):
            raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(value)}")
        if isinstance(origin, type):  # a generic dataclass / attrs class / model: Box[int]
            return self._encode_object(value, type(value), path)
        raise Mismatch(path, f"cannot handle the type hint {hint_name(hint)}")

    def _decode(self, data: Any, hint: Any, path: str) -> Any:
        if hint is Any or hint is object or (type(data) is hint and hint in SIMPLE):
            return data
        hook = self._hook(hint)
        if hook is not None:
            try:
                return hook.decode(data)
            except Exception as exc:
                raise Mismatch(path, f"the {hint_name(hint)} hook failed: {exc!r}") from exc
        origin = typing.get_origin(hint)
        if origin is not None:
            return self._decode_generic(data, hint, origin, path)
        if hint is type(None):
            if data is not None:
                raise Mismatch(path, f"expected None, got {type_of(data)}")
            return None
        if not isinstance(hint, type):
            supertype = getattr(hint, "__supertype__", None)
            if supertype is not None:
                return self._decode(data, supertype, path)
            raise Mismatch(path, f"cannot handle the type hint {hint!r}")
        if hint is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if issubclass(hint, enum.Enum):
            if isinstance(data, hint):
                return data
            try:
                return hint(data)
            except ValueError:
                raise Mismatch(path, f"{data!r} is not a {hint_name(hint)}") from None
        if issubclass(hint, datetime):
            if isinstance(data, str):  # from JSON (the command line)
                data = parse_as(datetime.fromisoformat, data, hint, path)
            if not isinstance(data, datetime):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")
            if data.tzinfo is None:
                raise Mismatch(path, "a naive datetime; use a timezone-aware one")
            return data
        if hint is UUID and isinstance(data, str):
            return parse_as(UUID, data, hint, path)
        if hint is Decimal and isinstance(data, str | int):
            return parse_as(Decimal, data, hint, path)
        if hint is date and isinstance(data, str):
            return parse_as(date.fromisoformat, data, hint, path)
        if isinstance(data, hint) and (
            hint in (str, int, float, bool) or issubclass(hint, CARRIED)
        ):
            return data
        if dataclasses.is_dataclass(hint) or attrs.has(hint):
            if isinstance(data, hint):
                return data  # a registered class, carried by the codec as itself
            if not isinstance(data, Mapping):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")
            return self._decode_fields(data, hint, path)
        if is_pydantic(hint):
            if isinstance(data, hint):
                return data
            try:
                return cast(Any, hint).model_validate(data)
            except Exception as exc:
                raise Mismatch(path, f"does not validate as {hint_name(hint)}: {exc}") from None
        if hint in (list, dict, tuple, set, frozenset):
            return self._decode_generic(data, hint, hint, path)
        raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")

    def _decode_fields(self, data: Mapping[str, Any], cls: type[Any], path: str) -> Any:
        # fields the class no longer has are ignored; missing ones take their defaults
        decode = self._decode
        values = {
            alias: decode(data[name], hint, f"{path}.{name}")
            for name, alias, hint in fields_of(cls) or ()
            if name in data
        }
        try:
            return cls(**values)
        except Exception as exc:
            raise Mismatch(path, f"cannot build {hint_name(cls)}: {type(exc).__name__}: {exc}") from None

    def _decode_generic(self, data: Any, hint: Any, origin: Any, path: str) -> Any:
        args = typing.get_args(hint)
        if origin is typing.Annotated:
            return self._decode(data, args[0], path)
        if origin in (Union, types.UnionType):
            if data is None and type(None) in args:
                return None
            for member in args:
                if member is type(None):
                    continue
                try:
                    return self._decode(data, member, path)
                except Mismatch:
                    continue
            raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")
        if origin is Literal:
            for choice in args:
                if data == choice or (isinstance(choice, enum.Enum) and data == choice.value):
                    return choice
            raise Mismatch(path, f"expected one of {list(args)!r}, got {data!r}")
        sequence = isinstance(data, list | tuple) or (
            origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
            and isinstance(data, set | frozenset)
        )
        if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
            if not sequence or isinstance(data, set | frozenset):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")
            item = args[0] if args else Any
            items = [self._decode(v, item, f"{path}[{i}]") for i, v in enumerate(data)]
            return data if type(data) is list and unchanged(items, data) else items
        if origin is tuple:
            if not isinstance(data, list | tuple):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")
            if not args or (len(args) == 2 and args[1] is Ellipsis):
                item = args[0] if args else Any
                return tuple(self._decode(v, item, f"{path}[{i}]") for i, v in enumerate(data))
            if args == ((),):
                args = ()
            if len(args) != len(data):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {len(data)} items")
            return tuple(
                self._decode(v, h, f"{path}[{i}]") for i, (v, h) in enumerate(zip(data, args, strict=True))
            )
        if origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet):
            if not sequence:
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")
            item = args[0] if args else Any
            out = [self._decode(v, item, f"{path}[{v!r}]") for v in data]
            return frozenset(out) if origin is frozenset else set(out)
        if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
            if not isinstance(data, Mapping):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")
            key_hint, value_hint = args if args else (Any, Any)
            decoded = {
                self._decode(k, key_hint, f"{path} key {k!r}"): self._decode(v, value_hint, f"{path}[{k!r}]")
                for k, v in data.items()
            }
            if type(data) is dict and unchanged(decoded, data) and unchanged(decoded.values(), data.values()):
                return data
            return decoded
        if isinstance(origin, type) and (dataclasses.is_dataclass(origin) or attrs.has(origin)):
            if not isinstance(data, Mapping):
                raise Mismatch(path, f"expected {hint_name(hint)}, got {type_of(data)}")
            return self._decode_fields(data, origin, path)
        raise Mismatch(path, f"cannot handle the type hint {hint_name(hint)}")

    def _plain(self, value: Any, path: str) -> Any:
        cls = type(value)
        if cls in (str, int, float, bool, bytes) or value is None:
            return value
        if self.codec.registered_name(cls) is not None:
            return value
        if isinstance(value, enum.Enum):
            return self._plain(value.value, path)
        if isinstance(value, list | tuple):
            out = [self._plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
            return out if isinstance(value, list) else tuple(out)
        if cls is set or cls is frozenset:
            return cls(self._plain(v, path) for v in value)
        if isinstance(value, dict):
            return {self._plain(k, path): self._plain(v, f"{path}[{k!r}]") for k, v in value.items()}
        hook = self._hook(cls)
        if hook is not None:
            return hook.encode(value)
        if (dataclasses.is_dataclass(cls) or attrs.has(cls) or is_pydantic(cls)) and isinstance(
            cls, type
        ):
            return self._plain(self._encode_object(value, cls, path), path)
        return value  # the codec decides (datetime, UUID, ... or a clear error)

    def _check(self, hint: Any, seen: set[Any]) -> None:
        if hint is Any or self._hook(hint) is not None or hint is type(None):
            return
        origin = typing.get_origin(hint)
        if origin is not None:
            args = typing.get_args(hint)
            if origin is typing.Annotated:
                self._check(args[0], seen)
                return
            if origin is Literal:
                return
            if origin is type:
                raise Mismatch(hint_name(hint), "a class is not a value")
            known = origin in (
                Union,
                types.UnionType,
                list,
                tuple,
                set,
                frozenset,
                dict,
                collections.abc.Sequence,
                collections.abc.MutableSequence,
                collections.abc.Set,
                collections.abc.MutableSet,
                collections.abc.Mapping,
                collections.abc.MutableMapping,
            ) or (isinstance(origin, type) and (dataclasses.is_dataclass(origin) or attrs.has(origin)))
            if not known:
                raise Mismatch(hint_name(hint), "not a supported generic")
            for arg in args:
                if arg is not Ellipsis and arg != ():
                    self._check(clean_hint(arg), seen)
            return
        if isinstance(hint, TypeVar):
            return
        if not isinstance(hint, type):
            supertype = getattr(hint, "__supertype__", None)
            if supertype is not None:
                self._check(supertype, seen)
                return
            raise Mismatch(repr(hint), "not a type")
        if hint in seen:
            return
        seen.add(hint)
        if hint in (str, int, float, bool, datetime, list, dict, tuple, set, frozenset) or issubclass(
            hint, (*CARRIED, enum.Enum)
        ):
            return
        if dataclasses.is_dataclass(hint) or attrs.has(hint):
            for field_hint in field_hints(hint).values():
                self._check(clean_hint(field_hint), seen)
            return
        if is_pydantic(hint):
            return
        raise Mismatch(hint_name(hint), "not a dataclass, attrs class, pydantic model, enum or builtin")


