"""The API workflow code calls: ``continue_as_new``, ``info``, ``sleep``, ``wait_for_signal``.

A ContextVar, set in the context of the workflow's main task (and so copied into every task
that workflow code creates), is the only ambient lookup (STYLE 16); every function here reads
it and raises ``NotInWorkflowError`` (a ``RuntimeError``) when called outside a workflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, NoReturn, Protocol, TypeVar, overload

import attrs

from .._errors import CancellationError, NotInWorkflowError
from ._commands import Command, ScheduleStep, StartTimer, WaitSignal
from ._definitions import StepDefinition, WorkflowDefinition
from ._typed_calls import active_converter

__all__ = [
    "ContinueAsNew",
    "WorkflowInfo",
    "continue_as_new",
    "continue_as_new_versioned",
    "current_scope",
    "info",
    "make_step_wrapper",
    "parse_duration",
    "run_command",
    "sleep",
    "wait_for_signal",
]


@attrs.frozen(kw_only=True)
class WorkflowInfo:
    """What a workflow knows about its own run (``riverrun.info()``)."""

    workflow_id: str
    workflow_name: str
    run_id: str
    execution: int
    history_length: int
    history_bytes: int
    continue_as_new_suggested: bool
    continue_as_new_reason: str | None
    continued_from_run_id: str | None


class Scope(Protocol):
    """What the state machine exposes to the functions in this module."""

    @property
    def cancel_requested(self) -> bool: ...

    def info(self) -> WorkflowInfo: ...

    def check_serializable(self, value: object, what: str) -> None: ...

    def check_continuation(self, version: str | None) -> None: ...

    @property
    def definition(self) -> WorkflowDefinition | None: ...

    def issue(self, command: Command) -> Any:
        """Number ``command`` and return the future its event will resolve."""
        ...

    def note_continue(self, request: ContinueAsNew) -> None:
        """``continue_as_new()`` was called (in any task): the run ends with it."""
        ...


T = TypeVar("T")

_scope: ContextVar[Scope | None] = ContextVar("riverrun_workflow_scope", default=None)


def current_scope(what: str) -> Scope:
    scope = _scope.get()
    if scope is None:
        raise NotInWorkflowError(
            f"{what} can only be called inside a running workflow "
            "(a function decorated with @workflow, executed by a riverrun Runtime)"
        )
    return scope


def scope_var() -> ContextVar[Scope | None]:
    return _scope


_TOKEN = object()


class ContinueAsNew(BaseException):
    """Raised by ``continue_as_new``; ends the run and starts the next one of the chain.

    Derives from ``BaseException`` so that ``except Exception`` in workflow code cannot
    swallow it. Only riverrun creates it: call ``continue_as_new(...)`` instead.
    """

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        version: str | None,
        reason: str | None,
        _token: object = None,
    ) -> None:
        if _token is not _TOKEN:
            raise TypeError("ContinueAsNew cannot be raised directly; call continue_as_new(...)")
        super().__init__(args, kwargs)
        self.new_args = args
        self.new_kwargs = kwargs
        self.version = version
        self.reason = reason

    @classmethod
    def _create(
        cls,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        version: str | None = None,
        reason: str | None = None,
    ) -> ContinueAsNew:
        return cls(args, kwargs, version, reason, _TOKEN)


def _continue(version: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn:
    scope = current_scope("continue_as_new()")
    if scope.cancel_requested:
        raise CancellationError("the workflow was cancelled; it cannot continue as new")
    scope.check_continuation(version)
    # by the hints of the workflow continued (another version's are not at hand: plain data)
    definition = scope.definition if version is None else None
    args, kwargs = active_converter().encode_call(
        definition.hints.get() if definition is not None else None, args, kwargs
    )
    scope.check_serializable({"args": args, "kwargs": kwargs}, "continue_as_new arguments")
    request = ContinueAsNew._create(args, kwargs, version=version)
    scope.note_continue(request)  # raised in a task that is not the main one, it still counts
    try:
        raise request
    finally:
        del request  # its traceback holds this frame: no reference cycle through the local


def continue_as_new(*args: Any, **kwargs: Any) -> NoReturn:
    """End this run and start a fresh run of the same workflow with these arguments.

    Never returns. The new run has an empty history whose first event carries the arguments;
    signals received and not yet consumed carry over, and so does the inbox position, so
    nothing sent to the workflow id is lost or delivered twice. At least one argument is needed:
    riverrun does not reuse the current run's arguments implicitly.

    Raises:
        ValueError: no arguments were given.
        WorkflowNotRegistered: (versioned) the target version is not registered.
        RuntimeError: called outside a workflow (``NotInWorkflowError``).
        CancellationError: the workflow has been asked to cancel.
    """
    if not args and not kwargs:
        raise ValueError(
            "continue_as_new() needs the arguments of the next run, e.g. "
            "continue_as_new(offset=offset + size); it does not reuse the current ones"
        )
    _continue(None, args, kwargs)


def continue_as_new_versioned(version: str, /, *args: Any, **kwargs: Any) -> NoReturn:
    """Like ``continue_as_new`` but the next run executes registered ``version``."""
    if not isinstance(version, str) or not version:
        raise ValueError(f"version must be a non-empty string, got {version!r}")
    if not args and not kwargs:
        raise ValueError("continue_as_new_versioned() needs the arguments of the next run")
    current_scope("continue_as_new_versioned()")
    _continue(version, args, kwargs)


def info() -> WorkflowInfo:
    """The current run's identity and history size, inside a workflow."""
    return current_scope("info()").info()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(duration: float | int | str | timedelta) -> float:
    """Seconds from ``30``, ``1.5``, ``timedelta(hours=1)``, ``"24h"``, ``"1h30m"``, ``"500ms"``."""
    if isinstance(duration, timedelta):
        seconds = duration.total_seconds()
    elif isinstance(duration, bool):
        raise TypeError("a duration cannot be a bool")
    elif isinstance(duration, int | float):
        seconds = float(duration)
    elif isinstance(duration, str):
        text = duration.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(
                f"cannot read duration {duration!r}: use seconds, a timedelta, or a string "
                "like '24h', '1h30m', '45s', '500ms', '7d'"
            )
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    else:
        raise TypeError(f"a duration must be seconds, a timedelta or a string, not {duration!r}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {duration!r}")
    return seconds


