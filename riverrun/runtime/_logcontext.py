"""Log context: every riverrun log record says which workflow, run, step and attempt it is about.

Design note. One asyncio task hosts one workflow instance, so the ambient lookup is a
``ContextVar`` (the one kind of ambient state the runtime allows). The workflow's actor binds a
:class:`LogContext` in its cell task when an incarnation starts (:func:`bind_workflow`); every
task started from there (the instance, its projection jobs, and whatever a
step starts) inherits the same object, and so do the supervision logs the actors layer writes
from the cell task, which imports nothing from here. The context is a small mutable holder:
the instance points it at its current machine (run id, execution) and marks the step attempt
in flight, so tasks started before a hand-over see the new run too. A projection job still
writing the old run's records therefore logs with the new run's id; its own messages name the
run they are about.

:class:`LogContextFilter` copies the fields onto each record as the attributes
``workflow_id``, ``run_id``, ``execution``, ``step`` and ``attempt`` (``None`` when they do not
apply), never overwriting ones a call set with ``extra=``. It is attached to every ``riverrun``
logger (a logger's filters see only the records logged through that logger itself, not those
of its children) and to the handler :func:`riverrun.configure_logging` installs, so that the
user's own records (a step logging through its module's logger) carry the context too.

The rest of the module is the runtime's log lines that need more than one call: lifecycle
events of a run, and continue-as-new (seed 002's "continuing as new" / "resuming").
Per-event lines are DEBUG and cost a level check when DEBUG is off.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import attrs

from ._events import EventType

if TYPE_CHECKING:
    from ._machine import WorkflowMachine

__all__ = [
    "CONTEXT_FIELDS",
    "LogContext",
    "LogContextFilter",
    "bind_workflow",
    "install_context_filter",
    "log_continuing",
    "log_hosted",
    "log_recorded",
    "step_attempt",
]

#: the attributes every record gets (``None`` where they do not apply)
CONTEXT_FIELDS = ("workflow_id", "run_id", "execution", "step", "attempt")

workflow_log = logging.getLogger("riverrun.workflow")
worker_log = logging.getLogger("riverrun.worker")


@attrs.define(eq=False)
class LogContext:
    """What the current task works on: one workflow id, its current run, the step in flight.

    The run's machine is held weakly: timers the task scheduled (a cancelled one stays in the
    event loop until its deadline) keep the task's context, and with it this object, alive;
    they must not keep an ended run's machine in memory too.
    """

    workflow_id: str
    _machine: weakref.ref[WorkflowMachine] | None = None
    step: str | None = None
    attempt: int | None = None

    @property
    def machine(self) -> WorkflowMachine | None:
        return self._machine() if self._machine is not None else None

    @machine.setter
    def machine(self, machine: WorkflowMachine | None) -> None:
        self._machine = weakref.ref(machine) if machine is not None else None


_current: ContextVar[LogContext | None] = ContextVar("riverrun_log_context", default=None)


def bind_workflow(workflow_id: str) -> LogContext:
    """The current task's context for ``workflow_id``: the inherited one, or a new one bound
    to this task (the caller's task hosts that workflow from now on)."""
    context = _current.get()
    if context is None or context.workflow_id != workflow_id:
        context = LogContext(workflow_id=workflow_id)
        _current.set(context)
    return context


class step_attempt:  # a function before; callers still read it as one
    """Mark one step attempt in flight (logged at DEBUG) for the records written meanwhile.

    A class, not a generator context manager: it is entered for every step attempt.
    """

    __slots__ = ("_attempt", "_context", "_name")

    def __init__(self, context: LogContext, name: str, attempt: int) -> None:
        self._context = context
        self._name = name
        self._attempt = attempt

    def __enter__(self) -> None:
        context, name, attempt = self._context, self._name, self._attempt
        context.step, context.attempt = name, attempt
        if workflow_log.isEnabledFor(logging.DEBUG):
            workflow_log.debug(
                "workflow %s run %s: step %r attempt %d",
                context.workflow_id,
                machine.run_id if (machine := context.machine) else None,
                name,
                attempt,
            )

    def __exit__(self, *exc_info: object) -> None:
        self._context.step = self._context.attempt = None


class LogContextFilter(logging.Filter):
    """Puts ``workflow_id``, ``run_id``, ``execution``, ``step`` and ``attempt`` on records.

    Attach it to a handler to give every record that handler writes (your own loggers' too)
    the workflow context of the task that logged it; riverrun's own loggers have it already.
    Values a log call passed with ``extra=`` are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        context = _current.get()
        if context is None:
            for name in CONTEXT_FIELDS:
                fields.setdefault(name, None)
            return True
        machine = context.machine
        fields.setdefault("workflow_id", context.workflow_id)
        fields.setdefault("run_id", machine.run_id if machine is not None else None)
        fields.setdefault("execution", machine.execution if machine is not None else None)
        fields.setdefault("step", context.step)
        fields.setdefault("attempt", context.attempt)
        return True


_FILTER = LogContextFilter()


def install_context_filter() -> None:
    """Attach the filter to ``riverrun`` and every ``riverrun.*`` logger created so far
    (idempotent; the runtime calls it when a worker starts)."""
    manager = logging.getLogger().manager
    names = ["riverrun", "riverrun.workflow", "riverrun.worker", "riverrun.actors"]
    names += [n for n in list(manager.loggerDict) if n.startswith("riverrun.")]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, LogContextFilter) for f in logger.filters):
            logger.addFilter(_FILTER)


install_context_filter()


# -- the runtime's log lines ----------------------------------------------------------------


def log_hosted(machine: WorkflowMachine) -> None:
    """An instance starts hosting a run: INFO when the run is fresh (started, or resuming
    after continue-as-new), DEBUG when it picks up a run with history."""
    name = machine.definition.name if machine.definition else None
    if machine.last_sequence > 1:
        if workflow_log.isEnabledFor(logging.DEBUG):
            workflow_log.debug(
                "workflow %s run %s (%s, execution %d) hosted: %d events replayed",
                machine.workflow_id,
                machine.run_id,
                name,
                machine.execution,
                machine.history_length,
            )
    elif machine.continued_from_run_id:
        workflow_log.info(
            "workflow %s run %s (%s) resuming from continue-as-new: previous run %s, "
            "continuation depth %d",
            machine.workflow_id,
            machine.run_id,
            name,
            machine.continued_from_run_id,
            machine.execution,
            extra={
                "workflow_name": name,
                "previous_run_id": machine.continued_from_run_id,
                "continuation_depth": machine.execution,
            },
        )
    else:
        workflow_log.info(
            "workflow %s run %s (%s) started",
            machine.workflow_id,
            machine.run_id,
            name,
            extra={"workflow_name": name},
        )


def log_continuing(
    machine: WorkflowMachine,
    new_run_id: str,
    reason: str | None,
    state_size: Callable[[], int],
) -> None:
    """The hand-over is written: seed 002's "continuing as new" line, at INFO."""
    if not workflow_log.isEnabledFor(logging.INFO):
        return
    size = state_size()
    name = machine.definition.name if machine.definition else None
    workflow_log.info(
        "workflow %s run %s (%s) continuing as new: history length %d events (%d bytes), "
        "state size %d bytes, execution %d, next run %s%s",
        machine.workflow_id,
        machine.run_id,
        name,
        machine.history_length,
        machine.history_bytes,
        size,
        machine.execution,
        new_run_id,
        f" ({reason})" if reason else "",
        extra={
            "workflow_name": name,
            "history_length": machine.history_length,
            "history_bytes": machine.history_bytes,
            "state_size_bytes": size,
            "new_run_id": new_run_id,
            "reason": reason,
        },
    )


def log_recorded(machine: WorkflowMachine, type_: EventType, data: Mapping[str, Any]) -> None:
    """One event was recorded live (never during replay): lifecycle lines at INFO/WARNING,
    step retries at WARNING, everything else at DEBUG."""
    handler = _RECORDED.get(type_)
    if handler is not None:
        handler(machine, data)
    elif workflow_log.isEnabledFor(logging.DEBUG):
        workflow_log.debug(
            "workflow %s run %s: recorded %s (#%d)",
            machine.workflow_id,
            machine.run_id,
            type_.value,
            machine.last_sequence,
        )


def _completed(machine: WorkflowMachine, data: Mapping[str, Any]) -> None:
    workflow_log.info(
        "workflow %s run %s completed (execution %d)",
        machine.workflow_id,
        machine.run_id,
        machine.execution,
    )


def _failed(machine: WorkflowMachine, data: Mapping[str, Any]) -> None:
    workflow_log.warning(
        "workflow %s run %s failed: %s: %s",
        machine.workflow_id,
        machine.run_id,
        data.get("error_type"),
        data.get("message"),
        extra={"error_type": data.get("error_type")},
    )


def _cancelled(machine: WorkflowMachine, data: Mapping[str, Any]) -> None:
    workflow_log.info(
        "workflow %s run %s cancelled: %s", machine.workflow_id, machine.run_id, data.get("message")
    )


def _step_retrying(machine: WorkflowMachine, data: Mapping[str, Any]) -> None:
    workflow_log.warning(
        "workflow %s run %s: step %r attempt %d failed, retrying at %s: %s: %s",
        machine.workflow_id,
        machine.run_id,
        data["name"],
        data["attempt"],
        data.get("retry_at"),
        data.get("error_type"),
        data.get("message"),
        extra={
            "step": data["name"],
            "attempt": data["attempt"],
            "error_type": data.get("error_type"),
        },
    )


def _step_failed(machine: WorkflowMachine, data: Mapping[str, Any]) -> None:
    workflow_log.warning(
        "workflow %s run %s: step %r failed after %d attempt(s): %s: %s",
        machine.workflow_id,
        machine.run_id,
        data["name"],
        data["attempts"],
        data.get("error_type"),
        data.get("message"),
        extra={
            "step": data["name"],
            "attempt": data["attempts"],
            "error_type": data.get("error_type"),
        },
    )


def _step_completed(machine: WorkflowMachine, data: Mapping[str, Any]) -> None:
    if workflow_log.isEnabledFor(logging.DEBUG):
        workflow_log.debug(
            "workflow %s run %s: step %r completed (#%d)",
            machine.workflow_id,
            machine.run_id,
            data.get("name"),
            machine.last_sequence,
        )


_RECORDED: dict[EventType, Callable[[WorkflowMachine, Mapping[str, Any]], None]] = {
    EventType.WORKFLOW_COMPLETED: _completed,
    EventType.WORKFLOW_FAILED: _failed,
    EventType.WORKFLOW_CANCELLED: _cancelled,
    EventType.STEP_RETRYING: _step_retrying,
    EventType.STEP_FAILED: _step_failed,
    EventType.STEP_COMPLETED: _step_completed,
}
