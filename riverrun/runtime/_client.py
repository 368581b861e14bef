"""``Client`` and ``WorkflowHandle``: start workflows, signal, cancel, read runs and chains."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar, TypeVarTuple, overload

import anyio
import attrs

from .._errors import (
    CancellationError,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowNotRunning,
)
from ..persistence import RunKey, RunStatus, WorkflowRun, check_queue
from ._definitions import definition_of, is_workflow
from ._events import Event, to_event
from ._hints import CallHints
from ._membership import note_unserved
from ._options import validate_workflow_id
from ._services import Services
from ._waiting import WaitingOn, waiting_on

__all__ = ["Client", "WorkflowHandle"]

P = ParamSpec("P")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_POLL_MIN = 0.02
_POLL_MAX = 0.5
#: the polling of a waiter that hears announced chain ends (``Services.watch_ends``)
_BACKSTOP_MIN = 1.0
_BACKSTOP_MAX = 5.0
_ENDED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class Client:
    """Talks to workflows by id; needs no worker in this process."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def __repr__(self) -> str:
        return f"<Client namespace={self._services.options.namespace!r}>"

    # For type checkers, `start` is four overloads. A ParamSpec cannot take a keyword of its
    # own (`workflow_id`, `queue`) next to the workflow's keywords, so: without either, every
    # argument is checked against the workflow's signature; with one (or both), the positional
    # arguments are (a TypeVarTuple), the keyword arguments are not; by name, nothing is.
    # Each returns a handle typed by the workflow's result.
    @overload
    async def start(
        self, wf: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[T]: ...

    @overload
    async def start(
        self,
        wf: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        workflow_id: str | None,
        queue: str | None = None,
        **kwargs: Any,
    ) -> WorkflowHandle[T]: ...

    @overload
    async def start(
        self,
        wf: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        queue: str | None,
        **kwargs: Any,
    ) -> WorkflowHandle[T]: ...

    @overload
    async def start(
        self,
        wf: str,
        /,
        *args: Any,
        workflow_id: str | None = None,
        queue: str | None = None,
        **kwargs: Any,
    ) -> WorkflowHandle[Any]: ...

    async def start(  # type: ignore[misc]  # mypy cannot match `*args: *Ts` to `*args: Any`
        self,
        wf: Any,
        /,
        *args: Any,
        workflow_id: str | None = None,
        queue: str | None = None,
        **kwargs: Any,
    ) -> WorkflowHandle[Any]:
        """Start a workflow chain and return its handle.

        ``workflow_id`` and ``queue`` are ``start``'s own keywords, never the workflow's
        (``@workflow`` refuses a parameter that could be passed by either name); every other
        argument goes to the workflow.

        Args:
            wf: a ``@workflow`` function, or a registered workflow name.
            workflow_id: stable id for the chain (generated when omitted or ``None``):
                1-200 characters from letters, digits and ``_ - : . @ = + /``.
            queue: the task queue the chain is served on, every run of it (continue-as-new
                keeps it); ``None``: the workflow's ``@workflow(queue=...)`` (for a name, the
                queue of the definition registered in this process, else ``default``).

        Raises:
            ValueError: ``workflow_id`` is not a valid id (an empty string included), or
                ``queue`` is not a valid queue name.
            WorkflowAlreadyRunning: a chain with this id is running.
            SerializationError: an argument cannot be serialized (the message names it).
        """
        services = self._services
        version: str | None = None
        hints: CallHints | None = None
        if queue is not None:
            check_queue(queue)
        if is_workflow(wf):
            definition = definition_of(wf)
            name, version = definition.name, definition.version
            queue = queue or definition.queue
            hints = definition.hints.get()
        elif isinstance(wf, str):
            name = wf
            if name in services.registry:
                version = services.registry.get(name).version
                hints = services.registry.get(name).hints.get()
        else:
            raise TypeError(f"start() needs a @workflow function or a workflow name, not {wf!r}")

        workflow_id = validate_workflow_id(uuid.uuid4().hex if workflow_id is None else workflow_id)
        # by the workflow's hints (by a name unknown here: plain data, decoded by the worker)
        args, kwargs = services.payloads.converter.encode_call(hints, args, kwargs)
        services.payloads.check({"args": list(args), "kwargs": kwargs}, f"{name}() arguments")
        run_id = await services.start_chain(
            name, args, kwargs, workflow_id=workflow_id, version=version, queue=queue
        )
        await note_unserved(services, queue or services.queue_of_type(name), name, workflow_id)
        handle: WorkflowHandle[Any] = WorkflowHandle(client=self, workflow_id=workflow_id, first_run_id=run_id)
        handle._result_hints = hints  # result() decodes by the workflow's return hint
        return handle

    def get_handle(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle on an existing chain (``first_run_id`` is looked up on first use)."""
        return WorkflowHandle(client=self, workflow_id=workflow_id, first_run_id="")

    async def get_run(self, run_id: str) -> WorkflowRun:
        record = await self._services.backend.runs.get_run(run_id)
        if record is None:
            raise WorkflowNotFound(f"no run with id {run_id!r} in this namespace")
        return await self._public(record.value)

    async def list_runs(
        self,
        *,
        workflow_id: str | None = None,
        workflow_name: str | None = None,
        status: RunStatus | str | None = None,
    ) -> list[WorkflowRun]:
        status = RunStatus(status) if status is not None else None
        runs = await self._services.backend.runs.list_runs(workflow_id=workflow_id, status=status)
        if workflow_name is not None:
            runs = [r for r in runs if r.workflow_name == workflow_name]
        public = [await self._public(r) for r in runs]
        # (a run this process has just ended reads as ended, as its handle's result says)
        return [r for r in public if status is None or r.status == status]

    async def get_workflow_chain(self, run_id: str) -> list[WorkflowRun]:
        """Every run of the chain ``run_id`` belongs to, first to last; ``[]`` if unknown."""
        services = self._services
        record = await services.backend.runs.get_run(run_id)
        if record is None:
            return []
        chain = [record.value]
        # a missing record of a neighbour is rebuilt from its events (its workflow id is known)
        while chain[0].continued_from_run_id:
            previous = await services.read_run(
                chain[0].continued_from_run_id,
                workflow_id=chain[0].workflow_id,
                workflow_name=chain[0].workflow_name,
                execution=chain[0].execution - 1,
            )
            if previous is None:
                break  # pruned
            chain.insert(0, previous)
        while chain[-1].continued_to_run_id:
            following = await services.read_run(
                chain[-1].continued_to_run_id,
                workflow_id=chain[-1].workflow_id,
                workflow_name=chain[-1].workflow_name,
                execution=chain[-1].execution + 1,
            )
            if following is None:
                break
            chain.append(following)
        return [await self._public(r) for r in chain]

    async def events(self, run_id: str) -> list[Event]:
        return await self._events(run_id)

    async def last_event(self, run_id: str, *, workflow_id: str | None = None) -> Event | None:
        """The run's last event, read alone however long its history; ``None`` if it has none.

        Its ``sequence`` is the number of events the run has had (sequences survive
        truncation); for a run that continued as new it is the ``workflow.continued_as_new``
        link, with the arguments carried to the next run.
        """
        if workflow_id is None:
            record = await self._services.backend.runs.get_run(run_id)
            if record is None:
                raise WorkflowNotFound(f"no run with id {run_id!r} in this namespace")
            workflow_id = record.value.workflow_id
        log = self._services.backend.events
        key = RunKey(workflow_id=workflow_id, run_id=run_id)
        last = await log.last_sequence(key)
        events = await log.read(key, after=last - 1) if last else []
        return to_event(events[-1]) if events else None

    async def waiting_on(self, run_id: str) -> list[WaitingOn]:
        """What the run waits on, derived from its history (no worker needed): open timers,
        children (with their chain's current status), steps between attempts, a pending
        cancellation; or ``idle`` since its last event. ``[]`` if the run has ended."""
        found = waiting_on(await self._events(run_id))
        runs = self._services.backend.runs
        for index, item in enumerate(found):
            if item.child_workflow_id is None:
                continue
            head = await runs.get_head(item.child_workflow_id)
            record = await runs.get_run(head.value.current_run_id) if head else None
            if record is not None:
                found[index] = attrs.evolve(item, child_status=str(record.value.status))
        return found

    async def _events(self, run_id: str, workflow_id: str | None = None) -> list[Event]:
        record = await self._services.backend.runs.get_run(run_id)
        if record is not None:
            workflow_id = record.value.workflow_id
        if workflow_id is None:
            raise WorkflowNotFound(f"no run with id {run_id!r} in this namespace")
        key = RunKey(workflow_id=workflow_id, run_id=run_id)
        events = [to_event(e) for e in await self._services.backend.events.read(key)]
        if record is None and not events:
            raise WorkflowNotFound(f"no run {run_id!r} of workflow {workflow_id!r}")
        return events

    async def signal(
        self,
        workflow_or_run_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        """Send a signal to the chain's current run (by workflow id, or any run id of it).

        The chain must be running: a signal to a chain that has ended would never be
        delivered, so it raises instead. (A chain that ends after this check and before it
        consumes the signal leaves the signal unconsumed; a later chain of the same workflow
        id started after the signal arrived never gets it either.)

        Args:
            idempotency_key: makes a retried send safe: a second signal to the same workflow
                with the same key is dropped (within the inbox's duplicate window, 2 minutes
                on JetStream), so retrying after a lost acknowledgement delivers it once.

        Raises:
            WorkflowNotRunning: the chain has ended (its final status is in the message).
            WorkflowNotFound: no workflow or run has that id.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"signal name must be a non-empty string, got {name!r}")
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not idempotency_key
        ):
            raise ValueError(
                f"idempotency_key must be a non-empty string or None, got {idempotency_key!r}"
            )
        current = await self._locate(workflow_or_run_id)
        if current.status in _ENDED:
            raise _not_running(current, f"signal {name!r} was not sent")
        what = f"signal {name!r} payload"
        # the hint is on the receiving side (wait_for_signal(name, type=...)): plain data
        plain = self._services.payloads.converter.to_plain(payload, what=what)
        packed = await self._services.payloads.pack(plain, what)
        with self._services.telemetry.sending_signal(name, current.workflow_id) as traced:
            await self._services.backend.inbox.send(
                current.workflow_id,
                "signal",
                {"name": name, "payload": packed, **traced},
                idempotency_id=None if idempotency_key is None else f"signal:{idempotency_key}",
                queue=current.queue,
            )

    async def cancel(self, workflow_or_run_id: str, *, reason: str | None = None) -> bool:
        """Ask the chain's current run to cancel (an old run id reaches the current run).

        Returns ``False``, sending nothing, if the chain already ended (cancelling is
        idempotent: the outcome the caller asked for, a chain that is not running, holds).
        A chain that ends right after this check leaves the request unconsumed; a later
        chain of the same workflow id started after it arrived never gets it.
        """
        current = await self._locate(workflow_or_run_id)
        if current.status in _ENDED:
            return False
        await self._services.backend.inbox.send(
            current.workflow_id, "cancel", {"reason": reason}, queue=current.queue
        )
        return True

    async def terminate(
        self, workflow_or_run_id: str, *, reason: str | None = None
    ) -> WorkflowRun:
        """End the chain's current run now, as ``cancelled``, with or without a worker.

        Unlike ``cancel``, this needs no worker that runs the workflow's code (a run whose
        type no worker registers can be ended too) and the workflow gets no
        ``CancellationError`` to handle: its run's log gets ``workflow.cancelled``
        (``terminated: true``) by a write fenced on the run's last event, so a worker hosting
        it meanwhile either appended first (the write is retried after it) or fails its next
        append and lets the workflow go. The parent is told, children are closed per their
        policy, timers are unscheduled. ``result()`` then raises ``CancellationError``.

        Returns the run's final record.

        Raises:
            WorkflowNotRunning: the chain has already ended (its status is in the message).
            WorkflowNotFound: no workflow or run has that id.
        """
        from ._terminate import terminate_run

        current = await self._locate(workflow_or_run_id)
        if current.status in _ENDED:
            raise _not_running(current, "it was not terminated")
        outcome = await terminate_run(self._services, current, reason)
        if outcome.ended_as is not None:
            ended = attrs.evolve(current, run_id=outcome.run_id, status=outcome.ended_as)
            raise _not_running(ended, "it was not terminated")
        if outcome.run is None:  # pragma: no cover - the record is rebuilt from the log
            raise WorkflowNotFound(f"run {outcome.run_id!r} of {current.workflow_id!r} is gone")
        return await self._public(outcome.run)

    async def prune_runs(
        self,
        workflow_id: str,
        *,
        keep_last: int | None = None,
        completed_before: datetime | None = None,
    ) -> list[str]:
        """Delete earlier runs of a chain (records and events); never the current run.

        ``keep_last=N`` keeps the N most recent runs (the current one counts); with
        ``completed_before`` only runs that ended before that time are deleted. With both,
        a run is deleted when it satisfies both. Returns the deleted run ids, oldest first.
        """
        if keep_last is None and completed_before is None:
            raise ValueError("prune_runs needs keep_last, completed_before, or both")
        if keep_last is not None and keep_last < 1:
            raise ValueError("keep_last must be at least 1 (the current run is always kept)")
        head = await self._services.backend.runs.get_head(workflow_id)
        if head is None:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r} in this namespace")
        chain = await self.get_workflow_chain(head.value.current_run_id)
        candidates = chain[:-1]
        if keep_last is not None:
            candidates = chain[: max(len(chain) - keep_last, 0)]
        if completed_before is not None:
            candidates = [
                r for r in candidates if r.completed_at is not None and r.completed_at < completed_before
            ]
        backend = self._services.backend
        for run in candidates:
            await backend.events.delete(RunKey(workflow_id=workflow_id, run_id=run.run_id))
            await backend.runs.delete_run(run.run_id)
        return [r.run_id for r in candidates]

    # -- helpers ---------------------------------------------------------------------------

    async def _locate(self, workflow_or_run_id: str) -> WorkflowRun:
        """The current run of the chain addressed by its workflow id or any run id of it."""
        current = await self._current_run(workflow_or_run_id)
        if current is not None:
            return current
        record = await self._services.backend.runs.get_run(workflow_or_run_id)
        if record is None:
            raise WorkflowNotFound(f"no workflow or run with id {workflow_or_run_id!r}")
        run = record.value
        # the head leads to the current run; without a head, the run's own links do
        current = await self._current_run(run.workflow_id)
        return current if current is not None else await self._services.follow(run)

    async def _current_run(self, workflow_id: str, first_run_id: str = "") -> WorkflowRun | None:
        """The chain's current run: from its head (or, without one, from ``first_run_id``),
        following continue-as-new links; records missing from the store are rebuilt from
        the log. ``None`` if nothing is found."""
        services = self._services
        head = await services.backend.runs.get_head(workflow_id)
        name = ""
        if head is not None:
            first_run_id, name = head.value.current_run_id, head.value.workflow_name
        if not first_run_id:
            return None
        run = await services.read_run(first_run_id, workflow_id=workflow_id, workflow_name=name)
        # between a hand-over's record update and its head move, follow the link forward
        run = None if run is None else await services.follow(run)
        if run is not None and head is not None and run.queue != head.value.queue:
            run = attrs.evolve(run, queue=head.value.queue)  # the chain's queue is the head's
        return run

    async def _public(self, run: WorkflowRun) -> WorkflowRun:
        run = self._services.newest(run)
        result = await self._services.payloads.unpack(run.result)
        return run if result is run.result else attrs.evolve(run, result=result)


