"""A failed step's exception as data, and back: what ``step.failed`` records and what the
workflow's await raises, live and on replay alike.

Design note. Only builtin exception types are rebuilt as themselves, from plain data (their
``args`` and a few attributes that are not in ``args``, such as ``OSError.filename``): never
pickle, never a user class looked up by name. Anything else arrives as ``StepFailed`` with
the type's name and the message. Values the codec cannot carry, or too large to keep in an
event, are left out: the exception is then rebuilt from its message alone.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Mapping
from typing import Any

from .._errors import CodecError, SerializationError
from ..persistence._codec import Codec

__all__ = [
    "MAX_MESSAGE_CHARS",
    "bounded_message",
    "error_details",
    "error_message",
    "rebuild_builtin",
]

#: a failure message longer than this is cut (an event must fit the NATS max payload)
MAX_MESSAGE_CHARS = 16 * 1024
#: a builtin exception's arguments are recorded only when they encode within this
_MAX_DETAIL_BYTES = 16 * 1024

#: attributes of builtin exceptions that their ``args`` do not carry, by the class that has them
_ATTRIBUTES: tuple[tuple[type[BaseException], tuple[str, ...]], ...] = (
    (OSError, ("filename", "filename2")),
    (ImportError, ("name", "path")),
    (AttributeError, ("name",)),
    (NameError, ("name",)),
)

#: riverrun's own errors a step failure can carry (the codec refused the step's result)
_RIVERRUN_TYPES: dict[str, type[Exception]] = {"SerializationError": SerializationError}


def bounded_message(message: str) -> str:
    """``message``, cut to ``MAX_MESSAGE_CHARS`` with a note saying how much was cut."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    cut = len(message) - MAX_MESSAGE_CHARS
    return f"{message[:MAX_MESSAGE_CHARS]}... ({cut} more characters cut)"


def error_message(error: BaseException) -> str:
    """``str(error)``, cut to size; never raises (a user's ``__str__`` may)."""
    try:
        message = str(error)
    except Exception as exc:
        message = f"<{type(error).__name__}: str() raised {type(exc).__name__}>"
    return bounded_message(message)


def error_details(error: BaseException, codec: Codec) -> dict[str, Any]:
    """``{"args": [...], "attributes": {...}}`` for a builtin exception, or ``{}``."""
    cls = type(error)
    if getattr(builtins, cls.__name__, None) is not cls or not issubclass(cls, Exception):
        return {}
    details: dict[str, Any] = {"args": list(error.args)}
    attributes = {
        name: getattr(error, name)
        for base, names in _ATTRIBUTES
        if isinstance(error, base)
        for name in names
        if getattr(error, name, None) is not None
    }
    if attributes:
        details["attributes"] = attributes
    try:
        size = len(codec.dumps(details, what="exception details"))
    except (CodecError, RecursionError):
        return {}
    return details if size <= _MAX_DETAIL_BYTES else {}


def rebuild_builtin(
    error_type: str, message: str, details: Mapping[str, Any]
) -> BaseException | None:
    """The exception recorded as ``error_type``, if it is a builtin (or a riverrun error a
    step failure may carry); None for any other type."""
    riverrun_type = _RIVERRUN_TYPES.get(error_type)
    if riverrun_type is not None:
        return riverrun_type(message)
    cls = getattr(builtins, error_type, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return None
    args = details.get("args")
    attributes = details.get("attributes") or {}
    error: Exception
    try:
        if isinstance(args, list):
            if issubclass(cls, OSError) and attributes and len(args) == 2:
                # OSError(errno, strerror, filename, winerror, filename2)
                error = cls(
                    *args, attributes.get("filename"), None, attributes.get("filename2")
                )
            else:
                error = cls(*args)
        else:  # recorded before arguments were kept, or they could not be
            error = cls(message)
    except Exception:  # a builtin with another constructor signature
        try:
            error = cls(message)
        except Exception:
            return None
    for name, value in attributes.items():
        if getattr(error, name, None) != value:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(error, name, value)
    return error
