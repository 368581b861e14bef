"""The worker: a supervisor actor hosting one actor per active workflow id.

Design note. The worker serves queues; it hosts the workflows of the partitions of those
queues that it owns (``PartitionOwner``: one lease per partition, never one per workflow).
One shared inbox subscription per owned partition (``Inbox.watch(queue=, partition=)``),
never one consumer per workflow: the worker routes each message to the actor hosting that
workflow id, spawning (rehydrating) it when it is not in memory. Claiming a partition resumes
the chains of its index of running workflows; handing it over stops them. A ``WorkflowActor`` runs its
``WorkflowInstance`` as a task it owns; an infrastructure fault (the store unreachable, a
timeout) fails the actor and the worker's one-for-one strategy restarts it, with exponential
backoff, from its history. A workflow's own exception never gets here: the instance records
it as ``workflow.failed``. ``NonDeterminismError`` parks the workflow (logged, history
untouched) until the worker runs code that matches it; so does any other crash that repeats
the same way ``park_after_failures`` times in a row (a deterministic fault: a corrupt event,
a bug), while an infrastructure fault restarts it with backoff for as long as it lasts. An actor whose chain ended, or that
sat idle past ``passivate_after``, stops; the next message for it spawns a fresh one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import attrs
from anyio.abc import TaskStatus

from .._errors import (
    ActorStopped,
    ConcurrencyConflict,
    MailboxFull,
    NonDeterminismError,
    WorkflowNotRegistered,
)
from ..actors import (
    Actor,
    ActorContext,
    ActorRef,
    ActorSystem,
    Backoff,
    SupervisorStrategy,
    Terminated,
)
from ..persistence import InboxMessage, QuarantinedMessage, RunKey
from ._containment import CrashTracker, crash_signature, is_infrastructure
from ._instance import WorkflowInstance
from ._logcontext import bind_workflow, install_context_filter
from ._ownership import PartitionOwner
from ._quarantine import quarantine_record, warn_unregistered
from ._resume import resume_partition
from ._services import Services
from ._stuck import (
    RestartStreaks,
    ended_by_another_writer,
    note_parked,
    note_restart_loop,
    run_ended,
)

__all__ = ["Worker", "WorkerStatistics"]

log = logging.getLogger("riverrun.worker")


@attrs.frozen(kw_only=True)
class WorkerStatistics:
    active: int
    started: int
    restarts: int
    passivated: int
    parked: int
    #: messages skipped as undecodable or unusable (see ``Worker.quarantine``)
    quarantined: int = 0


class WorkflowActor(Actor):
    """Hosts one workflow id: each incarnation replays the chain's current run."""

    def __init__(
        self, worker: Worker, workflow_id: str, queue: str, *, quiet: bool = False
    ) -> None:
        self.worker = worker
        self.instance = WorkflowInstance(worker.services, workflow_id, queue)
        worker._actors[workflow_id] = self
        if quiet:
            # spawned for a chain just started here, before any inbox message for it
            # reached this worker: its instance reads the inbox once one does
            self.instance._inbox_dirty = False

    async def on_start(self, ctx: ActorContext) -> None:
        # in the actor's own task: its supervision logs and every task it starts carry the id
        bind_workflow(self.instance.workflow_id)
        if ctx.restarts:
            self.worker._restarts += 1
        ctx.start_soon(self._host, ctx)

    async def _host(self, ctx: ActorContext) -> None:
        instance = self.instance
        try:
            await instance.run()
        except NonDeterminismError as err:
            run_id = instance.key.run_id if instance.key else None
            log.error("workflow %s run %s parked: %s", instance.workflow_id, run_id, err)
            self.worker.services.telemetry.parked("nondeterminism")
            self.worker._parked[instance.workflow_id] = str(err)
            await self.worker._note_parked(instance)
        except ConcurrencyConflict as err:
            services = self.worker.services
            ended = await ended_by_another_writer(services.backend, instance.key)
            if ended is not None:
                log.warning(
                    "workflow %s: its run was ended by another writer (%s); letting it go: %s",
                    instance.workflow_id,
                    ended,
                    err,
                )
            elif self.worker.owns(instance.queue, services.partition_of(instance.workflow_id)):
                # Nobody else may write here: a write that met an earlier try of itself (an
                # ack lost in an outage, a store that had not caught up after a restart).
                # Letting go would leave the workflow hosted by no one: reload its history and
                # decide again, as after any crash (parked if it keeps failing the same way).
                if not self.worker._crashed(instance, err):
                    await self.worker._restarting(instance, err)
                    raise
                await self.worker._note_parked(instance)
            else:
                log.warning(
                    "workflow %s: another worker owns it now: %s", instance.workflow_id, err
                )
            # (or a terminate ended the run): a handle waiting here reads the store instead
            self.worker.services.notify_done(instance.workflow_id)
        except WorkflowNotRegistered as err:
            # another worker of the namespace may register it: leave the run as it is
            await self.worker._not_registered(instance, err)
        except Exception as err:
            if not self.worker._crashed(self.instance, err):
                await self.worker._restarting(self.instance, err)
                raise  # the supervisor restarts the actor, with backoff
            await self.worker._note_parked(self.instance)
        else:
            self.worker._crashes.pop(instance.workflow_id, None)
            self.worker._streaks.forget(instance.workflow_id)
            if not instance.finished:
                self.worker._passivated += 1
        ctx.stop()

    async def receive(self, ctx: ActorContext, message: object) -> object:
        if isinstance(message, InboxMessage) or message is None:
            self.instance.notify(message)
        return None