async def sleep(duration: float | int | str | timedelta) -> None:
    """Durably sleep: a timer that survives worker and server restarts."""
    current_scope("sleep()")
    await run_command(StartTimer(seconds=parse_duration(duration)))


@overload
async def wait_for_signal(name: str, timeout: float | str | timedelta | None = None) -> Any: ...


@overload
async def wait_for_signal(
    name: str, timeout: float | str | timedelta | None = None, *, type: type[T]
) -> T: ...


@overload
async def wait_for_signal(
    name: str, timeout: float | str | timedelta | None = None, *, type: Any
) -> Any: ...


async def wait_for_signal(
    name: str, timeout: float | str | timedelta | None = None, *, type: Any = Any
) -> Any:
    """Wait for the next signal called ``name`` and return its payload.

    Signals are buffered: one sent before the workflow waits for it is not lost.

    Args:
        type: the payload's type (a type hint: a dataclass, ``list[Item]``, ``X | None``...):
            the payload is decoded into it. Without it, the payload is plain data as the
            codec carries it (a dataclass sent arrives as a dict of its fields).

    Raises:
        TimeoutError: ``timeout`` passed first.
        SerializationError: the payload does not decode into ``type``.
    """
    current_scope("wait_for_signal()")
    if not isinstance(name, str) or not name:
        raise ValueError(f"signal name must be a non-empty string, got {name!r}")
    seconds = None if timeout is None else parse_duration(timeout)
    payload = await run_command(WaitSignal(name=name, timeout=seconds))
    if type is Any:
        return payload
    return active_converter().from_data(payload, type, what=f"signal {name!r} payload")


async def _decoded(awaitable: Any, decode: Callable[[Any, Any], Any], hints: Any) -> Any:
    return decode(hints, await awaitable)


def run_command(command: Command) -> Coroutine[Any, Any, Any]:
    """Issue ``command`` in the current workflow when first awaited, and wait for its result.

    A coroutine, so that ``asyncio.gather(step_a(), step_b())`` issues the steps in the order
    gather starts them (argument order), and a step called but never awaited never runs.
    """
    return _run_command(command)


async def _run_command(command: Command) -> Any:
    return await current_scope("a riverrun operation").issue(command)


def make_step_wrapper(definition: StepDefinition) -> Callable[..., Any]:
    fn = definition.fn

    def call_step(*args: Any, **kwargs: Any) -> Any:
        if _scope.get() is None:
            return fn(*args, **kwargs)
        hints = definition.hints.get()
        if not hints.typed_args and not hints.typed_result:
            return run_command(ScheduleStep(definition=definition, args=args, kwargs=kwargs))
        # typed: the arguments travel as data (a mismatch raises here, at the call), the
        # recorded result comes back decoded by the return hint, live and on replay alike
        converter = active_converter()
        args, kwargs = converter.encode_call(hints, args, kwargs)
        scheduled = run_command(ScheduleStep(definition=definition, args=args, kwargs=kwargs))
        return _decoded(scheduled, converter.decode_result, hints)

    call_step.__name__ = getattr(fn, "__name__", definition.name)
    call_step.__qualname__ = getattr(fn, "__qualname__", definition.name)
    call_step.__doc__ = fn.__doc__
    call_step.__wrapped__ = fn  # type: ignore[attr-defined]
    return call_step
