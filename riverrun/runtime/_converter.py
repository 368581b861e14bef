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
import functools
import inspect
import logging
import sys
import types
import typing
from collections.abc import Callable, Coroutine, Iterable, Mapping
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, TypeVar, Union, cast
from uuid import UUID

import attrs

from .._errors import SerializationError
from ..persistence._codec import Codec

__all__ = [
    "CallHints",
    "DataConverter",
    "LazyHints",
    "active_converter",
    "bind_converter",
    "check_workflow_hints",
    "start_workflow",
    "step_function",
]

log = logging.getLogger("riverrun.converter")

T = TypeVar("T")

_EMPTY = inspect.Parameter.empty
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

#: hints a value of exactly that type fits as it is (the fast path)
_SIMPLE: Final = frozenset({str, int, float, bool, bytes})

#: values the codec carries as themselves: a hint of one of these checks the type only
_CARRIED: Final[tuple[type[Any], ...]] = (bytes, date, timedelta, UUID, Decimal)


class _Mismatch(Exception):
    """Inside a walk: the value at ``path`` does not fit; ``SerializationError`` outside."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def _name(hint: Any) -> str:
    """``Order``, ``list[Item]``, ``Item | None``: how a hint is written, for messages."""
    if hint is type(None) or hint is None:
        return "None"
    if hint is Ellipsis:
        return "..."
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " | ".join(_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(map(_name, args))}]"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _got(value: Any) -> str:
    return type(value).__name__


# -- hints of a workflow or step --------------------------------------------------------------


@attrs.frozen(kw_only=True)
class CallHints:
    """The type hints of one workflow or step function, resolved."""

    #: "workflow" or "step", for messages
    kind: str
    name: str
    parameters: tuple[inspect.Parameter, ...]
    #: parameter name -> hint (``Any`` where there is none)
    hints: Mapping[str, Any]
    returns: Any
    #: whether any parameter has a hint (else arguments pass untouched)
    typed_args: bool

    @property
    def typed_result(self) -> bool:
        return self.returns is not Any

    def what(self, parameter: str) -> str:
        return f"argument {parameter!r} of {self.kind} {self.name!r}"

    def result_what(self) -> str:
        return f"result of {self.kind} {self.name!r}"

    def targets(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
        """(parameter name, hint) for each positional argument, then each keyword."""
        positional = [p for p in self.parameters if p.kind in _POSITIONAL]
        var_pos = next(
            (p for p in self.parameters if p.kind == inspect.Parameter.VAR_POSITIONAL), None
        )
        for index in range(len(args)):
            param = positional[index] if index < len(positional) else var_pos
            yield (param.name, self.hints[param.name]) if param else (f"#{index}", Any)
        named = {p.name: p for p in self.parameters if p.kind in _NAMED}
        var_kw = next((p for p in self.parameters if p.kind == inspect.Parameter.VAR_KEYWORD), None)
        for key in kwargs:
            param = named.get(key, var_kw)
            yield (key, self.hints[param.name]) if param else (key, Any)


class LazyHints:
    """A function's hints, resolved on first use (classes named in them may be defined after
    the decorated function). Unresolvable hints count as ``Any``, with a warning."""

    def __init__(self, fn: Callable[..., Any], kind: str, name: str) -> None:
        self._fn = fn
        self._kind = kind
        self._name = name
        self._hints: CallHints | None = None

    def __repr__(self) -> str:
        return f"<LazyHints {self._kind} {self._name!r}>"

    def get(self) -> CallHints:
        if self._hints is None:
            self._hints = _resolve(self._fn, self._kind, self._name)
        return self._hints


def _resolve(fn: Callable[..., Any], kind: str, name: str) -> CallHints:
    signature = inspect.signature(fn)
    try:
        resolved = typing.get_type_hints(fn)
    except Exception as exc:
        log.warning(
            "%s %r: its type hints cannot be resolved (%s: %s); its values pass untyped. "
            "Define the classes its hints name at module level",
            kind,
            name,
            type(exc).__name__,
            exc,
        )
        resolved = {}
    hints = {p.name: _clean(resolved.get(p.name, Any)) for p in signature.parameters.values()}
    returns = _clean(resolved.get("return", Any))
    return CallHints(
        kind=kind,
        name=name,
        parameters=tuple(signature.parameters.values()),
        hints=hints,
        returns=returns,
        typed_args=any(h is not Any for h in hints.values()),
    )


def _clean(hint: Any) -> Any:
    """``Any`` for what imposes nothing (no hint, ``object``, a bare TypeVar, ``None`` as a
    return type of a procedure is kept: it checks the procedure returns nothing)."""
    if hint is _EMPTY or hint is object or isinstance(hint, TypeVar):
        return Any
    if hint is None:
        return type(None)
    return hint


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
            self._check(_clean(hint), set())
        except _Mismatch as err:
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
            return self._encode(value, _clean(hint), "")
        except _Mismatch as err:
            raise SerializationError(f"{what}{err.path}: {err.reason}") from None

    def from_data(self, data: Any, hint: Any, *, what: str = "value") -> Any:
        """Data written by :meth:`to_data`, turned back into ``hint``.

        Raises:
            SerializationError: the data does not decode into ``hint``, naming ``what``.
        """
        try:
            return self._decode(data, _clean(hint), "")
        except _Mismatch as err:
            raise SerializationError(f"{what}{err.path}: {err.reason}") from None

    def to_plain(self, value: Any, *, what: str = "value") -> Any:
        """``value`` without a hint on this side (a signal payload, a start by name): class
        instances the codec does not know (dataclasses, attrs classes, pydantic models, enums)
        become plain data, for the receiver to decode by its own hint."""
        try:
            return self._plain(value, "")
        except _Mismatch as err:
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
        if not hints.typed_args:
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
        if not hints.typed_args:
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
        if not hints.typed_result:
            return value
        return self.to_data(value, hints.returns, what=hints.result_what())

    def decode_result(self, hints: CallHints, data: Any) -> Any:
        if not hints.typed_result:
            return data
        return self.from_data(data, hints.returns, what=hints.result_what())

    # -- the walks --------------------------------------------------------------------------

    def _encode(self, value: Any, hint: Any, path: str) -> Any:
        if hint is Any or (type(value) is hint and hint in _SIMPLE):
            return value
        hook = self._hooks.get(hint)
        if hook is not None:
            return hook.encode(value)
        origin = typing.get_origin(hint)
        if origin is not None:
            return self._encode_generic(value, hint, origin, path)
        if hint is type(None):
            if value is not None:
                raise _Mismatch(path, f"expected None, got {_got(value)}")
            return None
        if not isinstance(hint, type):
            supertype = getattr(hint, "__supertype__", None)  # NewType
            if supertype is not None:
                return self._encode(value, supertype, path)
            raise _Mismatch(path, f"cannot handle the type hint {hint!r}")
        if not isinstance(value, hint):
            if hint is float and isinstance(value, int) and not isinstance(value, bool):
                return value
            if hint is bytes and isinstance(value, bytearray | memoryview):
                return bytes(value)  # as the codec carries them
            raise _Mismatch(path, f"expected {_name(hint)}, got {_got(value)}")
        obj: Any = value  # narrowed to object by the isinstance above
        if isinstance(obj, datetime):  # before date, its base class
            if obj.tzinfo is None or obj.utcoffset() is None:
                raise _Mismatch(path, "cannot encode a naive datetime; use a timezone-aware one")
            return obj
        if hint in (str, int, float, bool) or issubclass(hint, _CARRIED):
            return value
        if issubclass(hint, enum.Enum):
            return obj.value
        return self._encode_object(obj, type(obj), path)

    def _encode_object(self, value: Any, cls: type[Any], path: str) -> Any:
        fields = _fields_of(cls)
        if fields is not None:
            encode = self._encode
            return {
                name: encode(getattr(value, name), hint, f"{path}.{name}")
                for name, _, hint in fields
            }
        if _is_pydantic(cls):
            return value.model_dump(mode="json")
        if isinstance(value, (list, dict, tuple, set, frozenset)):
            return value  # a subclass of a builtin hint: the codec decides
        raise _Mismatch(path, f"cannot handle the type hint {_name(cls)}")

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
                except _Mismatch as err:
                    errors.append(err)
            raise _Mismatch(path, f"expected {_name(hint)}, got {_got(value)}")
        if origin is Literal:
            if value not in args:
                raise _Mismatch(path, f"expected one of {list(args)!r}, got {value!r}")
            return value.value if isinstance(value, enum.Enum) else value
        if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
            allowed: tuple[type[Any], ...] = (list,) if origin is list else (list, tuple)
            if not isinstance(value, allowed):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(value)}")
            item = args[0] if args else Any
            return [self._encode(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is tuple:
            if not isinstance(value, tuple):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(value)}")
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self._encode(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
            if args == ((),):
                args = ()
            if len(args) != len(value):
                raise _Mismatch(path, f"expected {_name(hint)}, got a tuple of {len(value)}")
            return tuple(
                self._encode(v, h, f"{path}[{i}]") for i, (v, h) in enumerate(zip(value, args, strict=True))
            )
        if origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet):
            if not isinstance(value, (set, frozenset)):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(value)}")
            item = args[0] if args else Any
            out = [self._encode(v, item, f"{path}[{v!r}]") for v in value]
            return frozenset(out) if origin is frozenset else set(out)
        if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
            if not isinstance(value, Mapping):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(value)}")
            key_hint, value_hint = args if args else (Any, Any)
            return {
                self._encode(k, key_hint, f"{path} key {k!r}"): self._encode(v, value_hint, f"{path}[{k!r}]")
                for k, v in value.items()
            }
        if origin is type:
            raise _Mismatch(path, f"cannot handle the type hint {_name(hint)} (a class is not a value)")
        if isinstance(origin, type) and not isinstance(value, origin):
            raise _Mismatch(path, f"expected {_name(hint)}, got {_got(value)}")
        if isinstance(origin, type):  # a generic dataclass / attrs class / model: Box[int]
            return self._encode_object(value, type(value), path)
        raise _Mismatch(path, f"cannot handle the type hint {_name(hint)}")

    def _decode(self, data: Any, hint: Any, path: str) -> Any:
        if hint is Any or (type(data) is hint and hint in _SIMPLE):
            return data
        hook = self._hooks.get(hint)
        if hook is not None:
            try:
                return hook.decode(data)
            except Exception as exc:
                raise _Mismatch(path, f"the {_name(hint)} hook failed: {exc!r}") from exc
        origin = typing.get_origin(hint)
        if origin is not None:
            return self._decode_generic(data, hint, origin, path)
        if hint is type(None):
            if data is not None:
                raise _Mismatch(path, f"expected None, got {_got(data)}")
            return None
        if not isinstance(hint, type):
            supertype = getattr(hint, "__supertype__", None)
            if supertype is not None:
                return self._decode(data, supertype, path)
            raise _Mismatch(path, f"cannot handle the type hint {hint!r}")
        if hint is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if issubclass(hint, enum.Enum):
            if isinstance(data, hint):
                return data
            try:
                return hint(data)
            except ValueError:
                raise _Mismatch(path, f"{data!r} is not a {_name(hint)}") from None
        if issubclass(hint, datetime):
            if isinstance(data, str):  # from JSON (the command line)
                data = _parse(datetime.fromisoformat, data, hint, path)
            if not isinstance(data, datetime):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")
            if data.tzinfo is None:
                raise _Mismatch(path, "a naive datetime; use a timezone-aware one")
            return data
        if hint is UUID and isinstance(data, str):
            return _parse(UUID, data, hint, path)
        if hint is Decimal and isinstance(data, str | int):
            return _parse(Decimal, data, hint, path)
        if hint is date and isinstance(data, str):
            return _parse(date.fromisoformat, data, hint, path)
        if isinstance(data, hint) and (
            hint in (str, int, float, bool) or issubclass(hint, _CARRIED)
        ):
            return data
        if dataclasses.is_dataclass(hint) or attrs.has(hint):
            if isinstance(data, hint):
                return data  # a registered class, carried by the codec as itself
            if not isinstance(data, Mapping):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")
            return self._decode_fields(data, hint, path)
        if _is_pydantic(hint):
            if isinstance(data, hint):
                return data
            try:
                return cast(Any, hint).model_validate(data)
            except Exception as exc:
                raise _Mismatch(path, f"does not validate as {_name(hint)}: {exc}") from None
        if hint in (list, dict, tuple, set, frozenset):
            return self._decode_generic(data, hint, hint, path)
        raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")

    def _decode_fields(self, data: Mapping[str, Any], cls: type[Any], path: str) -> Any:
        # fields the class no longer has are ignored; missing ones take their defaults
        decode = self._decode
        values = {
            alias: decode(data[name], hint, f"{path}.{name}")
            for name, alias, hint in _fields_of(cls) or ()
            if name in data
        }
        try:
            return cls(**values)
        except Exception as exc:
            raise _Mismatch(path, f"cannot build {_name(cls)}: {type(exc).__name__}: {exc}") from None

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
                except _Mismatch:
                    continue
            raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")
        if origin is Literal:
            for choice in args:
                if data == choice or (isinstance(choice, enum.Enum) and data == choice.value):
                    return choice
            raise _Mismatch(path, f"expected one of {list(args)!r}, got {data!r}")
        sequence = isinstance(data, list | tuple) or (
            origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
            and isinstance(data, set | frozenset)
        )
        if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
            if not sequence or isinstance(data, set | frozenset):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")
            item = args[0] if args else Any
            items = [self._decode(v, item, f"{path}[{i}]") for i, v in enumerate(data)]
            return data if type(data) is list and _same(items, data) else items
        if origin is tuple:
            if not isinstance(data, list | tuple):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")
            if not args or (len(args) == 2 and args[1] is Ellipsis):
                item = args[0] if args else Any
                return tuple(self._decode(v, item, f"{path}[{i}]") for i, v in enumerate(data))
            if args == ((),):
                args = ()
            if len(args) != len(data):
                raise _Mismatch(path, f"expected {_name(hint)}, got {len(data)} items")
            return tuple(
                self._decode(v, h, f"{path}[{i}]") for i, (v, h) in enumerate(zip(data, args, strict=True))
            )
        if origin in (set, frozenset, collections.abc.Set, collections.abc.MutableSet):
            if not sequence:
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")
            item = args[0] if args else Any
            out = [self._decode(v, item, f"{path}[{v!r}]") for v in data]
            return frozenset(out) if origin is frozenset else set(out)
        if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
            if not isinstance(data, Mapping):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")
            key_hint, value_hint = args if args else (Any, Any)
            decoded = {
                self._decode(k, key_hint, f"{path} key {k!r}"): self._decode(v, value_hint, f"{path}[{k!r}]")
                for k, v in data.items()
            }
            if type(data) is dict and _same(decoded, data) and _same(decoded.values(), data.values()):
                return data
            return decoded
        if isinstance(origin, type) and (dataclasses.is_dataclass(origin) or attrs.has(origin)):
            if not isinstance(data, Mapping):
                raise _Mismatch(path, f"expected {_name(hint)}, got {_got(data)}")
            return self._decode_fields(data, origin, path)
        raise _Mismatch(path, f"cannot handle the type hint {_name(hint)}")

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
        hook = self._hooks.get(cls)
        if hook is not None:
            return hook.encode(value)
        if (dataclasses.is_dataclass(cls) or attrs.has(cls) or _is_pydantic(cls)) and isinstance(
            cls, type
        ):
            return self._plain(self._encode_object(value, cls, path), path)
        return value  # the codec decides (datetime, UUID, ... or a clear error)

    def _check(self, hint: Any, seen: set[Any]) -> None:
        if hint is Any or hint in self._hooks or hint is type(None):
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
                raise _Mismatch(_name(hint), "a class is not a value")
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
                raise _Mismatch(_name(hint), "not a supported generic")
            for arg in args:
                if arg is not Ellipsis and arg != ():
                    self._check(_clean(arg), seen)
            return
        if isinstance(hint, TypeVar):
            return
        if not isinstance(hint, type):
            supertype = getattr(hint, "__supertype__", None)
            if supertype is not None:
                self._check(supertype, seen)
                return
            raise _Mismatch(repr(hint), "not a type")
        if hint in seen:
            return
        seen.add(hint)
        if hint in (str, int, float, bool, datetime, list, dict, tuple, set, frozenset) or issubclass(
            hint, (*_CARRIED, enum.Enum)
        ):
            return
        if dataclasses.is_dataclass(hint) or attrs.has(hint):
            for field_hint in _field_hints(hint).values():
                self._check(_clean(field_hint), seen)
            return
        if _is_pydantic(hint):
            return
        raise _Mismatch(_name(hint), "not a dataclass, attrs class, pydantic model, enum or builtin")


def _same(decoded: Iterable[Any], data: Iterable[Any]) -> bool:
    """Whether decoding changed nothing: the stored list or dict itself is then handed over,
    so a workflow's mutable state in it carries over to an automatic continue-as-new."""
    return all(a is b for a, b in zip(decoded, data, strict=True))


