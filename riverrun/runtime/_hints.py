"""Type hints for the data converter: a function's hints resolved (``CallHints``), and the
facts about hinted classes the converter needs (their fields, names for messages)."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal, TypeVar, Union
from uuid import UUID

import attrs

__all__ = [
    "CARRIED",
    "SIMPLE",
    "CallHints",
    "LazyHints",
    "Mismatch",
    "clean_hint",
    "field_hints",
    "fields_of",
    "hint_name",
    "is_pydantic",
    "parse_as",
    "positional_hints",
    "type_of",
    "unchanged",
]

log = logging.getLogger("riverrun.converter")

_EMPTY = inspect.Parameter.empty
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

#: hints a value of exactly that type fits as it is (the fast path)
SIMPLE: Final = frozenset({str, int, float, bool, bytes})

#: values the codec carries as themselves: a hint of one of these checks the type only
CARRIED: Final[tuple[type[Any], ...]] = (bytes, date, timedelta, UUID, Decimal)


class Mismatch(Exception):
    """Inside a walk: the value at ``path`` does not fit; ``SerializationError`` outside."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def hint_name(hint: Any) -> str:
    """``Order``, ``list[Item]``, ``Item | None``: how a hint is written, for messages."""
    if hint is type(None) or hint is None:
        return "None"
    if hint is Ellipsis:
        return "..."
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " | ".join(hint_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(map(hint_name, args))}]"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def type_of(value: Any) -> str:
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
    hints = {p.name: clean_hint(resolved.get(p.name, Any)) for p in signature.parameters.values()}
    returns = clean_hint(resolved.get("return", Any))
    return CallHints(
        kind=kind,
        name=name,
        parameters=tuple(signature.parameters.values()),
        hints=hints,
        returns=returns,
        typed_args=any(h is not Any for h in hints.values()),
    )


def clean_hint(hint: Any) -> Any:
    """``Any`` for what imposes nothing (no hint, ``object``, a bare TypeVar, ``None`` as a
    return type of a procedure is kept: it checks the procedure returns nothing)."""
    if hint is _EMPTY or hint is object or isinstance(hint, TypeVar):
        return Any
    if hint is None:
        return type(None)
    return hint



def positional_hints(hints: CallHints) -> tuple[Any, ...]:
    """The cleaned hints of ``hints``' positional parameters, in order (no ``*args``)."""
    return tuple(clean_hint(hints.hints[p.name]) for p in hints.parameters if p.kind in _POSITIONAL)


def unchanged(decoded: Iterable[Any], data: Iterable[Any]) -> bool:
    """Whether decoding changed nothing: the stored list or dict itself is then handed over,
    so a workflow's mutable state in it carries over to an automatic continue-as-new."""
    return all(a is b for a, b in zip(decoded, data, strict=True))


def parse_as(parse: Callable[[Any], Any], data: Any, hint: Any, path: str) -> Any:
    try:
        return parse(data)
    except (ValueError, TypeError, InvalidOperation):
        raise Mismatch(path, f"{data!r} is not a valid {hint_name(hint)}") from None


_FIELD_HINTS: dict[type[Any], dict[str, Any]] = {}
_FIELDS: dict[type[Any], tuple[tuple[str, str, Any], ...] | None] = {}


def fields_of(cls: type[Any]) -> tuple[tuple[str, str, Any], ...] | None:
    """(field name, ``__init__`` argument, hint) of a dataclass's or attrs class's init
    fields, resolved once; ``None`` for other classes."""
    try:
        return _FIELDS[cls]
    except KeyError:
        pass
    fields: tuple[tuple[str, str, Any], ...] | None = None
    if dataclasses.is_dataclass(cls):
        hints = field_hints(cls)
        fields = tuple(
            (f.name, f.name, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init
        )
    elif attrs.has(cls):
        hints = field_hints(cls)
        fields = tuple(
            (f.name, f.alias or f.name, hints.get(f.name, Any)) for f in attrs.fields(cls) if f.init
        )
    _FIELDS[cls] = fields
    return fields


def field_hints(cls: type[Any]) -> dict[str, Any]:
    """A class's field hints, resolved once (a cache of facts about classes, not state)."""
    hints = _FIELD_HINTS.get(cls)
    if hints is None:
        try:
            hints = {k: clean_hint(v) for k, v in typing.get_type_hints(cls).items()}
        except Exception as exc:
            raise Mismatch(
                "", f"cannot resolve the type hints of {hint_name(cls)} ({type(exc).__name__}: {exc})"
            ) from None
        _FIELD_HINTS[cls] = hints
    return hints


def is_pydantic(cls: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # no model exists unless pydantic was imported
    return (
        pydantic is not None and isinstance(cls, type) and issubclass(cls, pydantic.BaseModel)
    )


