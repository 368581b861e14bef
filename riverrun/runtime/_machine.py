"""The workflow state machine: history in, commands out. No I/O, no clock, no randomness.

Design note. A workflow is an ordinary ``async def``; we drive its coroutine by hand with
``send``/``throw`` instead of scheduling it on the event loop. Each await of a riverrun
operation yields a ``Command`` and numbers it (its *position*). ``apply(event)`` feeds one
recorded event: an event that resolves the command the coroutine is blocked on resumes the
coroutine until it blocks on the next command or ends. Replaying a run is applying its
history; running it live is the same, with the actor appending each event before applying
it. So the recorded history alone decides what the workflow sees, and a workflow whose code
takes another path than its history says gets ``NonDeterminismError`` naming the position.

Terminal events are authoritative on replay: a recorded ``workflow.continued_as_new`` ends
the run even if the code, replayed, would have gone on (automatic or forced continuation).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, cast

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
    command_awaitable,
)
from ._context import ContinueAsNew, WorkflowInfo, scope_var
from ._definitions import WorkflowDefinition
from ._events import EventType
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
        return await command_awaitable(WaitChild(child_workflow_id=self.workflow_id))


Lookup = Callable[[str, str | None], WorkflowDefinition]


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
    #: told when the coroutine raises while being closed after its outcome is decided (the
    #: instance logs it); the error is ignored either way
    on_close_error: Callable[[WorkflowMachine, BaseException], None] | None = None

    definition: WorkflowDefinition | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.field(factory=dict)
    execution: int = 1
    continued_from_run_id: str | None = None
    parent: Mapping[str, Any] | None = None
    pending: Command | None = None
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
    step_attempts: int = 0
    #: timers started and not fired yet: timer id -> fire time (for re-arming after a crash)
    timers: dict[str, Any] = attrs.field(factory=dict)
    #: timers whose wait ended otherwise; the actor cancels their schedules
    retired_timers: list[str] = attrs.field(factory=list)
    #: ``patched()`` decisions and markers (riverrun/runtime/_patching.py)
    patches: PatchState = attrs.field(factory=PatchState)
    _coro: Coroutine[Any, Any, Any] | None = None
    _next_position: int = 1
    _cancel_delivered: bool = False

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

    # -- applying events -------------------------------------------------------------------

    def apply(self, event: StoredEvent) -> None:
        """Apply one recorded event (in order); may resume the workflow coroutine."""
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
        handler(self, event.data, event.sequence)

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
        self._coro = cast(Coroutine[Any, Any, Any], coro)
        self._resume(None, None)

    def _terminal(self, data: Mapping[str, Any], seq: int, kind: str) -> None:
        # Authoritative: the recorded terminal event decides the outcome.
        if kind == EventType.WORKFLOW_COMPLETED:
            self.outcome = Completed(result=data.get("result"))
        elif kind == EventType.WORKFLOW_FAILED:
            self.outcome = Failed(error_type=data.get("error_type", ""), message=data["message"])
        elif kind == EventType.WORKFLOW_CANCELLED:
            self.outcome = Cancelled(message=data.get("message", "cancelled"))
            # a termination is consumed from the inbox straight into the terminal event
            self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq") or 0))
        else:
            self.outcome = ContinuedAsNew(
                args=tuple(data.get("args", ())),
                kwargs=dict(data.get("kwargs", {})),
                version=data.get("version"),
                reason=data.get("reason"),
            )
        self.pending = None
        self._close()

    def _expect(self, kind: type[Command], data: Mapping[str, Any], seq: int, what: str) -> Any:
        pending = self.pending
        position = data.get("position")
        if not isinstance(pending, kind) or pending.position != position:
            raise NonDeterminismError(
                f"run {self.workflow_id}/{self.run_id}: history event #{seq} records {what} "
                f"at position {position}, but the workflow code is now at "
                f"{_describe(pending)}; the code changed in a way that breaks replay. "
                "Deploy code that takes the recorded path (or version the workflow); "
                "the run waits and its history is untouched"
            )
        return pending

    def _step_completed(self, data: Mapping[str, Any], seq: int) -> None:
        step = self._expect(ScheduleStep, data, seq, f"step {data.get('name')!r}")
        self._check_step_name(step, data, seq)
        self.step_attempts = 0
        self._resume(data.get("result"), None)

    def _step_failed(self, data: Mapping[str, Any], seq: int) -> None:
        step = self._expect(ScheduleStep, data, seq, f"step {data.get('name')!r}")
        self._check_step_name(step, data, seq)
        self.step_attempts = 0
        exc = rebuild_exception(step.definition.name, data["error_type"], data["message"], data)
        self._resume(None, exc)

    def _step_retrying(self, data: Mapping[str, Any], seq: int) -> None:
        step = self._expect(ScheduleStep, data, seq, f"step {data.get('name')!r}")
        self._check_step_name(step, data, seq)
        self.step_attempts = int(data["attempt"])

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
        pending = self.pending
        if not isinstance(pending, StartTimer | WaitSignal) or pending.position != data.get(
            "position"
        ):
            self._expect(StartTimer, data, seq, "a timer")
        assert isinstance(pending, StartTimer | WaitSignal)
        pending.timer_id = data["timer_id"]
        self.timers[data["timer_id"]] = data.get("fire_at")

    def _timer_fired(self, data: Mapping[str, Any], seq: int) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq", 0)))
        self.timers.pop(data["timer_id"], None)
        pending = self.pending
        if isinstance(pending, StartTimer) and pending.timer_id == data["timer_id"]:
            self._resume(None, None)
        elif isinstance(pending, WaitSignal) and pending.timer_id == data["timer_id"]:
            self._resume(None, TimeoutError(f"no signal {pending.name!r} within the timeout"))
        # else: a stale timer (from an abandoned wait); recorded, nothing to resume.

    def _signal_received(self, data: Mapping[str, Any], seq: int) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq", 0)))
        self.signals.append((data["name"], data.get("payload"), int(data.get("inbox_seq", 0))))
        pending = self.pending
        if isinstance(pending, WaitSignal):
            payload = self._take_signal(pending.name)
            if payload is not _MISSING:
                if pending.timer_id is not None:
                    # the timeout lost: its firing, if it still comes, is not recorded
                    self.timers.pop(pending.timer_id, None)
                    self.retired_timers.append(pending.timer_id)
                self._resume(payload, None)

    def _cancellation_requested(self, data: Mapping[str, Any], seq: int) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq", 0)))
        self.cancel_requested = True
        if self.pending is not None and not self._cancel_delivered:
            self._cancel_delivered = True
            self._resume(None, CancellationError(data.get("reason") or "workflow cancelled"))

    def _child_started(self, data: Mapping[str, Any], seq: int) -> None:
        self._expect(StartChild, data, seq, "a child workflow")
        if data.get("error_type"):
            error_cls = (
                WorkflowNotRegistered
                if data["error_type"] == "WorkflowNotRegistered"
                else WorkflowAlreadyRunning
            )
            self._resume(None, error_cls(data.get("message", "")))
            return
        handle = ChildHandle(
            workflow_id=data["child_workflow_id"], first_run_id=data["child_run_id"]
        )
        self.children[handle.workflow_id] = data.get("parent_close_policy", "cancel")
        self._resume(handle, None)

    def _child_ended(self, data: Mapping[str, Any], seq: int, kind: str) -> None:
        self.inbox_cursor = max(self.inbox_cursor, int(data.get("inbox_seq", 0)))
        child_id = data["child_workflow_id"]
        self.children.pop(child_id, None)
        value = data.get("result") if kind == EventType.CHILD_COMPLETED else data.get("message")
        self.child_outcomes[child_id] = (kind, value)
        pending = self.pending
        if isinstance(pending, WaitChild) and pending.child_workflow_id == child_id:
            if kind == EventType.CHILD_COMPLETED:
                self._resume(value, None)
            else:
                self._resume(None, _child_exception(child_id, kind, value))

    # -- driving the coroutine ---------------------------------------------------------------

    def _resume(self, value: Any, exc: BaseException | None) -> None:
        """Run the coroutine until it blocks on a command nothing recorded resolves yet."""
        coro = self._coro
        if coro is None or self.outcome is not None:
            return
        token = scope_var().set(self)
        try:
            while True:
                self.pending = None
                try:
                    yielded = coro.send(value) if exc is None else coro.throw(exc)
                except StopIteration as stop:
                    self._finish(self._completed(stop.value))
                    return
                except ContinueAsNew as can:
                    self._finish(
                        ContinuedAsNew(
                            args=can.new_args,
                            kwargs=can.new_kwargs,
                            version=can.version,
                            reason=can.reason,
                        )
                    )
                    return
                except CancellationError as err:
                    if self.cancel_requested:
                        self._finish(Cancelled(message=error_message(err) or "workflow cancelled"))
                    else:
                        self._finish(
                            Failed(error_type=type(err).__name__, message=error_message(err))
                        )
                    return
                except BaseException as err:
                    # SystemExit, KeyboardInterrupt, CancelledError included: the coroutine is
                    # driven by hand, never by the event loop, so whatever it raises is the
                    # workflow's own doing and ends only its run
                    self._finish(Failed(error_type=type(err).__name__, message=error_message(err)))
                    return
                value, exc = None, None
                if not isinstance(yielded, Command):
                    exc = TypeError(
                        f"workflow code awaited {yielded!r}, which is not a riverrun operation; "
                        "inside a workflow await only steps, riverrun.sleep, wait_for_signal "
                        "and child workflows (use riverrun.sleep instead of asyncio.sleep)"
                    )
                    continue
                yielded.position = self._next_position
                self._next_position += 1
                self.pending = yielded
                immediate = self._try_immediate(yielded)
                if immediate is None:
                    return
                value, exc = immediate
        finally:
            scope_var().reset(token)

    def _try_immediate(self, command: Command) -> tuple[Any, BaseException | None] | None:
        """Resolve a command without waiting for history, or return None to block on it."""
        if self.cancel_requested and not self._cancel_delivered:
            self._cancel_delivered = True
            return None, CancellationError("workflow cancelled")
        if self.force_continue is not None and self.forced_reason is None:
            self.forced_reason = self.force_continue(self)
        if not self.replaying and self.definition and self.definition.auto_continue_as_new:
            limit = self.limit_reason()
            if limit is not None:
                self._auto_continue(f"automatic: {limit}")
                return None
        if isinstance(command, WaitSignal):
            payload = self._take_signal(command.name)
            if payload is not _MISSING:
                return payload, None
        if isinstance(command, WaitChild) and command.child_workflow_id in self.child_outcomes:
            kind, value = self.child_outcomes[command.child_workflow_id]
            if kind == EventType.CHILD_COMPLETED:
                return value, None
            return None, _child_exception(command.child_workflow_id, kind, value)
        return None

    def _completed(self, result: Any) -> Outcome:
        # a result the codec cannot carry fails the run here (and the same way on replay)
        # rather than failing every attempt to record it
        try:
            self.check_serializable(result, "workflow result")
        except Exception as err:
            return Failed(error_type=type(err).__name__, message=error_message(err))
        return Completed(result=result)

    def _auto_continue(self, reason: str) -> None:
        try:
            self.check_serializable({"args": self.args, "kwargs": self.kwargs}, "arguments")
        except Exception as err:
            self._finish(Failed(error_type=type(err).__name__, message=error_message(err)))
            return
        self._finish(
            ContinuedAsNew(args=self.args, kwargs=self.kwargs, version=None, reason=reason)
        )

    def _finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.pending = None
        self._close()

    def _close(self) -> None:
        coro, self._coro = self._coro, None
        if coro is not None:
            token = scope_var().set(self)
            try:
                coro.close()
            except BaseException as err:
                # The outcome is decided (a terminate, an automatic continue-as-new, a recorded
                # terminal event): what the code's cleanup raises now, continue_as_new()
                # included, cannot change it. Driven by hand, the coroutine holds no
                # cancellation of the host, so nothing here needs to propagate.
                if self.on_close_error is not None:
                    self.on_close_error(self, err)
            finally:
                scope_var().reset(token)

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
    EventType.TIMER_STARTED: WorkflowMachine._timer_started,
    EventType.TIMER_FIRED: WorkflowMachine._timer_fired,
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
