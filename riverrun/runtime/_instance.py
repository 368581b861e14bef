"""A workflow instance: hosts one ``workflow_id``'s chain, doing the I/O around the machine.

Design note. The instance replays the current run's history into a ``WorkflowMachine``, then
carries out the commands the workflow has in flight: it runs steps as concurrent tasks (one
append per step: ``step.completed``, bounded per worker by ``max_concurrent_steps``), arms
durable timers, starts children, and otherwise waits for its inbox. Every append goes through
``_record`` (one writer per run: a lock), which appends with the run's last sequence as the
fence and then applies the same event to the machine, so the live path and the replay path
are one.

Continue-as-new is ``_hand_over``: ONE append, fenced by the old run's last sequence, of the
old run's terminal event (the link), which carries everything the new run needs. That append
commits. The new run's first event is then rolled forward from the link (``_successor``,
written with expected last sequence 0, so at most one writer creates it), by this instance or
by whichever instance later finds the link without its successor. Everything else (run
records, chain head, truncation, inbox purge, children's cancellation) is a projection of the
link, redone idempotently by ``_complete_hand_over`` whenever an instance finds a run whose
last event is ``workflow.continued_as_new``: a crash anywhere leaves the old run running or a
link that recovery completes, never two successors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._errors import (
    ConcurrencyConflict,
    NonDeterminismError,
    SerializationError,
    WorkflowAlreadyRunning,
    WorkflowNotRegistered,
)
from ..persistence import (
    DEFAULT_QUEUE,
    InboxMessage,
    NewEvent,
    RunKey,
    RunStatus,
    StoredEvent,
    WorkflowRun,
    as_stored,
)
from ._commands import Command, ScheduleStep, StartChild, StartTimer, WaitSignal
from ._containment import is_step_fault, log_close_error, log_step_fault
from ._events import EventType
from ._handover import roll_forward, successor_first_event, successor_key
from ._logcontext import (
    LogContext,
    bind_workflow,
    log_continuing,
    log_hosted,
    log_recorded,
    step_attempt,
    workflow_log,
)
from ._machine import Cancelled, Completed, ContinuedAsNew, Failed, Outcome, WorkflowMachine
from ._patching import marker_data, replay_order
from ._quarantine import note_quarantined, quarantine_record, unusable
from ._services import STOPPING
from ._step_errors import bounded_message, error_details, error_message
from ._typed_calls import bind_converter, step_function
from ._versions import pin_version, record_version

if TYPE_CHECKING:
    from ._services import Services

__all__ = ["WorkflowInstance", "next_run_id"]

_RUN_NAMESPACE = uuid.UUID("6f1d1f6c-8a57-4d1e-9b8e-3d3b8f4f1a10")


def next_run_id(run_id: str) -> str:
    """The successor's run id is derived from the old one: a redone hand-over is idempotent."""
    return uuid.uuid5(_RUN_NAMESPACE, f"{run_id}/next").hex


class Passivate(Exception):
    """Internal: the instance has been idle long enough to leave memory."""


