"""Where typed values cross into user code: the workflow function, the step function, and
the converter workflow code reaches (the runtime's, bound to the task hosting a workflow)."""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from typing import Any, cast

import attrs

from ._converter import DataConverter
from ._hints import CallHints, hint_name, is_pydantic

__all__ = [
    "active_converter",
    "bind_converter",
    "check_workflow_hints",
    "start_workflow",
    "step_function",
]

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
                    f"argument objects as the run received them, and {hint_name(hint)} is decoded "
                    "into new objects each run; keep state for auto_continue_as_new in "
                    "builtins (dict, list), or call continue_as_new(...) with the new state"
                )
        converter.check_hint(hints.returns, hints.result_what())


def _names_a_class(hint: Any) -> bool:
    """Whether a hint involves a class decoded into new objects (dataclass, attrs, model)."""
    if isinstance(hint, type):
        return dataclasses.is_dataclass(hint) or attrs.has(hint) or is_pydantic(hint)
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


def step_function(
    definition: Any,
    converter: DataConverter,
    args: tuple[Any, ...] | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """The step's function, taking its arguments as recorded data (decoded by its hints).

    Given the recorded ``args`` and ``kwargs`` it is to be called with, the function itself
    when decoding would hand every one of them over as it is (``DataConverter._passes``).
    """
    hints: CallHints = definition.hints.get()
    fn: Callable[..., Any] = definition.fn
    if not hints.typed_args:
        return fn
    if args is not None and not kwargs and converter._passes(hints, args):
        return fn

    @functools.wraps(fn)
    async def decoded(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = converter.decode_call(hints, args, kwargs)
        return await fn(*args, **kwargs)

    return decoded

