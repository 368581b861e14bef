"""``@workflow`` and ``@step``: definitions, retry policies and the workflow registry."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, cast, overload

import attrs

from .._errors import WorkflowNotRegistered
from ..persistence import check_queue
from ._hints import LazyHints

__all__ = [
    "RESERVED_START_NAMES",
    "RetryPolicy",
    "StepDefinition",
    "WorkflowDefinition",
    "WorkflowRegistry",
    "definition_of",
    "is_workflow",
    "step",
    "workflow",
]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

#: keywords of ``Client.start``, ``start_child`` and ``execute_child`` themselves: a workflow
#: parameter that can be passed by keyword may not have one of these names
RESERVED_START_NAMES = ("workflow_id", "queue", "parent_close_policy")

_WORKFLOW_ATTR = "__riverrun_workflow__"


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a failing step is retried: exponential backoff up to ``max_attempts`` attempts.

    ``max_attempts=1`` means no retry. Exceptions whose type name is in ``non_retryable``
    fail the step at once.
    """

    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    initial_interval: float = attrs.field(default=1.0, validator=_positive)
    backoff_coefficient: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    max_interval: float = attrs.field(default=60.0, validator=_positive)
    non_retryable: tuple[str, ...] = ()

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(
            min(self.initial_interval * self.backoff_coefficient ** (attempt - 1), self.max_interval)
        )


@attrs.frozen(kw_only=True)
class StepDefinition:
    name: str
    fn: Callable[..., Awaitable[Any]]
    retry: RetryPolicy
    timeout: float | None
    #: the function's type hints, resolved on first use (values are decoded by them)
    hints: LazyHints = attrs.field(
        default=attrs.Factory(lambda self: LazyHints(self.fn, "step", self.name), takes_self=True),
        eq=False,
        repr=False,
    )


@attrs.frozen(kw_only=True)
class WorkflowDefinition:
    name: str
    version: str
    fn: Callable[..., Awaitable[Any]]
    auto_continue_as_new: bool = False
    #: the function's type hints, resolved on first use (values are decoded by them)
    hints: LazyHints = attrs.field(
        default=attrs.Factory(
            lambda self: LazyHints(self.fn, "workflow", self.name), takes_self=True
        ),
        eq=False,
        repr=False,
    )
    #: the task queue its chains are served on
    queue: str = "default"


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return seconds


@overload
def step(fn: F, /) -> F: ...


@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
) -> Callable[[F], F]: ...


def step(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
) -> F | Callable[[F], F]:
    """Mark an async function as a step: its result is recorded once and replayed after.

    Inside a workflow, awaiting the step records ``step.completed`` with its result (one
    append). Outside a workflow the function simply runs, which keeps steps unit-testable.

    Args:
        name: the recorded name (defaults to the function's qualified name).
        retry: retry policy; defaults to ``RetryPolicy()`` (3 attempts, exponential backoff).
        timeout: seconds (or a timedelta) one attempt may take.
    """

    def decorate(f: F) -> F:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"@step needs an async function, got {f!r}")
        definition = StepDefinition(
            name=name or f.__qualname__,
            fn=f,
            retry=retry or RetryPolicy(),
            timeout=_seconds(timeout, "step timeout"),
        )
        from ._context import make_step_wrapper

        return cast(F, make_step_wrapper(definition))

    return decorate(fn) if fn is not None else decorate


def workflow(
    *,
    name: str | None = None,
    version: str = "1",
    auto_continue_as_new: bool = False,
    queue: str = "default",
) -> Callable[[F], F]:
    """Mark an async function as a workflow.

    Args:
        name: the registered name (defaults to the function's ``__name__``).
        version: the version of this definition; ``continue_as_new_versioned`` moves a chain
            from one registered version to another.
        auto_continue_as_new: continue as new automatically at the next safe point (the next
            await of a riverrun operation) once the history passes its limits. The new run gets
            the run's argument objects as they are at that moment, so state kept in mutable
            arguments (a dict, a list, an attrs instance) carries over.
        queue: the task queue its chains are served on: only workers serving this queue
            host them (1-64 characters of letters, digits, ``_``, ``-``).
    """
    check_queue(queue)

    def decorate(f: F) -> F:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"@workflow needs an async function, got {f!r}")
        _check_parameter_names(f)
        definition = WorkflowDefinition(
            name=name or f.__name__,
            version=str(version),
            fn=f,
            auto_continue_as_new=auto_continue_as_new,
            queue=queue,
        )
        setattr(f, _WORKFLOW_ATTR, definition)
        return cast(F, f)  # iscoroutinefunction narrowed f; it is still the caller's F

    return decorate


def _check_parameter_names(fn: Callable[..., Any]) -> None:
    """Refuse a parameter that a start's own keyword would take: ``start(wf, queue="q")``
    must never be read as the workflow's argument, nor the workflow's argument as an option."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - no signature to check
        return
    for parameter in parameters:
        if parameter.name in RESERVED_START_NAMES and parameter.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            raise TypeError(
                f"@workflow {fn.__qualname__}() has a parameter named {parameter.name!r}, a "
                f"keyword that start() and start_child() take for themselves (reserved: "
                f"{', '.join(RESERVED_START_NAMES)}): rename it, or make it positional-only "
                f"(put '/' after it) and pass it positionally"
            )


def is_workflow(obj: object) -> bool:
    """True for a function decorated with ``@workflow``."""
    return isinstance(getattr(obj, _WORKFLOW_ATTR, None), WorkflowDefinition)


def definition_of(obj: object) -> WorkflowDefinition:
    definition = getattr(obj, _WORKFLOW_ATTR, None)
    if not isinstance(definition, WorkflowDefinition):
        raise TypeError(f"{obj!r} is not a @workflow function")
    return definition


@attrs.define(eq=False)
class WorkflowRegistry:
    """Workflow definitions by name and version; the highest version is the default."""

    _by_name: dict[str, dict[str, WorkflowDefinition]] = attrs.field(factory=dict)

    @classmethod
    def of(cls, workflows: Iterable[object]) -> WorkflowRegistry:
        registry = cls()
        for wf in workflows:
            registry.register(definition_of(wf))
        return registry

    def register(self, definition: WorkflowDefinition) -> None:
        versions = self._by_name.setdefault(definition.name, {})
        existing = versions.get(definition.version)
        if existing is not None and existing.fn is not definition.fn:
            raise ValueError(
                f"workflow {definition.name!r} version {definition.version!r} is registered twice"
            )
        versions[definition.version] = definition

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def definitions(self) -> list[WorkflowDefinition]:
        """Every registered definition, every version."""
        return [d for versions in self._by_name.values() for d in versions.values()]
    def queues(self) -> list[str]:
        """The queues the registered workflows are served on, sorted."""
        return sorted({d.queue for versions in self._by_name.values() for d in versions.values()})

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str, version: str | None = None) -> WorkflowDefinition:
        versions = self._by_name.get(name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise WorkflowNotRegistered(
                f"workflow {name!r} is not registered with this runtime (registered: {known}); "
                "pass it in workflows=[...] when creating the Runtime"
            )
        if version is None:
            return versions[max(versions, key=_version_key)]
        try:
            return versions[version]
        except KeyError:
            raise WorkflowNotRegistered(
                f"workflow {name!r} has no version {version!r} "
                f"(registered versions: {', '.join(sorted(versions, key=_version_key))})"
            ) from None


def _version_key(version: str) -> tuple[int, ...] | tuple[float, str]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (float("inf"), version)