class WorkflowInstance:
    """Runs one workflow id's chain until it ends, passivates, or is stopped."""

    def __init__(self, services: Services, workflow_id: str, queue: str = DEFAULT_QUEUE) -> None:
        self.services = services
        self.workflow_id = workflow_id
        #: the task queue the chain is served on (its inbox lives there)
        self.queue = queue
        self.machine: WorkflowMachine | None = None
        self.key: RunKey | None = None
        self._wakeup = anyio.Event()
        #: steps running, by position: the cancel scope of each one's task
        self._steps: dict[int, anyio.CancelScope] = {}
        #: one writer per run: appends are serialized (steps end concurrently)
        # (asyncio's lock: taking a free one costs no task lookup; anyio's Lock looks the
        # current task up on acquire and release, twice per recorded event)
        self._record_lock = asyncio.Lock()
        self._skipped_to = 0
        self._link: StoredEvent | None = None
        #: cancelled by ``stop()``: the worker hands the workflow's partition over
        self._host_scope = anyio.CancelScope()
        self._stopping = False
        #: the inbox may hold unread messages: true at load, set again by notify()
        self._inbox_dirty = True
        self._first_run_id = ""
        self.finished = False
        self._log = LogContext(workflow_id=workflow_id)
        self._obs = services.telemetry.instance(workflow_id)

    def __repr__(self) -> str:
        run = self.key.run_id if self.key else None
        return f"<WorkflowInstance {self.workflow_id} run={run}>"

    # -- called by the worker -------------------------------------------------------------

    def notify(self, message: InboxMessage | None = None) -> None:
        """Something arrived in this workflow's inbox."""
        self._inbox_dirty = True
        self._wakeup.set()
        if message is not None and message.kind in STOPPING:
            for scope in self._steps.values():
                scope.cancel()  # steps in flight are cancelled cooperatively

    def stop(self) -> None:
        """Stop hosting (the partition is handed over): projections already queued finish."""
        self._stopping = True
        self._host_scope.cancel()

    async def run(self) -> None:
        """Host the chain: replay, drive, hand over, until the chain ends or goes idle.

        The run-store projection of each hand-over (records, head, truncation) is derived
        from the log, so it runs as an ordered background job while the next run already
        executes; the chain's final record update queues behind it.
        """
        services = self.services
        self._log = bind_workflow(self.workflow_id)
        bind_converter(services.payloads.converter)  # workflow code decodes values with it
        # a chain just started in this process: its first event is known, its head is too
        # (the worker hands it over only if it owns the chain's partition)
        fresh = services.take_fresh(self.workflow_id)
        if fresh is not None:
            run_id = fresh.key.run_id
            self._first_run_id = run_id
            queue = fresh.data.get("queue")
            if isinstance(queue, str):
                self.queue = queue
        else:
            async with services.rehydrating:
                head = await services.backend.runs.get_head(self.workflow_id)
            if head is None:
                self.finished = True
                return
            run_id = head.value.current_run_id
            self.queue = head.value.queue
            self._first_run_id = head.value.first_run_id
        # The worker hosts the workflow because it owns the workflow's partition (one lease
        # per partition, kept by the worker); the log's fence backs this up: a worker that
        # lost the partition fails its next append with ConcurrencyConflict.
        self._host_scope = anyio.CancelScope()
        if self._stopping:
            self._host_scope.cancel()
        try:
            async with anyio.create_task_group() as tg:
                # the job runner (started by the first job) ends once `jobs` is closed and
                # every queued job is done
                jobs = _Jobs(tg)
                try:
                    with contextlib.suppress(Passivate), self._host_scope:
                        await self._host(run_id, jobs, fresh)
                finally:
                    jobs.close()
                await jobs.run_last()
        except BaseExceptionGroup as group:
            # the supervisor decides by exception type: hand it the error itself
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            self._obs.close()

    async def _host(
        self,
        run_id: str,
        jobs: _Jobs,
        fresh: StoredEvent | None = None,
    ) -> None:
        if fresh is None:
            async with self.services.rehydrating:
                machine = await self._load(run_id)
        else:
            machine = await self._start_fresh(fresh)
        log_hosted(machine)
        if machine.continued_from_run_id:
            # the hand-over that made this run may have stopped between moving the head and
            # truncating the old run (even if this run has since continued too: the instance
            # runs ahead of its queued projections); redoing retention is idempotent and cheap
            await jobs.send(
                functools.partial(
                    self.services.apply_retention, self.workflow_id, machine.continued_from_run_id
                )
            )
        while True:
            outcome = machine.outcome
            if outcome is None:
                await self._resume_pending(machine)
                outcome = await self._drive(machine)
            await self._record_abandoned(machine)
            if isinstance(outcome, ContinuedAsNew):
                old_run_id = machine.run_id
                cursor = self._cursor(machine)
                live = machine.last_event_type != EventType.WORKFLOW_CONTINUED_AS_NEW
                if live:
                    link = await self._hand_over(machine, outcome)
                else:
                    # recovered: a link, maybe without its successor yet
                    assert self._link is not None
                    link = self._link
                # the successor exists before any projection may point the head at it
                successor = await self._successor(link, live=live)
                await jobs.send(
                    functools.partial(self._complete_hand_over, machine, old_run_id, cursor)
                )
                machine = successor
                log_hosted(machine)
                continue
            if machine.last_event_type not in _TERMINAL_TYPES:
                await self._record_terminal(machine, outcome)
            cursor = self._cursor(machine)
            await jobs.send(
                functools.partial(self._complete_chain, machine, outcome, machine.run_id, cursor),
                last=True,
            )
            self.finished = True
            return

    # -- loading and replaying ------------------------------------------------------------

    def _new_machine(self, run_id: str) -> WorkflowMachine:
        services = self.services
        machine = WorkflowMachine(
            workflow_id=self.workflow_id,
            run_id=run_id,
            lookup=services.registry.get,
            check_serializable=services.payloads.check,
            limits=services.options.history_limits,
            force_continue=services.force_continue,
            on_close_error=log_close_error,
        )
        self.machine = machine
        self._log.machine = machine
        self.key = RunKey(workflow_id=self.workflow_id, run_id=run_id)
        self._skipped_to = 0
        self._inbox_dirty = True
        return machine

    async def _load(self, run_id: str) -> WorkflowMachine:
        machine = self._new_machine(run_id)
        assert self.key is not None
        pinned = await pin_version(self.services, machine)
        machine.replaying = True
        last: StoredEvent | None = None
        events = self.services.backend.events.stream(self.key)
        async for event in replay_order(events, machine.patches):
            await self._apply(machine, event)
            last = event
        machine.replaying = False
        #: the run's link as stored, if it continued as new: its successor is rolled
        #: forward from it (``_successor``)
        self._link = (
            last if last is not None and last.type == EventType.WORKFLOW_CONTINUED_AS_NEW.value else None
        )
        await self._note_quarantined()  # foreign messages the replay skipped, if any
        if machine.definition is None:
            raise NonDeterminismError(
                f"run {self.workflow_id}/{run_id} has no workflow.started event; "
                "its history is missing or was deleted"
            )
        await record_version(self.services, machine, pinned)
        return machine

    async def _start_fresh(self, first: StoredEvent) -> WorkflowMachine:
        """A run whose first event this process just wrote (``Services.take_fresh``): no
        read. Anything appended to it meanwhile (a terminate) fails our next append's fence."""
        dirty = self._inbox_dirty
        machine = self._new_machine(first.key.run_id)
        self._inbox_dirty = dirty
        self._link = None
        await self._apply(machine, first)
        return machine

    async def _apply(self, machine: WorkflowMachine, event: StoredEvent) -> None:
        event = await self._materialize(event)
        machine.apply(event)
        self._obs.applied(machine, event)

    async def _materialize(self, event: StoredEvent) -> StoredEvent:
        """The event as workflow code sees it: claim-check references replaced by their
        values. The live path (``_record``, ``_hand_over``) and replay both come here.

        Its ``size``, which ``info().history_bytes`` adds up, is the encoded size of the
        stored data (references, not the values they stand for), measured here so that it is
        the same live and on replay.
        """
        return await self._materialized(
            event.key, event.sequence, event.type, event.timestamp, event.data,
            event.schema_version,
        )

    async def _materialized(
        self,
        key: RunKey,
        sequence: int,
        type_: str,
        timestamp: datetime,
        stored: Mapping[str, Any],
        schema_version: int,
    ) -> StoredEvent:
        """``_materialize`` of the event these fields make (the live path builds no event to
        throw away); nothing to resolve (no reference) costs no await."""
        payloads = self.services.payloads
        size = len(self.services.codec.dumps(stored, what=f"{type_} event data"))
        data = await payloads.unpack_data(stored) if payloads.has_refs(stored) else stored
        if type_ == EventType.WORKFLOW_STARTED and data.get("pending_signals"):
            data = dict(data)
            data["pending_signals"] = await payloads.unpack_signals(data["pending_signals"])
        return StoredEvent(
            key=key,
            sequence=sequence,
            type=type_,
            timestamp=timestamp,
            data=data,
            schema_version=schema_version,
            size=size,
        )

    async def _record(
        self, machine: WorkflowMachine, type_: EventType, data: Mapping[str, Any]
    ) -> None:
        """Append one event to the current run (fenced) and apply it to the machine.

        ``data`` is what is stored: values as the codec carries them (``Payloads.pack``),
        those over the claim-check threshold replaced by references. The machine gets the
        event through ``_materialize``, as on replay, before anything is written: an event
        whose references cannot be resolved is never recorded.
        """
        async with self._record_lock:
            await self._append_apply(machine, type_, data)

    async def _record_live(
        self, machine: WorkflowMachine, command: Command, type_: EventType, data: Mapping[str, Any]
    ) -> bool:
        """``_record`` if ``command`` is still live when its turn to write comes (the run may
        have ended, or the workflow given up on it, meanwhile). Never torn by cancellation."""
        with anyio.CancelScope(shield=True):
            async with self._record_lock:
                live = machine.commands.get(command.position) is command
                if type_ in _STEP_RESULTS and command.cancelling:
                    live = False  # given up on: its cancellation is recorded instead
                if machine.outcome is None and live:
                    await self._append_apply(machine, type_, data)
                    return True
        return False

    async def _append_apply(
        self, machine: WorkflowMachine, type_: EventType, data: Mapping[str, Any]
    ) -> None:
        if type_ != EventType.WORKFLOW_PATCHED:
            # a patch marker precedes whatever its decision led to
            for patch_id in machine.patches.take_unrecorded():
                await self._append_apply(
                    machine, EventType.WORKFLOW_PATCHED, marker_data(patch_id)
                )
        services = self.services
        assert self.key is not None
        sequence = machine.last_sequence + 1
        now = services.clock.now()
        new = NewEvent(type=type_.value, timestamp=now, data=data)
        event = await self._materialized(
            self.key, sequence, new.type, now, data, new.schema_version
        )
        await services.backend.events.append(
            self.key,
            new,
            expected_last=machine.last_sequence,
            idempotency_id=f"{self.key.run_id}:{sequence}",
        )
        if services.backend.quarantine.has_unnoted(self.workflow_id):
            await self._note_quarantined()  # foreign messages the append was fenced after
        machine.apply(event)
        log_recorded(machine, type_, data)
        self._obs.recorded(machine, type_.value, data)

    async def _record_patches(self, machine: WorkflowMachine) -> None:
        for patch_id in machine.patches.take_unrecorded():
            await self._record(machine, EventType.WORKFLOW_PATCHED, marker_data(patch_id))

    # -- driving ---------------------------------------------------------------------------

    async def _resume_pending(self, machine: WorkflowMachine) -> None:
        """After a replay: re-arm timers whose schedule may have been lost in a crash."""
        for timer_id, fire_at in machine.timers.items():
            if isinstance(fire_at, datetime):
                await self._schedule_timer(timer_id, fire_at)

    async def _schedule_timer(self, timer_id: str, fire_at: datetime) -> None:
        """The message schedule that fires the run's timer into its inbox (idempotent)."""
        assert self.key is not None
        await self.services.backend.inbox.schedule(
            self.workflow_id,
            timer_id,
            fire_at,
            "timer",
            {"timer_id": timer_id, "run_id": self.key.run_id},
            queue=self.queue,
        )

    async def _drive(self, machine: WorkflowMachine) -> Outcome:
        """Carry out the machine's live commands until the run's outcome is decided.

        Steps run as tasks of their own, concurrently, each recording its result when it
        ends (in completion order: replay applies them in that order, which the machine makes
        give the same workflow behaviour). Everything else is done here, in order of position.
        At the outcome, steps still in flight are cancelled and their results discarded.
        """
        try:
            async with anyio.create_task_group() as steps:
                outcome = await self._drive_commands(machine, steps)
                steps.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _single(group) from None
        finally:
            self._steps.clear()
        return outcome

    async def _drive_commands(self, machine: WorkflowMachine, steps: anyio.abc.TaskGroup) -> Outcome:
        while True:
            await self._record_patches(machine)
            await self._consume_inbox(machine)
            while machine.retired_timers:
                await self.services.backend.inbox.cancel_schedule(
                    self.workflow_id, machine.retired_timers.pop()
                )
            if machine.outcome is not None:
                return machine.outcome
            if not await self._dispatch(machine, steps):
                await self._idle()

    async def _dispatch(self, machine: WorkflowMachine, steps: anyio.abc.TaskGroup) -> bool:
        """Act on every live command that needs it; whether anything was recorded."""
        acted = False
        limit = self.services.options.max_concurrent_steps
        for position, scope in self._steps.items():
            if position not in machine.commands:
                scope.cancel()  # ended by a cancel request: its result is not wanted
        for command in list(machine.commands.values()):
            if machine.outcome is not None:
                return True
            if machine.commands.get(command.position) is not command:
                continue  # ended by what was recorded meanwhile
            if isinstance(command, ScheduleStep):
                running = self._steps.get(command.position)
                if running is not None:
                    if command.cancelling:
                        running.cancel()  # the task ends; then its cancellation is recorded
                elif command.cancelling:
                    acted |= await self._record_live(
                        machine,
                        command,
                        EventType.STEP_CANCELLED,
                        {"position": command.position, "name": command.definition.name},
                    )
                elif len(self._steps) < limit:
                    scope = anyio.CancelScope()
                    self._steps[command.position] = scope
                    steps.start_soon(self._step_task, machine, command, scope)
            elif isinstance(command, StartTimer) and command.cancelling:
                # its schedule is cancelled through retired_timers
                acted |= await self._record_live(
                    machine,
                    command,
                    EventType.TIMER_CANCELLED,
                    {"position": command.position, "timer_id": command.timer_id},
                )
            elif isinstance(command, StartTimer | WaitSignal):
                if command.timer_id is None and (
                    isinstance(command, StartTimer) or command.timeout is not None
                ):
                    seconds = command.seconds if isinstance(command, StartTimer) else command.timeout
                    assert seconds is not None
                    acted |= await self._start_timer(machine, command, seconds)
            elif isinstance(command, StartChild):
                await self._start_child(machine, command)
                acted = True
        return acted

    async def _record_abandoned(self, machine: WorkflowMachine) -> None:
        """Before the terminal event: the cancellation of each step and timer the run left in
        flight (their results, if they come, are discarded), and the timers' schedules."""
        for type_, data in list(machine.abandoned.values()):
            await self._record(machine, type_, data)
        while machine.retired_timers:
            await self.services.backend.inbox.cancel_schedule(
                self.workflow_id, machine.retired_timers.pop()
            )

    async def _idle(self) -> None:
        """Wait for an inbox message or a step's end; passivate after the configured idle
        time (never while steps are in flight)."""
        passivate_after = self.services.options.passivate_after
        if passivate_after is None or not self.services.passivation_enabled or self._steps:
            await self._wakeup.wait()
        else:
            with anyio.move_on_after(passivate_after.total_seconds()):
                await self._wakeup.wait()
            if not self._wakeup.is_set():
                raise Passivate
        self._wakeup = anyio.Event()

    def _cursor(self, machine: WorkflowMachine) -> int:
        """The last inbox sequence this run has dealt with: recorded, or skipped as noise."""
        return max(machine.inbox_cursor, self._skipped_to)

    async def _consume_inbox(self, machine: WorkflowMachine) -> None:
        """Record every inbox message after the run's cursor, in order."""
        if not self._inbox_dirty:
            return
        self._inbox_dirty = False
        services = self.services
        assert self.key is not None
        after = self._cursor(machine)
        messages = await services.backend.inbox.read(
            self.workflow_id, after=after, queue=self.queue
        )
        for message in messages:
            if machine.outcome is not None:
                self._inbox_dirty = True  # the rest is for the next run, if there is one
                break
            if _ends_pending_child(machine, message):
                self._inbox_dirty = True  # read again once the child's start is recorded
                break
            if not await self._consume(machine, message):
                self._inbox_dirty = True  # the run ended meanwhile: the rest is the next run's
                break
        await self._note_quarantined()  # what it skipped, in one write

    async def _note_quarantined(self) -> None:
        services = self.services
        if services.backend.quarantine.has_unnoted(self.workflow_id):
            await note_quarantined(services.backend, self.workflow_id, services.worker_id)

    async def _consume(self, machine: WorkflowMachine, message: InboxMessage) -> bool:
        """Record (or skip) one inbox message; False if the run's outcome was decided before
        its turn to write came (a step's result recorded meanwhile): it is left unread."""
        assert self.key is not None
        self._obs.inbox_read(message, self.services.clock.now())
        data = message.data
        seq = message.sequence
        kind = message.kind
        reason = unusable(message)
        if reason is not None:  # skipped for good: the cursor moves past it
            self._skipped_to = max(self._skipped_to, seq)
            self.services.backend.quarantine.report(
                quarantine_record(message, reason, self.key.run_id)
            )
        elif kind == "signal":
            return await self._record_message(
                machine,
                EventType.SIGNAL_RECEIVED,
                {"name": data["name"], "payload": data.get("payload"), "inbox_seq": seq},
            )
        elif kind == "terminate":
            # ends the run here: the workflow code gets no CancellationError to handle
            reason = data.get("reason") or "terminated"
            return await self._record_message(
                machine,
                EventType.WORKFLOW_CANCELLED,
                {"message": f"terminated: {reason}", "terminated": True, "inbox_seq": seq},
            )
        elif kind == "cancel" and not machine.cancel_requested:
            return await self._record_message(
                machine,
                EventType.CANCELLATION_REQUESTED,
                {"inbox_seq": seq, "reason": data.get("reason")},
            )
        elif (
            kind == "timer"
            and data.get("run_id") == self.key.run_id
            and data.get("timer_id") in machine.timers
        ):
            return await self._record_message(
                machine, EventType.TIMER_FIRED, {"timer_id": data["timer_id"], "inbox_seq": seq}
            )
        elif kind == "child" and data.get("child_workflow_id") in machine.children:
            status = data.get("status")
            type_ = {
                "completed": EventType.CHILD_COMPLETED,
                "cancelled": EventType.CHILD_CANCELLED,
            }.get(str(status), EventType.CHILD_FAILED)
            return await self._record_message(
                machine,
                type_,
                {
                    "child_workflow_id": data["child_workflow_id"],
                    "result": data.get("result"),
                    "message": data.get("message"),
                    "inbox_seq": seq,
                },
            )
        else:
            self._skipped_to = max(self._skipped_to, seq)
        return True

    async def _record_message(
        self, machine: WorkflowMachine, type_: EventType, data: Mapping[str, Any]
    ) -> bool:
        """``_record`` an inbox message's event unless the run's outcome is decided by the
        time the lock is ours: a run that has ended records no more messages (the machine
        would not apply them; the next run reads them from the inbox)."""
        async with self._record_lock:
            if machine.outcome is not None:
                return False
            await self._append_apply(machine, type_, data)
            return True

    async def _step_task(
        self, machine: WorkflowMachine, command: ScheduleStep, scope: anyio.CancelScope
    ) -> None:
        """Run one step (attempt after attempt) under the worker's step limit.

        Then, while what the step recorded leaves the drive loop nothing to do but start one
        new step (``_next_step``), this task runs that step too: a sequence of steps costs
        neither a task nor a turn of the drive loop per step. The drive loop stays free to
        read the inbox meanwhile, and finds the step in ``_steps`` (a cancel request or a stop
        message cancels it there, as any step task's).
        """
        try:
            while True:
                with scope:
                    while True:
                        attempt = command.attempt
                        with step_attempt(self._log, command.definition.name, attempt):
                            again = await self._run_step(machine, command, attempt)
                        if not again:
                            break
                if scope.cancel_called:
                    # cancelled (the workflow gave up on it, a cancel request): the drive loop
                    # records what follows; a step cancelled by a stop message the run has not
                    # recorded as a cancellation is started again
                    return
                if self._steps.get(command.position) is scope:
                    del self._steps[command.position]
                follow = self._next_step(machine)
                if follow is None:
                    return
                command, scope = follow, anyio.CancelScope()
                self._steps[command.position] = scope
        finally:
            if self._steps.get(command.position) is scope:
                del self._steps[command.position]
            self._wakeup.set()

    def _next_step(self, machine: WorkflowMachine) -> ScheduleStep | None:
        """The one step the drive loop would start next, if starting it is all it would do
        (no outcome, no inbox to read, no patch marker or timer schedule to write, every
        other live command a step already running); else ``None``: the drive loop acts."""
        if (
            machine.outcome is not None
            or self._inbox_dirty
            or machine.retired_timers
            or machine.patches.unrecorded
            or len(self._steps) >= self.services.options.max_concurrent_steps
        ):
            return None
        found: ScheduleStep | None = None
        for command in machine.commands.values():
            if not isinstance(command, ScheduleStep) or command.cancelling:
                return None
            if command.position in self._steps:
                continue
            if found is not None:
                return None
            found = command
        return found

    async def _run_step(self, machine: WorkflowMachine, command: ScheduleStep, attempt: int) -> bool:
        """One attempt; records its outcome. True to try again (after the backoff)."""
        services = self.services
        definition = command.definition
        policy = definition.retry
        error: BaseException | None = None
        result: Any = None
        # decoded by the step's hints, timed and traced
        typed = step_function(definition, services.payloads.converter, command.args, command.kwargs)
        fn = self._obs.step(typed, definition.name, attempt)
        async with _Slot(services.step_limiter):
            try:
                if definition.timeout is not None:
                    with anyio.fail_after(definition.timeout):
                        result = await fn(*command.args, **command.kwargs)
                else:
                    result = await fn(*command.args, **command.kwargs)
            except Exception as exc:
                error = exc
            except BaseException as exc:
                # SystemExit, KeyboardInterrupt, a stray CancelledError: the step's failure;
                # a cancellation someone asked for (this scope, the worker stopping) propagates
                if not is_step_fault(exc):
                    raise
                error = exc
                assert self.key is not None
                log_step_fault(self.workflow_id, self.key.run_id, definition.name, attempt, exc)
        position, name = command.position, definition.name
        if error is None:
            try:
                stored = await services.payloads.pack_result(definition, result)
            except SerializationError as err:
                # the step ran and its effect is done; running it again would return the
                # same kind of value: the step fails, for good, at its await in the workflow
                await self._record_step_failed(machine, command, err, attempt)
                return False
            await self._record_live(
                machine,
                command,
                EventType.STEP_COMPLETED,
                {"position": position, "name": name, "result": stored},
            )
            return False
        error_type = type(error).__name__
        message = _message_of(error)
        if attempt < policy.max_attempts and error_type not in policy.non_retryable:
            delay = policy.delay(attempt)
            retry_at = services.clock.now() + timedelta(seconds=delay)
            recorded = await self._record_live(
                machine,
                command,
                EventType.STEP_RETRYING,
                {
                    "position": position,
                    "name": name,
                    "attempt": attempt,
                    "error_type": error_type,
                    "message": message,
                    "retry_at": retry_at,
                },
            )
            if not recorded:
                return False
            await services.clock.sleep_until(retry_at)
            return True
        await self._record_step_failed(machine, command, error, attempt)
        return False

    async def _record_step_failed(
        self, machine: WorkflowMachine, command: ScheduleStep, error: BaseException, attempt: int
    ) -> None:
        """Record the step's final failure; a builtin exception keeps its arguments."""
        await self._record_live(
            machine,
            command,
            EventType.STEP_FAILED,
            {
                "position": command.position,
                "name": command.definition.name,
                "error_type": type(error).__name__,
                "message": _message_of(error),
                "attempts": attempt,
                **error_details(error, self.services.codec),
            },
        )

    async def _start_timer(
        self, machine: WorkflowMachine, command: StartTimer | WaitSignal, seconds: float
    ) -> bool:
        assert self.key is not None
        timer_id = f"{self.key.run_id}-{command.position}"
        fire_at = self.services.clock.now() + timedelta(seconds=seconds)
        recorded = await self._record_live(
            machine,
            command,
            EventType.TIMER_STARTED,
            {"position": command.position, "timer_id": timer_id, "fire_at": fire_at},
        )
        if recorded:
            await self._schedule_timer(timer_id, fire_at)
        return recorded

    async def _start_child(self, machine: WorkflowMachine, command: StartChild) -> None:
        assert self.key is not None
        try:
            first_run_id = await self._start_child_chain(command)
        except (WorkflowAlreadyRunning, WorkflowNotRegistered) as err:
            await self._record_live(
                machine,
                command,
                EventType.CHILD_STARTED,
                {
                    "position": command.position,
                    "child_workflow_id": command.workflow_id,
                    "error_type": type(err).__name__,
                    "message": str(err),
                },
            )
            return
        recorded = await self._record_live(
            machine,
            command,
            EventType.CHILD_STARTED,
            {
                "position": command.position,
                "child_workflow_id": command.workflow_id,
                "child_run_id": first_run_id,
                "workflow_name": command.workflow_name,
                "parent_close_policy": command.parent_close_policy.value,
            },
        )
        if not recorded:
            await self._close_unrecorded_child(machine, command)

    async def _close_unrecorded_child(self, machine: WorkflowMachine, command: StartChild) -> None:
        """The child's chain started, but the run ended (or gave up on the start) before
        ``child.started`` was written: no replay knows of the child and nothing will close it
        with the run. Its parent-close policy is applied now, as it would be at the run's end."""
        policy = command.parent_close_policy.value
        workflow_log.warning(
            "workflow %s run %s: child %s started as the run ended (or gave up on it) and is "
            "not in its history; parent close policy %s applied to it now",
            self.workflow_id,
            machine.run_id,
            command.workflow_id,
            policy,
        )
        await self.services.close_child(self.workflow_id, machine.run_id, command.workflow_id, policy)

    async def _start_child_chain(self, command: StartChild) -> str:
        assert self.key is not None
        return await self.services.start_chain(
            command.workflow_name,
            command.args,
            command.kwargs,
            workflow_id=command.workflow_id,
            parent={
                "workflow_id": self.workflow_id,
                "run_id": self.key.run_id,
                "position": command.position,
                "queue": self.queue,
            },
            idempotent_run_id=uuid.uuid5(
                _RUN_NAMESPACE, f"{self.key.run_id}/child/{command.position}"
            ).hex,
            trace_parent=self._obs.run_context(),
            queue=command.queue,
        )

    # -- endings ---------------------------------------------------------------------------

    async def _record_terminal(self, machine: WorkflowMachine, outcome: Outcome) -> None:
        if isinstance(outcome, Completed):
            data = await self.services.payloads.pack_data(
                {"result": outcome.result}, "workflow result"
            )
            await self._record(machine, EventType.WORKFLOW_COMPLETED, data)
        elif isinstance(outcome, Failed):
            await self._record(
                machine,
                EventType.WORKFLOW_FAILED,
                {"error_type": outcome.error_type, "message": outcome.message},
            )
        elif isinstance(outcome, Cancelled):
            await self._record(machine, EventType.WORKFLOW_CANCELLED, {"message": outcome.message})

    async def _hand_over(self, machine: WorkflowMachine, outcome: ContinuedAsNew) -> StoredEvent:
        """Commit the hand-over: ONE fenced append of the old run's terminal event, the link,
        which carries everything the successor needs (``successor_first_event``).

        Returns the link as stored (values by reference, as a replay reads it).
        """
        services = self.services
        assert self.key is not None and machine.definition is not None
        old_key = self.key
        new_run_id = next_run_id(old_key.run_id)
        version = outcome.version or machine.definition.version
        name = machine.definition.name
        services.registry.get(name, version)  # an unknown version fails here, before writing
        payloads = services.payloads
        carried = {"args": list(outcome.args), "kwargs": dict(outcome.kwargs)}
        pending_signals = machine.pending_signals()
        sequence = machine.last_sequence + 1
        now = services.clock.now()
        for force in (False, True):
            # Large values go by reference. If the link (or the successor's first event, the
            # same values) is still over the log's limit (many carried signals, arguments and
            # keyword arguments each just under the threshold), everything carried goes by
            # reference: the hand-over always fits.
            packed = await payloads.pack_data(carried, "continue_as_new", force=force)
            terminal = NewEvent(
                type=EventType.WORKFLOW_CONTINUED_AS_NEW.value,
                timestamp=now,
                data={
                    "new_run_id": new_run_id,
                    "args": packed["args"],
                    "kwargs": packed["kwargs"],
                    "reason": outcome.reason,
                    "version": version,
                    # what the successor's first event is rolled forward from
                    "workflow_name": name,
                    "execution": machine.execution + 1,
                    "parent": machine.parent,
                    "inbox_cursor": self._cursor(machine),
                    "pending_signals": await payloads.pack_signals(pending_signals, force=force),
                    **self._obs.handover_trace(),
                },
            )
            link = as_stored(services.codec, old_key, sequence, terminal)
            first = as_stored(
                services.codec, successor_key(link), 1, successor_first_event(link)
            )
            if max(link.size, first.size) <= services.backend.max_event_bytes:
                break
        try:
            await services.backend.events.append(
                old_key,
                terminal,
                expected_last=machine.last_sequence,
                idempotency_id=f"{old_key.run_id}:{sequence}",
            )
        except ConcurrencyConflict:
            # Done before us (a crashed earlier attempt, another worker)? Then its link is it.
            last = await services.backend.events.read(old_key, after=machine.last_sequence)
            if not last or last[-1].data.get("new_run_id") != new_run_id:
                raise
            return last[-1]
        machine.last_event_type = EventType.WORKFLOW_CONTINUED_AS_NEW.value
        self._obs.continued(machine, now)
        log_continuing(
            machine, new_run_id, outcome.reason, lambda: len(services.codec.dumps(carried))
        )
        return link

    async def _successor(self, link: StoredEvent, *, live: bool) -> WorkflowMachine:
        """The successor of ``link``'s run, its first event rolled forward from the link if
        it is not written yet (by us: ``live``, just after the link; or by anyone recovering
        the chain). A conflict on that write means another writer made it: read it."""
        services = self.services
        new_key = successor_key(link)
        if not live and await services.backend.events.last_sequence(new_key) > 0:
            return await self._load(new_key.run_id)
        if not await roll_forward(services.backend.events, link):
            return await self._load(new_key.run_id)
        first = successor_first_event(link)
        # the event we just wrote, as a replay will read it: no need to read it back
        started = await self._materialize(as_stored(services.codec, new_key, 1, first))
        # This instance hosted the old run until now and hears every inbox message for the
        # workflow: unless one came in meanwhile, the new run's cursor (carried in the
        # link) is already the end of the inbox.
        dirty = self._inbox_dirty if live else True
        machine = self._new_machine(new_key.run_id)
        self._inbox_dirty = dirty
        machine.apply(started)
        self._obs.applied(machine, started)
        return machine

    async def _complete_hand_over(
        self, machine: WorkflowMachine, old_run_id: str, cursor: int
    ) -> str:
        """Project a written hand-over into the run store; idempotent. Returns the new run.

        The writes are independent of each other, so they run concurrently, off the
        critical path (a queued job): the next run executes meanwhile.
        """
        services = self.services
        assert machine.definition is not None
        new_run_id = next_run_id(old_run_id)
        now = services.clock.now()
        parent = machine.parent or {}
        created = WorkflowRun(
            run_id=new_run_id,
            workflow_id=self.workflow_id,
            workflow_name=machine.definition.name,
            status=RunStatus.RUNNING,
            execution=machine.execution + 1,
            continued_from_run_id=old_run_id,
            created_at=now,
            parent_run_id=parent.get("run_id"),
            parent_workflow_id=parent.get("workflow_id"),
            version=getattr(machine.outcome, "version", None) or machine.definition.version,
            queue=self.queue,
        )

        async def create_new_run() -> None:
            with contextlib.suppress(ConcurrencyConflict):  # redone after a crash
                await services.create_run(created)

        async def purge_inbox() -> None:
            if cursor:
                await services.backend.inbox.purge(self.workflow_id, up_to=cursor, queue=self.queue)

        async def link_records() -> None:
            # Both records first, the head last: a crash in between leaves the head on the
            # old run, whose terminal event makes the next instance redo all of this.
            async with anyio.create_task_group() as records:
                records.start_soon(create_new_run)
                records.start_soon(
                    functools.partial(
                        services.update_run,
                        old_run_id,
                        status=RunStatus.CONTINUED_AS_NEW,
                        continued_to_run_id=new_run_id,
                        completed_at=now,
                    )
                )
            await services.move_head(self.workflow_id, new_run_id)

        async def link_then_truncate() -> None:
            await link_records()
            # only once the head has left it may the old run lose its history: a fault before
            # this point leaves the head on a run that still has everything to redo from
            await services.apply_retention(self.workflow_id, old_run_id)

        async with anyio.create_task_group() as tg:
            tg.start_soon(link_then_truncate)
            tg.start_soon(self._close_children, machine)
            tg.start_soon(purge_inbox)
        return new_run_id

    async def _close_children(self, machine: WorkflowMachine) -> None:
        for child_id, policy in list(machine.children.items()):
            await self.services.close_child(self.workflow_id, machine.run_id, child_id, policy)

    async def _complete_chain(
        self, machine: WorkflowMachine, outcome: Outcome, run_id: str, cursor: int
    ) -> None:
        services = self.services
        now = services.clock.now()
        await self._close_children(machine)
        if isinstance(outcome, Completed):
            status, result, error = RunStatus.COMPLETED, outcome.result, None
        elif isinstance(outcome, Cancelled):
            status, result, error = RunStatus.CANCELLED, None, outcome.message
        else:
            assert isinstance(outcome, Failed)
            status, result, error = RunStatus.FAILED, None, f"{outcome.error_type}: {outcome.message}"
        packed_result = await services.payloads.pack(result, "workflow result")
        parent = machine.parent
        if parent:
            # before the record turns terminal: a restarted worker recovers only running
            # runs, so a crash after this send and before the update redoes both (the send
            # is deduplicated by its id)
            await services.backend.inbox.send(
                parent["workflow_id"],
                "child",
                {
                    "child_workflow_id": self.workflow_id,
                    "status": status.value,
                    "result": packed_result,
                    "message": error,
                },
                idempotency_id=f"child-end:{run_id}",
                queue=parent.get("queue") or await services.queue_of(parent["workflow_id"]),
            )
        changes = {"status": status, "result": packed_result, "error": error, "completed_at": now}
        ahead = services.expected_record(run_id, **changes)
        if ahead is not None:
            # The terminal event is on the log: a handle waiting in this process gets the
            # result now, and the record follows as a projection (a crash before it is
            # written leaves the record `running`; the next worker resumes the run, replays
            # to its terminal event and writes it).
            services.run_ahead(ahead)
            services.notify_done(self.workflow_id, ahead)
        try:
            final = await services.update_run(run_id, **changes)
        finally:
            services.run_written(run_id)
        if cursor:
            await services.backend.inbox.purge(self.workflow_id, up_to=cursor, queue=self.queue)
        services.forget(self.workflow_id)
        if ahead is None:
            services.notify_done(self.workflow_id, final)
        await services.announce_end(self.workflow_id)  # the record is written: waiters elsewhere
        # the chain is no longer running: out of its partition's index (after the record,
        # so a crash in between leaves an entry the next claimer drops, never a lost chain)
        await services.backend.owners.index_remove(
            self.queue, services.partition_of(self.workflow_id), self.workflow_id, self._first_run_id
        )


