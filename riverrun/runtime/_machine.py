"""The workflow state machine: history in, commands out. No I/O, no clock, no randomness.

Design note. A workflow is an ordinary ``async def`` run as the main task of the machine's own
deterministic event loop (``_loop.py``), so workflow code may use ``asyncio.gather``,
``TaskGroup``, ``create_task``, ``wait``, ``wait_for`` and ``timeout``. Each riverrun operation
it awaits is *issued* as a ``Command`` with a future on that loop and a position (the order of
issue); the commands not resolved yet are the live set (``commands``), which the instance
carries out, several at once. ``apply(event)`` feeds one recorded event: it resolves the
future of the command the event names (by position, or timer id, or child id), then runs the
loop until every task is blocked again. Replaying a run is applying its history; running it
live is the same, with the instance appending each event before applying it. So the recorded
history alone decides what the workflow sees and in which order its tasks run, whatever order
concurrent results came in live; a workflow whose code takes another path than its history
says gets ``NonDeterminismError`` naming the position and the operation.

Giving up on an operation (a cancelled task, ``asyncio.timeout``) is recorded: a step's as
``step.cancelled``, a started timer's as ``timer.cancelled``, so a result arriving later is
never applied. ``continue_as_new()`` raised in any task ends the run; so does the main task
ending. Tasks still running are then cancelled and operations in flight abandoned.

Terminal events are authoritative on replay: a recorded ``workflow.continued_as_new`` ends
the run even if the code, replayed, would have gone on (automatic or forced continuation).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar, cast

import attrs

from .._errors import (
    CancellationError,
    NonDeterminismError,
    RiverrunError,
    WorkflowAlreadyRunning,
    WorkflowNotRegistered,
)
from ..persistence import StoredEvent
from ._commands import (
    Command,
    ScheduleStep,
    StartChild,
    StartTimer,
    WaitChild,
    WaitSignal,
)
from ._context import ContinueAsNew, WorkflowInfo, run_command, scope_var
from ._definitions import WorkflowDefinition
from ._events import EventType
from ._loop import WorkflowEventLoop
from ._patching import PatchState
from ._step_errors import error_message, rebuild_builtin
from ._typed_calls import start_workflow

__all__ = [
    "Cancelled",
    "ChildHandle",
    "Completed",
    "ContinuedAsNew",
    "Failed",
    "HistoryLimits",
    "Outcome",
    "StepFailed",
    "WorkflowMachine",
]


@attrs.frozen(kw_only=True)
class HistoryLimits:
    """Past either limit ``info().continue_as_new_suggested`` becomes true."""

    max_events: int = 10_000
    max_bytes: int = 10 * 1024 * 1024


@attrs.frozen(kw_only=True)
class Completed:
    result: Any


@attrs.frozen(kw_only=True)
class Failed:
    error_type: str
    message: str


@attrs.frozen(kw_only=True)
class Cancelled:
    message: str


@attrs.frozen(kw_only=True)
class ContinuedAsNew:
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    version: str | None
    reason: str | None


Outcome = Completed | Failed | Cancelled | ContinuedAsNew


class StepFailed(RiverrunError):
    """A step failed after its retries; raised in the workflow at the step's await.

    Builtin exception types (``ValueError``, ``KeyError``...) are re-raised as themselves; other
    types arrive as ``StepFailed`` with ``error_type`` and ``message``.
    """

    def __init__(self, step: str, error_type: str, message: str) -> None:
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.message = message


def rebuild_exception(
    step: str, error_type: str, message: str, details: Mapping[str, Any] | None = None
) -> BaseException:
    """What a failed step's await raises: a builtin exception type as itself (with the
    arguments ``step.failed`` recorded), any other type as ``StepFailed``."""
    error = rebuild_builtin(error_type, message, details or {})
    return error if error is not None else StepFailed(step, error_type, message)


@attrs.define(eq=False)
class ChildHandle:
    """A child workflow started from a workflow (``start_child``)."""

    workflow_id: str
    first_run_id: str

    async def result(self) -> Any:
        """Wait for the child chain's final result (following its continuations)."""
        return await run_command(WaitChild(child_workflow_id=self.workflow_id))