def _parse(parse: Callable[[Any], Any], data: Any, hint: Any, path: str) -> Any:
    try:
        return parse(data)
    except (ValueError, TypeError, InvalidOperation):
        raise _Mismatch(path, f"{data!r} is not a valid {_name(hint)}") from None


_FIELD_HINTS: dict[type[Any], dict[str, Any]] = {}
_FIELDS: dict[type[Any], tuple[tuple[str, str, Any], ...] | None] = {}


def _fields_of(cls: type[Any]) -> tuple[tuple[str, str, Any], ...] | None:
    """(field name, ``__init__`` argument, hint) of a dataclass's or attrs class's init
    fields, resolved once; ``None`` for other classes."""
    try:
        return _FIELDS[cls]
    except KeyError:
        pass
    fields: tuple[tuple[str, str, Any], ...] | None = None
    if dataclasses.is_dataclass(cls):
        hints = _field_hints(cls)
        fields = tuple(
            (f.name, f.name, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init
        )
    elif attrs.has(cls):
        hints = _field_hints(cls)
        fields = tuple(
            (f.name, f.alias or f.name, hints.get(f.name, Any)) for f in attrs.fields(cls) if f.init
        )
    _FIELDS[cls] = fields
    return fields


def _field_hints(cls: type[Any]) -> dict[str, Any]:
    """A class's field hints, resolved once (a cache of facts about classes, not state)."""
    hints = _FIELD_HINTS.get(cls)
    if hints is None:
        try:
            hints = {k: _clean(v) for k, v in typing.get_type_hints(cls).items()}
        except Exception as exc:
            raise _Mismatch(
                "", f"cannot resolve the type hints of {_name(cls)} ({type(exc).__name__}: {exc})"
            ) from None
        _FIELD_HINTS[cls] = hints
    return hints


def _is_pydantic(cls: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # no model exists unless pydantic was imported
    return (
        pydantic is not None and isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)
    )


# -- the active converter and the call boundaries ---------------------------------------------

_DEFAULT = DataConverter()
_active: ContextVar[DataConverter] = ContextVar("riverrun_data_converter", default=_DEFAULT)


def active_converter() -> DataConverter:
    """The converter of the runtime hosting the current workflow (the default one outside)."""
    return _active.get()


def bind_converter(converter: DataConverter) -> None:
    """Make ``converter`` the active one for the calling task (the task hosting a workflow)."""
    _active.set(converter)


def check_workflow_hints(registry: Any, converter: DataConverter) -> None:
    """At registration: every hint of every workflow is one ``converter`` can handle.

    Raises:
        TypeError: naming the workflow, the parameter and the hint.
    """
    for definition in registry.definitions():
        hints: CallHints = definition.hints.get()
        for name, hint in hints.hints.items():
            converter.check_hint(hint, hints.what(name))
            if definition.auto_continue_as_new and _names_a_class(hint):
                raise TypeError(
                    f"{hints.what(name)}: an automatic continue-as-new hands the next run the "
                    f"argument objects as the run received them, and {_name(hint)} is decoded "
                    "into new objects each run; keep state for auto_continue_as_new in "
                    "builtins (dict, list), or call continue_as_new(...) with the new state"
                )
        converter.check_hint(hints.returns, hints.result_what())


def _names_a_class(hint: Any) -> bool:
    """Whether a hint involves a class decoded into new objects (dataclass, attrs, model)."""
    if isinstance(hint, type):
        return dataclasses.is_dataclass(hint) or attrs.has(hint) or _is_pydantic(hint)
    return any(_names_a_class(arg) for arg in typing.get_args(hint))


def start_workflow(definition: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """The workflow coroutine, called with its stored arguments decoded by its hints; its
    result is encoded by its return hint.

    Raises:
        SerializationError: (a ``TypeError``) an argument does not decode into its hint.
        TypeError: the arguments do not fit the signature.
    """
    hints: CallHints = definition.hints.get()
    if not hints.typed_args and not hints.typed_result:
        return cast(Coroutine[Any, Any, Any], definition.fn(*args, **kwargs))
    converter = active_converter()
    args, kwargs = converter.decode_call(hints, args, kwargs)
    inner = cast(Coroutine[Any, Any, Any], definition.fn(*args, **kwargs))
    if not hints.typed_result:
        return inner
    return _encoded_result(inner, converter, hints)


async def _encoded_result(
    inner: Coroutine[Any, Any, Any], converter: DataConverter, hints: CallHints
) -> Any:
    return converter.encode_result(hints, await inner)


def step_function(definition: Any, converter: DataConverter) -> Callable[..., Any]:
    """The step's function, taking its arguments as recorded data (decoded by its hints)."""
    hints: CallHints = definition.hints.get()
    fn: Callable[..., Any] = definition.fn
    if not hints.typed_args:
        return fn

    @functools.wraps(fn)
    async def decoded(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = converter.decode_call(hints, args, kwargs)
        return await fn(*args, **kwargs)

    return decoded