@attrs.define(eq=False)
class WorkflowHandle(Generic[T]):
    """Addresses a workflow chain by ``workflow_id``; every call reaches its current run.

    ``WorkflowHandle[T]``: ``T`` is the workflow's result type (``Any`` for a handle from
    ``get_handle`` or a start by name).
    """

    client: Client = attrs.field(repr=False)
    workflow_id: str
    first_run_id: str
    _result_hints: CallHints | None = attrs.field(default=None, init=False, repr=False)

    async def _first_run_id(self) -> str:
        if not self.first_run_id:
            head = await self.client._services.backend.runs.get_head(self.workflow_id)
            if head is None:
                raise WorkflowNotFound(f"no workflow with id {self.workflow_id!r}")
            self.first_run_id = head.value.first_run_id
        return self.first_run_id

    async def result(self, timeout: float | None = None) -> T:
        """Wait for the chain's final result, following continue-as-new.

        Raises:
            WorkflowFailed: the chain ended in failure.
            CancellationError: the chain was cancelled.
            TimeoutError: ``timeout`` seconds passed first.
        """
        with anyio.fail_after(timeout if timeout is not None else math.inf):
            result: T = await self._wait_result()
            return result

    async def _wait_result(self) -> Any:
        services = self.client._services
        runs = services.backend.runs
        first = await self._first_run_id()
        poll = _POLL_MIN
        run_id = first
        started_here = services.announced_end(self.workflow_id)
        if started_here is not None and started_here.first_run_id == first:
            # started through this runtime, whose worker announces the chain's end with the
            # final record it wrote: wait for that before reading the store at all (bounded:
            # another worker of the namespace may host the chain)
            with anyio.move_on_after(services.options.lease_ttl.total_seconds()):
                await started_here.event.wait()
            if started_here.run is not None:
                return await self._settle(started_here.run)
        # The chain's worker announces its end (another process's, or this one's for a chain
        # started elsewhere): polling the store is only the backstop for an announcement
        # that never came, so it starts slower and backs off further when it listens.
        listening = await services.watch_ends()
        if listening:
            poll, poll_max = _BACKSTOP_MIN, _BACKSTOP_MAX
        else:
            poll_max = _POLL_MAX * 4 if services.local_worker else _POLL_MAX
        while True:
            done = services.done_event(self.workflow_id)
            head = await runs.get_head(self.workflow_id)
            if head is not None and head.value.first_run_id == first:
                run_id = head.value.current_run_id
            found = await services.read_run(run_id, workflow_id=self.workflow_id)
            if found is None:
                raise WorkflowNotFound(f"run {run_id!r} of workflow {self.workflow_id!r} is gone")
            run = found
            if run.status == RunStatus.CONTINUED_AS_NEW and run.continued_to_run_id:
                run_id = run.continued_to_run_id
                continue
            if run.status in _ENDED:
                return await self._settle(run)
            with anyio.move_on_after(poll):
                await done.wait()
            poll = min(poll * 2, poll_max)

    async def _settle(self, run: WorkflowRun) -> Any:
        """The result of a chain whose last run is ``run`` (terminal), or its error."""
        if run.status == RunStatus.COMPLETED:
            payloads = self.client._services.payloads
            result = await payloads.unpack(run.result)
            if self._result_hints is None:
                return result
            return payloads.converter.decode_result(self._result_hints, result)
        if run.status == RunStatus.CANCELLED:
            raise CancellationError(f"workflow {self.workflow_id!r} was cancelled")
        error = WorkflowFailed(f"workflow {self.workflow_id!r} failed in run {run.run_id}: {run.error}")
        error.cause = run.error  # type: ignore[attr-defined]
        try:
            raise error
        finally:
            del error  # its traceback holds this frame: no reference cycle through the local

    async def signal(
        self, name: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> None:
        """Send a signal; see ``Client.signal`` for ``idempotency_key``."""
        await self.client.signal(
            self.workflow_id, name, payload, idempotency_key=idempotency_key
        )

    async def cancel(self) -> bool:
        return await self.client.cancel(self.workflow_id)

    async def terminate(self, reason: str | None = None) -> WorkflowRun:
        """End the chain now, with or without a worker; see ``Client.terminate``."""
        return await self.client.terminate(self.workflow_id, reason=reason)

    async def describe(self) -> WorkflowRun:
        """The chain's current run."""
        run = await self.client._current_run(self.workflow_id, self.first_run_id)
        if run is None:
            raise WorkflowNotFound(f"no workflow with id {self.workflow_id!r}")
        return await self.client._public(run)

    async def events(self, run_id: str | None = None) -> list[Event]:
        if run_id is None:
            run_id = (await self.describe()).run_id
        return await self.client._events(run_id, self.workflow_id)


def _not_running(run: WorkflowRun, what: str) -> WorkflowNotRunning:
    return WorkflowNotRunning(
        f"workflow {run.workflow_id!r} is not running: its chain has ended with status "
        f"{run.status.value!r} (last run {run.run_id}), so {what}. Start a new chain to use "
        "this workflow id again",
        workflow_id=run.workflow_id,
        run_id=run.run_id,
        status=run.status.value,
    )