Lookup = Callable[[str, str | None], WorkflowDefinition]
_log = logging.getLogger("riverrun.workflow")
_C = TypeVar("_C", bound=Command)


def _ignore(handle: asyncio.TimerHandle) -> None:
    pass  # a cancelled timer handle is noticed by ``_sweep`` after the run


def _late_errors(
    machine: weakref.ref[WorkflowMachine], workflow_id: str, run_id: str
) -> Callable[[dict[str, Any]], None]:
    """A closed run's loop reports to its machine while the machine lives, then logs."""

    def report(context: dict[str, Any]) -> None:
        alive = machine()
        if alive is not None:
            alive._loop_error(context)
            return
        _log.warning(
            "workflow %s run %s: %s after the run ended: %r",
            workflow_id,
            run_id,
            context.get("message", "error in workflow code"),
            context.get("exception"),
        )

    return report


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


def _only_cancellations(error: BaseException) -> bool:
    """A (nested) exception group of nothing but CancellationErrors (a TaskGroup's)."""
    if isinstance(error, BaseExceptionGroup):
        return all(_only_cancellations(e) for e in error.exceptions)
    return isinstance(error, CancellationError)


@attrs.define(eq=False)
class WorkflowMachine:
    """One run's state, rebuilt from its history. See the module docstring."""

    workflow_id: str
    run_id: str
    lookup: Lookup
    check_serializable: Callable[[object, str], None]
    limits: HistoryLimits = attrs.field(factory=HistoryLimits)
    #: hook for riverrun.testing: asked at every live command; a reason it returns makes
    #: ``info().continue_as_new_suggested`` true for the rest of the run
    force_continue: Callable[[WorkflowMachine], str | None] | None = None
    forced_reason: str | None = None
    #: told when workflow code raises while being closed after its outcome is decided (the
    #: instance logs it), or when a task fails and nothing awaits it; ignored either way
    on_close_error: Callable[[WorkflowMachine, BaseException], None] | None = None

    definition: WorkflowDefinition | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    execution: int = 1
    continued_from_run_id: str | None = None
    parent: Mapping[str, Any] | None = None
    #: commands issued and not ended yet, by position (the order of issue)
    commands: dict[int, Command] = attrs.field(factory=dict)
    outcome: Outcome | None = None
    replaying: bool = False
    last_sequence: int = 0
    last_event_type: str | None = None
    history_length: int = 0
    history_bytes: int = 0
    inbox_cursor: int = 0
    cancel_requested: bool = False
    signals: deque[tuple[str, Any, int]] = attrs.field(factory=deque)
    children: dict[str, Any] = attrs.field(factory=dict)
    child_outcomes: dict[str, tuple[str, Any]] = attrs.field(factory=dict)
    #: timers started and not fired yet: timer id -> fire time (for re-arming after a crash)
    timers: dict[str, Any] = attrs.field(factory=dict)
    #: timers whose wait ended otherwise; the actor cancels their schedules
    retired_timers: list[str] = attrs.field(factory=list)
    #: ``patched()`` decisions and markers (riverrun/runtime/_patching.py)
    patches: PatchState = attrs.field(factory=PatchState)
    #: steps and started timers still in flight when the outcome was decided, by position:
    #: the instance records their cancellation (type, data) before the terminal event
    abandoned: dict[int, tuple[EventType, dict[str, Any]]] = attrs.field(factory=dict)
    loop: WorkflowEventLoop = attrs.field(init=False)
    _main: asyncio.Task[Any] | None = None
    _decided: Outcome | None = None
    _closed: bool = False
    _next_position: int = 1
    _cancel_delivered: bool = False

    def __attrs_post_init__(self) -> None:
        self.loop = WorkflowEventLoop(  # type: ignore[abstract]
            on_timer=self._call_at, on_timer_cancelled=_ignore, on_error=self._loop_error
        )

    @property
    def pending(self) -> Command | None:
        """The first live command (the one a single-await workflow is blocked on)."""
        return next(iter(self.commands.values()), None)

    # -- Scope (what riverrun.info() and continue_as_new() see) --------------------------

    def info(self) -> WorkflowInfo:
        reason = self.limit_reason()
        return WorkflowInfo(
            workflow_id=self.workflow_id,
            workflow_name=self.definition.name if self.definition else "",
            run_id=self.run_id,
            execution=self.execution,
            history_length=self.history_length,
            history_bytes=self.history_bytes,
            continue_as_new_suggested=reason is not None,
            continue_as_new_reason=reason,
            continued_from_run_id=self.continued_from_run_id,
        )

    def check_continuation(self, version: str | None) -> None:
        """Raise ``WorkflowNotRegistered`` in workflow code for an unknown target version."""
        if version is not None and self.definition is not None:
            self.lookup(self.definition.name, version)

    def limit_reason(self) -> str | None:
        if self.forced_reason is not None:
            return self.forced_reason
        if self.history_length >= self.limits.max_events:
            return f"history has {self.history_length} events (limit {self.limits.max_events})"
        if self.history_bytes >= self.limits.max_bytes:
            return f"history has {self.history_bytes} bytes (limit {self.limits.max_bytes})"
        return None

    def note_continue(self, request: ContinueAsNew) -> None:
        if self._decided is None and self.outcome is None:
            self._decided = ContinuedAsNew(
                args=request.new_args,
                kwargs=request.new_kwargs,
                version=request.version,
                reason=request.reason,
            )

    def issue(self, command: Command) -> asyncio.Future[Any]:
        """Number a command workflow code awaits; resolve it now or keep it live."""
        future = self.loop.create_future()
        command.future = future
        if self._closed or self._decided is not None or self.outcome is not None:
            future.cancel()  # the run has ended: code unwinding in finally blocks gets here
            return future
        command.position = self._next_position
        self._next_position += 1
        if isinstance(command, StartChild) and command.make_id is not None:
            command.workflow_id = command.make_id(command.position)
        awaited = not (isinstance(command, StartTimer) and command.handle is not None)
        if self.cancel_requested and not self._cancel_delivered and awaited:
            self._cancel_delivered = True
            future.set_exception(CancellationError("workflow cancelled"))
            return future
        if self._continue_now():
            return future  # never resolves: the run ends before anything awaits it again
        if isinstance(command, WaitSignal):
            payload = self._take_signal(command.name)
            if payload is not _MISSING:
                future.set_result(payload)
                return future
        if isinstance(command, WaitChild) and command.child_workflow_id in self.child_outcomes:
            kind, value = self.child_outcomes[command.child_workflow_id]
            if kind == EventType.CHILD_COMPLETED:
                future.set_result(value)
            else:
                future.set_exception(_child_exception(command.child_workflow_id, kind, value))
            return future
        self.commands[command.position] = command
        return future

    def _continue_now(self) -> bool:
        """At each command: the forcing hook, and automatic continue-as-new past a limit."""
        if self.force_continue is not None and self.forced_reason is None:
            self.forced_reason = self.force_continue(self)
        if not self.replaying and self.definition and self.definition.auto_continue_as_new:
            limit = self.limit_reason()
            if limit is not None:
                self._decided = self._auto_continue(f"automatic: {limit}")
                return True
        return False

    def _call_at(self, handle: asyncio.TimerHandle) -> None:
        """``loop.call_at`` from workflow code (``asyncio.timeout``...): a durable timer."""
        # its future is never awaited: the firing runs the handle's callback
        self.issue(StartTimer(seconds=max(0.0, handle.when() - self.loop.time()), handle=handle))

    def _loop_error(self, context: dict[str, Any]) -> None:
        """What asyncio reports on the workflow's loop: a task that failed with nobody
        awaiting it (a fire-and-forget ``create_task``), a callback that raised."""
        error = context.get("exception")
        if self._closed and self.on_close_error is not None and isinstance(error, BaseException):
            self.on_close_error(self, error)
            return
        _log.log(
            logging.DEBUG if self.replaying else logging.WARNING,
            "workflow %s run %s: %s: %r",
            self.workflow_id,
            self.run_id,
            context.get("message", "error in workflow code"),
            error,
        )

    # -- applying events -------------------------------------------------------------------

    def apply(self, event: StoredEvent) -> None:
        """Apply one recorded event (in order), then run workflow code until it blocks."""
        if event.sequence != self.last_sequence + 1 and self.last_sequence:
            raise NonDeterminismError(
                f"run {self.workflow_id}/{self.run_id}: event #{event.sequence} follows "
                f"#{self.last_sequence}; the history has a gap"
            )
        self.last_sequence = event.sequence
        self.last_event_type = event.type
        self.history_length += 1
        self.history_bytes += event.size
        handler = _HANDLERS.get(event.type)
        if handler is None:
            raise NonDeterminismError(
                f"run {self.workflow_id}/{self.run_id}: unknown event type {event.type!r} "
                f"at #{event.sequence}"
            )
        self.loop.set_time(event.timestamp.timestamp())
        if self.outcome is not None and event.type not in _TERMINAL:
            # the run has ended: only the cancellations of what it abandoned come now
            self.abandoned.pop(event.data.get("position"), None)  # type: ignore[arg-type]
            return
        handler(self, event.data, event.sequence)
        self._run()

    def _started(self, data: Mapping[str, Any], seq: int) -> None:
        if self.definition is not None:
            raise NonDeterminismError(f"run {self.run_id}: a second workflow.started at #{seq}")
        self.definition = self.lookup(data["workflow_name"], data.get("version"))
        self.args = tuple(data.get("args", ()))
        self.kwargs = dict(data.get("kwargs", {}))
        self.execution = int(data.get("execution", 1))
        self.continued_from_run_id = data.get("continued_from_run_id")
        self.parent = data.get("parent")
        self.inbox_cursor = int(data.get("inbox_cursor", 0))
        for name, payload, inbox_seq in data.get("pending_signals", ()):
            self.signals.append((name, payload, inbox_seq))
        if data.get("cancel_requested"):
            self.cancel_requested = True
        try:
            coro = start_workflow(self.definition, self.args, self.kwargs)
        except TypeError as err:
            # the arguments do not fit the signature (the body of an async def has not run):
            # a bad start, which no restart can mend; the run fails with it
            self._finish(Failed(error_type="TypeError", message=_bad_call(self.definition, err)))
            return
        # the scope lives in the main task's context, which every task it creates copies
        context = contextvars.copy_context()
        context.run(scope_var().set, self)
        self._main = self.loop.create_task(
            cast(Coroutine[Any, Any, Any], coro), name=f"workflow {self.workflow_id}", context=context
        )
        self._main.add_done_callback(self._main_done)

    def _terminal(self, data: Mapping[str, Any], seq: int, kind: str) -> None:
        # Authoritative: the recorded terminal event decides the outcome.
        if kind == EventType.WORKFLOW_COMPLETED:
            outcome: Outcome = Completed(result=data.get("result"))
        elif kind == EventType.WORKFLOW_FAILED:
            outcome = Failed(error_type=data.get("error_type", ""), message=data["message"])
        elif kind == EventType.WORKFLOW_CANCELLED:
            outcome = Cancelled(message=data.get("message", "cancelled"))
            # a termination is consumed from the inbox straight into the terminal event
            self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq") or 0))
        else:
            outcome = ContinuedAsNew(
                args=tuple(data.get("args", ())),
                kwargs=dict(data.get("kwargs", {})),
                version=data.get("version"),
                reason=data.get("reason"),
            )
        self.commands.clear()  # the terminal event is recorded: nothing is left to record
        self._finish(outcome)
        self.abandoned.clear()

    def _expect(self, kind: type[_C], data: Mapping[str, Any], seq: int, what: str) -> _C:
        """The live command the event's position names, which must be a ``kind``."""
        position = data.get("position")
        command = self.commands.get(position) if isinstance(position, int) else None
        if not isinstance(command, kind):
            live = ", ".join(_describe(c) for c in self.commands.values()) or "none"
            raise NonDeterminismError(
                f"run {self.workflow_id}/{self.run_id}: history event #{seq} records {what} "
                f"at position {position}, but the workflow code has "
                f"{_describe(command) if command else 'no such operation'} there "
                f"(operations in flight: {live}); the code changed in a way that breaks "
                "replay. Deploy code that takes the recorded path (or version the workflow); "
                "the run waits and its history is untouched"
            )
        return command

    def _end(self, command: Command) -> asyncio.Future[Any] | None:
        """Take ``command`` off the live set; its future, if code still awaits it."""
        self.commands.pop(command.position, None)
        future = command.future
        return future if future is not None and not future.done() else None

    def _step_completed(self, data: Mapping[str, Any], seq: int) -> None:
        step = self._expect(ScheduleStep, data, seq, f"step {data.get('name')!r}")
        self._check_step_name(step, data, seq)
        future = self._end(step)
        if future is not None:
            future.set_result(data.get("result"))

    def _step_failed(self, data: Mapping[str, Any], seq: int) -> None:
        step = self._expect(ScheduleStep, data, seq, f"step {data.get('name')!r}")
        self._check_step_name(step, data, seq)
        future = self._end(step)
        if future is not None:
            exc = rebuild_exception(step.definition.name, data["error_type"], data["message"], data)
            future.set_exception(exc)

    def _step_retrying(self, data: Mapping[str, Any], seq: int) -> None:
        step = self._expect(ScheduleStep, data, seq, f"step {data.get('name')!r}")
        self._check_step_name(step, data, seq)
        step.attempt = int(data["attempt"]) + 1

    def _step_cancelled(self, data: Mapping[str, Any], seq: int) -> None:
        step = self._expect(ScheduleStep, data, seq, f"a cancelled step {data.get('name')!r}")
        self._check_step_name(step, data, seq)
        self._check_cancelling(step, seq)
        self._end(step)

    def _check_cancelling(self, command: Command, seq: int) -> None:
        if not command.cancelling:
            raise NonDeterminismError(
                f"run {self.workflow_id}/{self.run_id}: history event #{seq} records the "
                f"cancellation of {_describe(command)}, but the workflow code still waits for "
                "it; the code changed in a way that breaks replay. Deploy code that takes the "
                "recorded path (or version the workflow); the run waits and its history is "
                "untouched"
            )

    def _check_step_name(self, step: ScheduleStep, data: Mapping[str, Any], seq: int) -> None:
        if step.definition.name != data.get("name"):
            raise NonDeterminismError(
                f"run {self.workflow_id}/{self.run_id}: position {step.position} ran step "
                f"{data.get('name')!r} (event #{seq}) but the code now calls step "
                f"{step.definition.name!r}; the run waits for code that matches its history"
            )

    def _step_started(self, data: Mapping[str, Any], seq: int) -> None:
        self._expect(ScheduleStep, data, seq, f"step {data.get('name')!r}")

    def _timer_started(self, data: Mapping[str, Any], seq: int) -> None:
        command = self.commands.get(data.get("position"))  # type: ignore[arg-type]
        if not isinstance(command, StartTimer | WaitSignal):
            command = self._expect(StartTimer, data, seq, "a timer")
        command.timer_id = data["timer_id"]
        self.timers[data["timer_id"]] = data.get("fire_at")

    def _timer_command(self, timer_id: str) -> StartTimer | WaitSignal | None:
        for command in self.commands.values():
            if isinstance(command, StartTimer | WaitSignal) and command.timer_id == timer_id:
                return command
        return None

    def _timer_fired(self, data: Mapping[str, Any], seq: int) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq", 0)))
        self.timers.pop(data["timer_id"], None)
        command = self._timer_command(data["timer_id"])
        if command is None:
            return  # a stale timer (from an abandoned wait); recorded, nothing to resume
        future = self._end(command)
        if isinstance(command, StartTimer):
            if command.handle is not None:
                self.loop.fire(command.handle)
            elif future is not None:
                future.set_result(None)
        elif future is not None:
            future.set_exception(TimeoutError(f"no signal {command.name!r} within the timeout"))

    def _timer_cancelled(self, data: Mapping[str, Any], seq: int) -> None:
        timer = self._expect(StartTimer, data, seq, "a cancelled timer")
        self._check_cancelling(timer, seq)
        self._end(timer)

    def _signal_received(self, data: Mapping[str, Any], seq: int) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq", 0)))
        self.signals.append((data["name"], data.get("payload"), int(data.get("inbox_seq", 0))))
        for command in list(self.commands.values()):
            if not isinstance(command, WaitSignal):
                continue
            payload = self._take_signal(command.name)
            if payload is _MISSING:
                continue
            future = self._end(command)
            if future is None:
                continue  # cannot happen: a wait given up on leaves the live set at once
            if command.timer_id is not None:
                # the timeout lost: its firing, if it still comes, is not recorded
                self.timers.pop(command.timer_id, None)
                self.retired_timers.append(command.timer_id)
            future.set_result(payload)

    def _cancellation_requested(self, data: Mapping[str, Any], seq: int) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq", 0)))
        self.cancel_requested = True
        if self._cancel_delivered:
            return
        reason = data.get("reason") or "workflow cancelled"
        # every operation workflow code awaits raises CancellationError and leaves the live
        # set (this event is their recorded end: the instance stops the steps, and the timers'
        # schedules are cancelled); a child being started is still started and recorded
        for command in list(self.commands.values()):
            future = command.future
            if future is None or future.done() or command.cancelling:
                continue
            if isinstance(command, StartTimer) and command.handle is not None:
                continue  # a timeout's timer: the code awaits what it bounds, not the timer
            self._cancel_delivered = True
            future.set_exception(CancellationError(reason))
            if isinstance(command, StartChild):
                command.cancelling = True
                continue
            self.commands.pop(command.position, None)
            if isinstance(command, StartTimer | WaitSignal) and command.timer_id is not None:
                self.timers.pop(command.timer_id, None)
                self.retired_timers.append(command.timer_id)

    def _child_started(self, data: Mapping[str, Any], seq: int) -> None:
        command = self._expect(StartChild, data, seq, "a child workflow")
        future = self._end(command)
        if data.get("error_type"):
            error_cls = (
                WorkflowNotRegistered
                if data["error_type"] == "WorkflowNotRegistered"
                else WorkflowAlreadyRunning
            )
            if future is not None:
                future.set_exception(error_cls(data.get("message", "")))
            return
        handle = ChildHandle(
            workflow_id=data["child_workflow_id"], first_run_id=data["child_run_id"]
        )
        # started even if the code gave up waiting for the start: the parent-close policy
        # applies to it as to any other child
        self.children[handle.workflow_id] = data.get("parent_close_policy", "cancel")
        if future is not None:
            future.set_result(handle)

    def _child_ended(self, data: Mapping[str, Any], seq: int, kind: str) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq", 0)))
        child_id = data["child_workflow_id"]
        self.children.pop(child_id, None)
        value = data.get("result") if kind == EventType.CHILD_COMPLETED else data.get("message")
        self.child_outcomes[child_id] = (kind, value)
        for command in list(self.commands.values()):
            if isinstance(command, WaitChild) and command.child_workflow_id == child_id:
                future = self._end(command)
                if future is None:
                    continue
                if kind == EventType.CHILD_COMPLETED:
                    future.set_result(value)
                else:
                    future.set_exception(_child_exception(child_id, kind, value))

    # -- running workflow code -----------------------------------------------------------------

    def _run(self) -> None:
        """Run workflow code until every task is blocked (or the run's outcome is decided)."""
        if self.outcome is not None or self._main is None:
            return
        try:
            self.loop.run_until_blocked(lambda: self._decided is not None)
        except BaseException as err:
            # SystemExit and KeyboardInterrupt out of a task, a busy loop: whatever workflow
            # code raises through its loop is the workflow's own doing and ends only its run
            self._decided = self._decided or Failed(
                error_type=type(err).__name__, message=error_message(err)
            )
        if self._decided is not None:
            self._finish(self._decided)
            return
        self._sweep()
        tasks = self.loop.tasks
        if len(tasks) > 64:
            tasks[:] = [task for task in tasks if not task.done()]

    def _sweep(self) -> None:
        """Commands the code gave up on during the run (a cancelled task, a timeout)."""
        for command in list(self.commands.values()):
            if command.cancelling:
                continue
            handle = command.handle if isinstance(command, StartTimer) else None
            future = command.future
            if (handle is not None and handle.cancelled()) or (
                handle is None and future is not None and future.cancelled()
            ):
                self._given_up(command)

    def _given_up(self, command: Command) -> None:
        """Workflow code no longer waits for ``command``: stop it (see ``Command.cancelling``).

        Steps and started timers stay live until their cancellation is recorded; a timer not
        started yet and waits on signals and children just leave; a child being started is
        started anyway (its ``child.started`` registers it for the parent-close policy).
        """
        if isinstance(command, ScheduleStep | StartChild):
            command.cancelling = True
        elif isinstance(command, StartTimer) and command.timer_id is not None:
            command.cancelling = True
            self.timers.pop(command.timer_id, None)
            self.retired_timers.append(command.timer_id)
        else:
            self.commands.pop(command.position, None)
            if isinstance(command, WaitSignal) and command.timer_id is not None:
                self.timers.pop(command.timer_id, None)
                self.retired_timers.append(command.timer_id)

    def _main_done(self, task: asyncio.Task[Any]) -> None:
        if self._decided is not None or self.outcome is not None:
            return
        if task.cancelled():
            # nothing outside cancels the main task, so it is the workflow's own doing
            try:
                task.result()
            except BaseException as err:
                self._decided = self._ended_by(err)
            return
        # taken, not raised here: raising it would add this frame, which holds the task, to
        # the traceback of the exception the task holds (a reference cycle)
        error = task.exception()
        if error is None:
            self._decided = self._completed(task.result())
        elif isinstance(error, ContinueAsNew):
            self.note_continue(error)
        else:
            self._decided = self._ended_by(error)

    def _ended_by(self, err: BaseException) -> Outcome:
        """The outcome of workflow code that raised ``err``: it failed, or it was cancelled."""
        if isinstance(err, CancellationError):
            if self.cancel_requested:
                return Cancelled(message=error_message(err) or "workflow cancelled")
            return Failed(error_type=type(err).__name__, message=error_message(err))
        # CancelledError included: it ends only its run
        if self.cancel_requested and _only_cancellations(err):
            leaf = _first_leaf(err)
            return Cancelled(message=error_message(leaf) or "workflow cancelled")
        return Failed(error_type=type(err).__name__, message=error_message(err))

    def _completed(self, result: Any) -> Outcome:
        # a result the codec cannot carry fails the run here (and the same way on replay)
        # rather than failing every attempt to record it
        try:
            self.check_serializable(result, "workflow result")
        except Exception as err:
            return Failed(error_type=type(err).__name__, message=error_message(err))
        return Completed(result=result)

    def _auto_continue(self, reason: str) -> Outcome:
        try:
            self.check_serializable({"args": self.args, "kwargs": self.kwargs}, "arguments")
        except Exception as err:
            return Failed(error_type=type(err).__name__, message=error_message(err))
        return ContinuedAsNew(args=self.args, kwargs=self.kwargs, version=None, reason=reason)

    def _finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self._close()

    def _close(self) -> None:
        """The outcome is decided: cancel every task left and let it unwind.

        Operations still in flight are abandoned: nothing is recorded for them in this run
        (the instance stops its steps and the run's end retires its timers). What the code's
        cleanup raises now, continue_as_new() included, cannot change the outcome; it is
        reported to ``on_close_error``.
        """
        if self._closed:
            return
        self._closed = True
        self._abandon()
        self.commands.clear()
        loop = self.loop
        left = [task for task in loop.tasks if not task.done()]
        for task in left:
            task.cancel()
        try:
            loop.run_until_blocked()
        except BaseException as err:
            if self.on_close_error is not None:
                self.on_close_error(self, err)
        for task in left:
            if task.done() and not task.cancelled():
                error = task.exception()
                if error is not None and self.on_close_error is not None:
                    self.on_close_error(self, error)
        for task in loop.tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "exception never retrieved" at collection
        # no reference cycle left through the loop or the main task (see loop.close)
        loop.close(on_error=_late_errors(weakref.ref(self), self.workflow_id, self.run_id))
        self._main = None

    def _abandon(self) -> None:
        """Note the steps and started timers in flight as the run ends (``abandoned``)."""
        for command in self.commands.values():
            if isinstance(command, ScheduleStep):
                self.abandoned[command.position] = (
                    EventType.STEP_CANCELLED,
                    {"position": command.position, "name": command.definition.name},
                )
            elif isinstance(command, StartTimer) and command.timer_id is not None:
                if not command.cancelling:
                    self.timers.pop(command.timer_id, None)
                    self.retired_timers.append(command.timer_id)
                self.abandoned[command.position] = (
                    EventType.TIMER_CANCELLED,
                    {"position": command.position, "timer_id": command.timer_id},
                )
            elif isinstance(command, WaitSignal) and command.timer_id is not None:
                self.timers.pop(command.timer_id, None)
                self.retired_timers.append(command.timer_id)

    def _take_signal(self, name: str) -> Any:
        for i, (signal_name, payload, _) in enumerate(self.signals):
            if signal_name == name:
                del self.signals[i]
                return payload
        return _MISSING

    def pending_signals(self) -> list[tuple[str, Any, int]]:
        """Signals received and not yet consumed: carried to the next run."""
        return list(self.signals)