class WorkerActor(Actor):
    """Supervises the workflow actors; learns of their ends through watch."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_start(self, ctx: ActorContext) -> None:
        self.worker._ctx = ctx
        self.worker._ready.set()

    async def receive(self, ctx: ActorContext, message: object) -> object:
        if isinstance(message, Terminated):
            self.worker._ended(message.ref)
        return None


class Worker:
    """Hosts every workflow of one namespace that this process runs."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._refs: dict[str, ActorRef] = {}
        self._by_ref: dict[ActorRef, str] = {}
        self._actors: dict[str, WorkflowActor] = {}
        #: the queue of each workflow id hosted here
        self._queues: dict[str, str] = {}
        #: the partitions owned, each with the scope of its inbox consumer
        self._watches: dict[tuple[str, int], anyio.CancelScope] = {}
        # partitions whose inbox consumer is open (it hears what is sent from then on)
        self._listening: set[tuple[str, int]] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        queues = services.options.queues or tuple(services.registry.queues()) or ("default",)
        services.served_queues = frozenset(queues)
        self.ownership = PartitionOwner(self, list(queues))
        self._rerun: set[str] = set()
        self._parked: dict[str, str] = {}
        self._crashes: dict[str, CrashTracker] = {}
        self._streaks = RestartStreaks()
        self._ctx: ActorContext | None = None
        self._ready = anyio.Event()
        self._started = 0
        self._restarts = 0
        self._passivated = 0
        install_context_filter()  # loggers created since import get the context too
        #: (workflow id, run id) whose unregistered type this worker has reported
        self._unregistered: set[tuple[str, str | None]] = set()

    def __repr__(self) -> str:
        return (
            f"<Worker active={len(self._refs)} parked={len(self._parked)} "
            f"partitions={len(self._watches)}>"
        )

    @property
    def queues(self) -> list[str]:
        """The queues this worker serves."""
        return list(self.ownership.queues)

    def partitions(self) -> dict[str, list[int]]:
        """The partitions this worker owns now, by queue."""
        return self.ownership.owned()

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            active=len(self._refs),
            started=self._started,
            restarts=self._restarts,
            passivated=self._passivated,
            parked=len(self._parked),
            quarantined=self.services.backend.quarantine.count,
        )

    @property
    def quarantine(self) -> list[QuarantinedMessage]:
        """The most recently quarantined messages, oldest first: subject, sequence, reason,
        workflow id and run id where known."""
        return self.services.backend.quarantine.recent()

    async def _not_registered(self, instance: WorkflowInstance, err: WorkflowNotRegistered) -> None:
        """Say once per run, in the log and as an operator note, that this worker does not
        register the run's workflow type (a typo, or a worker with other code)."""
        run_id = instance.key.run_id if instance.key else None
        seen = (instance.workflow_id, run_id)
        if seen in self._unregistered:
            return
        if len(self._unregistered) >= 10_000:
            self._unregistered.clear()
        self._unregistered.add(seen)
        await warn_unregistered(self.services, instance.workflow_id, run_id, err)

    @property
    def parked(self) -> dict[str, str]:
        """Workflow ids parked (non-determinism, or a crash that repeats), with the reason.

        A parked workflow stays parked, its history untouched and its inbox kept, until
        this worker stops (or a terminate ends its run); the next worker to host it (a
        restart) tries it again.
        """
        return dict(self._parked)

    async def _note_parked(self, instance: WorkflowInstance) -> None:
        """Write the operator note saying why the workflow is parked (``runs show``)."""
        self._streaks.forget(instance.workflow_id)
        services = self.services
        run_id = instance.key.run_id if instance.key else None
        reason = self._parked.get(instance.workflow_id, "parked")
        await note_parked(
            services.backend,
            instance.workflow_id,
            run_id,
            services.worker_id,
            services.clock.now(),
            reason,
        )

    async def _restarting(self, instance: WorkflowInstance, err: Exception) -> None:
        """Count a restart; note a restart loop once, on its ``RESTART_LOOP_AFTER``-th."""
        run_id = instance.key.run_id if instance.key else None
        position = (run_id, instance.machine.last_sequence if instance.machine else 0)
        count = self._streaks.crashed(instance.workflow_id, position)
        if count is not None:
            services = self.services
            await note_restart_loop(
                services.backend,
                instance.workflow_id,
                run_id,
                services.worker_id,
                services.clock.now(),
                count,
                f"{type(err).__name__}: {err}",
            )

    def _crashed(self, instance: WorkflowInstance, err: Exception) -> bool:
        """A workflow actor crashed: log it; park the workflow (return True) if it crashed
        the same way ``park_after_failures`` times in a row, else let it restart."""
        workflow_id = instance.workflow_id
        run_id = instance.key.run_id if instance.key else None
        cause = f"{type(err).__name__}: {err}"
        self.services.telemetry.crashed(err, infrastructure=is_infrastructure(err))
        if is_infrastructure(err):
            # an outage may last: restart with backoff for as long as it does, never park
            self._crashes.pop(workflow_id, None)
            log.warning(
                "workflow %s run %s: infrastructure fault, restarting with backoff: %s",
                workflow_id,
                run_id,
                cause,
            )
            return False
        limit = self.services.options.park_after_failures
        position = (run_id, instance.machine.last_sequence if instance.machine else 0)
        tracker = self._crashes.setdefault(workflow_id, CrashTracker())
        count = tracker.record(crash_signature(err), position)
        if count < limit:
            log.warning(
                "workflow %s run %s crashed (%d of %d the same way before it is parked), "
                "restarting: %s",
                workflow_id,
                run_id,
                count,
                limit,
                cause,
                exc_info=err,
            )
            return False
        del self._crashes[workflow_id]
        reason = (
            f"run {run_id} crashed {count} times in a row the same way at event "
            f"#{position[1]}: {cause}"
        )
        log.error(
            "workflow %s run %s parked: %s; it stays parked until this worker restarts "
            "(fix the cause first)",
            workflow_id,
            run_id,
            reason,
            exc_info=err,
        )
        self._parked[workflow_id] = reason
        self.services.telemetry.parked("repeated_crash")
        return True

    def strategy(self) -> SupervisorStrategy:
        options = self.services.options
        return SupervisorStrategy.one_for_one(
            # infrastructure faults (NATS restarting) may last a while: keep restarting with
            # backoff rather than escalating and taking every other workflow down too
            max_restarts=1_000,
            within=60.0,
            backoff=Backoff(base=options.restart_backoff, maximum=options.restart_backoff_max),
        )

    async def run(
        self, system: ActorSystem, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await system.spawn(
            lambda: WorkerActor(self), name="worker", supervisor=self.strategy(), grace=5.0
        )
        await self._ready.wait()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                # the first round claims this worker's partitions and resumes what runs there
                await tg.start(self.ownership.run)
                self.services.on_started = self._host_started
                task_status.started()
        finally:
            self.services.on_started = None

    # -- partitions ------------------------------------------------------------------------

    def owns(self, queue: str, partition: int) -> bool:
        return (queue, partition) in self._watches

    def claim_of(self, queue: str, partition: int) -> anyio.CancelScope | None:
        """The scope of the partition's inbox consumer while it is owned here."""
        return self._watches.get((queue, partition))

    def listening(self, queue: str, partition: int) -> bool:
        """Whether the partition's inbox consumer is open: it hears what is sent from now."""
        return (queue, partition) in self._listening

    async def claim_partition(self, queue: str, partition: int) -> None:
        """Open the partition's inbox consumer, then resume every chain in its index, in a
        task of its own: the ownership round that claims goes on at once (renewing leases),
        however many chains the partition holds."""
        assert self._tg is not None
        scope = anyio.CancelScope()
        # owned from here on, so that what the consumer hears at once is routed, not dropped
        self._watches[(queue, partition)] = scope
        try:
            await self._tg.start(self._watch, queue, partition, scope)
        except BaseException:
            self._watches.pop((queue, partition), None)
            raise
        self._listening.add((queue, partition))
        self._tg.start_soon(resume_partition, self, queue, partition, scope)

    async def _watch(
        self,
        queue: str,
        partition: int,
        scope: anyio.CancelScope,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with scope:
                async with self.services.backend.inbox.watch(
                    queue=queue, partition=partition
                ) as messages:
                    task_status.started()
                    await self._route(messages)
        finally:
            if self._watches.get((queue, partition)) in (scope, None):
                self._listening.discard((queue, partition))  # (not a newer claim's)

    async def release_partition(self, queue: str, partition: int) -> None:
        """Stop the partition's consumer and its workflows here (their queued projections
        finish first), so that another worker can take it over."""
        scope = self._watches.pop((queue, partition), None)
        self._listening.discard((queue, partition))
        if scope is not None:
            scope.cancel()
        partition_of = self.services.partition_of
        hosted = [
            (workflow_id, ref)
            for workflow_id, ref in list(self._refs.items())
            if self._queues.get(workflow_id) == queue and partition_of(workflow_id) == partition
        ]
        for workflow_id, _ in hosted:
            actor = self._actors.get(workflow_id)
            if actor is not None:
                actor.instance.stop()
        grace = self.services.options.lease_ttl.total_seconds() / 3
        for _, ref in hosted:
            with anyio.move_on_after(grace):
                await ref.wait_stopped()
            await ref.stop(grace=0)

    async def _route(self, messages: AsyncIterator[InboxMessage]) -> None:
        async for message in messages:
            if message.problem is not None:
                if message.workflow_id in self._refs:
                    # its instance reads it next and quarantines it, naming the run
                    await self.deliver(message.workflow_id, None, queue=message.queue)
                else:
                    # never spawn for garbage: an instance started later meets it in its read
                    self.services.backend.quarantine.report(
                        quarantine_record(message, message.problem, None)
                    )
                continue
            await self.deliver(message.workflow_id, message, queue=message.queue)

    def _host_started(self, workflow_id: str, queue: str) -> bool:
        """Host a chain just started in this process (``Services.on_started``) if this worker
        owns its partition: no start message, no read of its first event or of its inbox."""
        ctx = self._ctx
        if ctx is None or workflow_id in self._parked:
            return False
        if not self.owns(queue, self.services.partition_of(workflow_id)):
            return False  # its partition's owner learns of it from the start message
        ctx.start_soon(self._spawn_started, workflow_id, queue)
        return True

    async def _spawn_started(self, workflow_id: str, queue: str) -> None:
        if not self.owns(queue, self.services.partition_of(workflow_id)):
            # the partition was handed over meanwhile: its new owner gets the start message
            fresh = self.services.take_fresh(workflow_id)
            if fresh is not None:
                await self.services.announce_start(workflow_id, fresh.key.run_id, queue)
            return
        quiet = workflow_id not in self._refs and workflow_id not in self._rerun
        await self.deliver(workflow_id, None, queue=queue, quiet=quiet)

    async def deliver(
        self,
        workflow_id: str,
        message: InboxMessage | None,
        *,
        queue: str | None = None,
        quiet: bool = False,
    ) -> None:
        if workflow_id in self._parked:
            if message is not None and message.kind == "terminate":
                await self._unpark_if_ended(workflow_id, message)
            return
        queue = queue or self._queues.get(workflow_id) or await self.services.queue_of(workflow_id)
        if not self.owns(queue, self.services.partition_of(workflow_id)):
            return  # another worker's partition (or one just handed over)
        ref = self._refs.get(workflow_id)
        if ref is not None:
            try:
                ref.tell_nowait(message)
            except MailboxFull:
                pass  # a notification is a hint; the queued ones make the instance read
            except ActorStopped:
                self._rerun.add(workflow_id)
            return
        ctx = self._ctx
        assert ctx is not None
        self._queues[workflow_id] = queue
        ref = await ctx.spawn(
            lambda: WorkflowActor(self, workflow_id, queue, quiet=quiet),
            name=f"wf:{workflow_id.replace('/', '%2F')}",
            mailbox_size=64,
        )
        ctx.watch(ref)
        self._refs[workflow_id] = ref
        self._by_ref[ref] = workflow_id
        self._started += 1

    async def _unpark_if_ended(self, workflow_id: str, message: InboxMessage) -> None:
        """A terminate message for a parked workflow: if its run has ended (``runs
        terminate`` writes the end, fenced, before sending it), let the workflow go; the
        next message for its id hosts it afresh. Otherwise it stays parked."""
        run_id = message.data.get("run_id")
        key = RunKey(workflow_id=workflow_id, run_id=run_id) if isinstance(run_id, str) else None
        if key is None or not await run_ended(self.services.backend, key):
            return
        reason = self._parked.pop(workflow_id, None)
        if reason is None:
            return
        self._crashes.pop(workflow_id, None)
        log.info(
            "workflow %s: unparked, its run was terminated (it was parked: %s)", workflow_id, reason
        )
        self.services.notify_done(workflow_id)  # a handle waiting here reads the store

    def _ended(self, ref: ActorRef) -> None:
        workflow_id = self._by_ref.pop(ref, None)
        if workflow_id is None:
            return
        if self._refs.get(workflow_id) is ref:
            del self._refs[workflow_id]
            self._actors.pop(workflow_id, None)
        if workflow_id in self._rerun and self._ctx is not None:
            self._rerun.discard(workflow_id)
            self._ctx.start_soon(self.deliver, workflow_id, None)
        elif workflow_id not in self._refs:
            self._queues.pop(workflow_id, None)