class _Slot:
    """``async with limiter``, without its two scheduling points when a token is free (the
    step's own awaits are where it can be cancelled), borrowed by the slot itself rather
    than by the current task (which anyio would look up on acquire and release)."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter

    async def __aenter__(self) -> None:
        try:
            self._limiter.acquire_on_behalf_of_nowait(self)
        except anyio.WouldBlock:
            await self._limiter.acquire_on_behalf_of(self)

    async def __aexit__(self, *exc_info: object) -> None:
        self._limiter.release_on_behalf_of(self)


def _ends_pending_child(machine: WorkflowMachine, message: InboxMessage) -> bool:
    """The end of the child the workflow is starting: the parent failed between starting the
    child's chain and recording ``child.started``, and the child ended meanwhile. Skipped as
    noise here, it would be lost, and the parent would wait for the child for ever."""
    return (
        message.problem is None
        and message.kind == "child"
        and any(
            isinstance(command, StartChild)
            and message.data.get("child_workflow_id") == command.workflow_id
            for command in machine.commands.values()
        )
    )


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error of a group of one (nested groups unwrapped): the supervisor decides by
    exception type."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _message_of(error: BaseException) -> str:
    # KeyError('k') prints as "'k'"; keep the argument itself so the rebuilt error matches
    if len(error.args) == 1 and isinstance(error.args[0], str):
        return bounded_message(error.args[0])
    return error_message(error) or type(error).__name__


class _Jobs:
    """Store projections queued to run in order, off the critical path (a hand-over's
    records, retention). The runner task and its queue are made by the first job: most
    workflows never continue as new, and queue nothing."""

    __slots__ = ("_last", "_send", "_tg")

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self._send: MemoryObjectSendStream[Callable[[], Awaitable[object]]] | None = None
        self._last: Callable[[], Awaitable[object]] | None = None

    async def send(self, job: Callable[[], Awaitable[object]], *, last: bool = False) -> None:
        """Queue ``job``; ``last``: nothing is queued after it (the instance is done), so with
        no runner started it runs in the instance's own task by ``run_last``."""
        if last and self._send is None:
            self._last = job
            return
        if self._send is None:
            self._send, receive = anyio.create_memory_object_stream[
                Callable[[], Awaitable[object]]
            ](math.inf)
            self._tg.start_soon(_run_jobs, receive)
        await self._send.send(job)

    def close(self) -> None:
        if self._send is not None:
            self._send.close()

    async def run_last(self) -> None:
        """Run the last job if it was kept for the instance's task (outside its host scope,
        as the runner is: a stop does not cut it)."""
        job, self._last = self._last, None
        if job is not None:
            await job()


async def _run_jobs(jobs: MemoryObjectReceiveStream[Callable[[], Awaitable[object]]]) -> None:
    """Run queued store projections in order until the queue is closed. A failure fails the
    instance, which restarts and redoes them from the log."""
    async with jobs:
        async for job in jobs:
            await job()


_STEP_RESULTS = frozenset(
    {EventType.STEP_COMPLETED, EventType.STEP_FAILED, EventType.STEP_RETRYING}
)

#: inbox kinds that stop a workflow: parent-close policies ``cancel`` and ``terminate``

_TERMINAL_TYPES = frozenset(
    {
        EventType.WORKFLOW_COMPLETED.value,
        EventType.WORKFLOW_FAILED.value,
        EventType.WORKFLOW_CANCELLED.value,
        EventType.WORKFLOW_CONTINUED_AS_NEW.value,
    }
)