_MISSING: Any = object()

_TERMINAL = frozenset(
    {
        EventType.WORKFLOW_COMPLETED.value,
        EventType.WORKFLOW_FAILED.value,
        EventType.WORKFLOW_CANCELLED.value,
        EventType.WORKFLOW_CONTINUED_AS_NEW.value,
    }
)


def _bad_call(definition: WorkflowDefinition, err: TypeError) -> str:
    return (
        f"workflow {definition.name!r} cannot be called with the arguments it was started "
        f"with: {err}; start it with arguments that fit its signature"
    )


def _child_exception(child_id: str, kind: str, value: Any) -> BaseException:
    if kind == EventType.CHILD_CANCELLED:
        return CancellationError(f"child workflow {child_id!r} was cancelled")
    return StepFailed(f"child:{child_id}", "ChildWorkflowFailed", str(value))


def _describe(command: Command | None) -> str:
    if command is None:
        return "no pending operation"
    if isinstance(command, ScheduleStep):
        return f"step {command.definition.name!r} (position {command.position})"
    return f"{type(command).__name__} (position {command.position})"


_HANDLERS: dict[str, Callable[[WorkflowMachine, Mapping[str, Any], int], None]] = {
    EventType.WORKFLOW_STARTED: WorkflowMachine._started,
    EventType.STEP_STARTED: WorkflowMachine._step_started,
    EventType.STEP_COMPLETED: WorkflowMachine._step_completed,
    EventType.STEP_FAILED: WorkflowMachine._step_failed,
    EventType.STEP_RETRYING: WorkflowMachine._step_retrying,
    EventType.STEP_CANCELLED: WorkflowMachine._step_cancelled,
    EventType.TIMER_STARTED: WorkflowMachine._timer_started,
    EventType.TIMER_FIRED: WorkflowMachine._timer_fired,
    EventType.TIMER_CANCELLED: WorkflowMachine._timer_cancelled,
    EventType.SIGNAL_RECEIVED: WorkflowMachine._signal_received,
    EventType.CANCELLATION_REQUESTED: WorkflowMachine._cancellation_requested,
    EventType.CHILD_STARTED: WorkflowMachine._child_started,
    EventType.WORKFLOW_PATCHED: lambda m, d, s: m.patches.applied(d, s),
}
for _kind in (EventType.CHILD_COMPLETED, EventType.CHILD_FAILED, EventType.CHILD_CANCELLED):
    _HANDLERS[_kind] = lambda m, d, s, k=_kind: m._child_ended(d, s, k)  # type: ignore[misc]
for _kind in (
    EventType.WORKFLOW_COMPLETED,
    EventType.WORKFLOW_FAILED,
    EventType.WORKFLOW_CANCELLED,
    EventType.WORKFLOW_CONTINUED_AS_NEW,
):
    _HANDLERS[_kind] = lambda m, d, s, k=_kind: m._terminal(d, s, k)  # type: ignore[misc]
