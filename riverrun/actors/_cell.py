"""The actor cell: one actor's task, mailbox and lifecycle across restarts.

Design note: a cell is the long-lived identity behind an :class:`ActorRef`; its actor object
is rebuilt from the factory on every restart, while the mailbox, the ref and the name stay.
One task runs the cell (owned by the parent's task group) and loops over incarnations. An
incarnation owns a task group for the actor's children and background tasks, and one cancel
scope around ``on_start`` and the message loop, never one per message. Requests to end an
incarnation (stop, restart along with a sibling) set ``attention``, which the loop reads
between messages, ring the mailbox's doorbell to wake an idle actor, and put a deadline of
``grace`` seconds on that scope, which cancels a message that takes longer. Teardown always runs in the same order, shielded: children stop
(each with its own grace), background tasks are cancelled, ``on_stop`` runs with a deadline.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from riverrun._errors import ActorStopped, EscalationError

from ._context import ActorContext
from ._mailbox import Mailbox
from ._messages import WAKE, Ask, Terminated
from ._ref import ActorRef
from ._strategy import SupervisorStrategy
from ._supervisor import RestartRound, Supervisor

if TYPE_CHECKING:
    from ._actor import Actor
    from ._system import ActorSystem

__all__ = ["Cell", "spawn"]

log = logging.getLogger("riverrun.actors")


def _no_ref() -> None:
    return None


class Cell(Supervisor):
    """The kernel's side of one actor. Every attribute is the kernel's business."""

    __slots__ = (
        "__weakref__", "_ref", "active", "attention", "cause", "down", "factory", "failure",
        "failure_times", "failures", "grace", "mailbox", "name", "parent", "processed",
        "restarts", "resume_event", "round", "scope", "stop_grace", "stopped", "stopped_event",
        "stopping", "sysq", "task_id", "tg", "watchers", "watching",
    )  # fmt: skip

    def __init__(
        self,
        *,
        system: ActorSystem,
        parent: Supervisor,
        name: str,
        path: str,
        factory: Callable[[], Actor],
        mailbox_size: int,
        strategy: SupervisorStrategy,
        grace: float,
    ) -> None:
        super().__init__(system=system, path=path, strategy=strategy)
        self.parent = parent
        self.name = name
        self.factory = factory
        self.grace = self.stop_grace = grace
        self.mailbox = Mailbox(mailbox_size)
        self._ref: Callable[[], ActorRef | None] = _no_ref
        self.processed = self.restarts = self.failures = 0
        self.failure_times: deque[float] = deque()
        self.active = self.attention = self.down = self.stopping = self.stopped = False
        self.failure: Exception | None = None
        self.cause: BaseException | None = None
        self.round: RestartRound | None = None
        self.scope: anyio.CancelScope | None = None
        self.tg: TaskGroup | None = None
        self.resume_event: anyio.Event | None = None
        self.stopped_event = anyio.Event()
        self.sysq: deque[Terminated] = deque()
        self.watchers: dict[Cell, None] = {}
        self.watching: dict[Cell, None] = {}
        self.task_id: int | None = None

    @property
    def ref(self) -> ActorRef:
        """The actor's one ref. The cell holds it weakly (the ref holds the cell): an ended
        actor nobody refers to is freed at once, not left to the cycle collector. A ref
        nobody holds any more cannot be compared with, so making a new one is unobservable."""
        ref = self._ref()
        if ref is None:
            ref = ActorRef(self)
            self._ref = weakref.ref(ref)
        return ref

    # -- Supervisor -------------------------------------------------------------------

    def accepting(self) -> bool:
        return self.active and self.failure is None and not self.stopping and self.round is None

    def task_group(self) -> TaskGroup:
        assert self.tg is not None, "only called while accepting()"
        return self.tg

    def escalate(self, error: EscalationError) -> None:
        self.crash(error)

    # -- requests from other tasks (all synchronous) -------------------------------------

    def request_stop(self, grace: float) -> None:
        """Stop for good: finish the message in hand within ``grace`` seconds, then end."""
        if self.stopped:
            return
        self.stopping = True
        self.stop_grace = min(self.stop_grace, grace)
        self._interrupt(grace)
        if self.resume_event is not None:
            self.resume_event.set()

    def join_round(self, round_: RestartRound) -> None:
        """Become a member of a restart round (the failed child, or a sibling)."""
        if self.round is not None and not self.down:
            self.round.arrive()  # moved to a newer round: the old one no longer waits for us
        self.round = round_
        if not self.down:
            round_.pending += 1
            self._interrupt(self.grace)

    def resume(self) -> None:
        """Called by the round's coordinator: start the next incarnation."""
        self.round = None
        if self.resume_event is not None:
            self.resume_event.set()

    def spawn_child(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None,
        mailbox_size: int,
        strategy: SupervisorStrategy,
        grace: float,
    ) -> ActorRef:
        """Spawn a child supervised by this actor (see :func:`spawn`)."""
        return spawn(
            self, factory, name=name, mailbox_size=mailbox_size, strategy=strategy, grace=grace
        )

    def start_soon(
        self, func: Callable[..., Awaitable[object]], args: tuple[object, ...], name: str | None
    ) -> None:
        """Run a background task owned by the current incarnation."""
        if not self.accepting():
            raise ActorStopped(f"actor {self.path!r} is stopping or restarting")
        self.task_group().start_soon(self._guard, func, args, name=name or f"{self.path} task")

    async def _guard(
        self, func: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None:
        # An exception fails the actor, as if ``receive`` had raised it. Cancellation
        # (the incarnation ending) passes through untouched.
        try:
            await func(*args)
        except Exception as exc:
            self.crash(exc)

    def crash(self, error: Exception) -> None:
        """Fail the current incarnation now (a background task raised, or escalation)."""
        if self.failure is None:
            self.failure = error
        if self.scope is not None:
            self.scope.cancel()

    def notify(self, note: Terminated) -> None:
        """Queue a system message ahead of the mailbox and wake the actor if idle."""
        if self.stopped:
            return
        self.sysq.append(note)
        self.attention = True
        if self.scope is not None:
            self.mailbox.ring()

    def watch(self, other: Cell) -> None:
        """Deliver ``Terminated`` to this cell when ``other`` ends (at once if it has)."""
        if other.stopped:
            self.notify(Terminated(ref=other.ref, cause=other.cause))
        elif other is not self:
            other.watchers[self] = None
            self.watching[other] = None

    def unwatch(self, other: Cell) -> None:
        """Undo :meth:`watch`; a ``Terminated`` already queued is still delivered."""
        other.watchers.pop(self, None)
        self.watching.pop(other, None)

    def _interrupt(self, grace: float) -> None:
        self.attention = True
        scope = self.scope
        if scope is not None:
            scope.deadline = min(scope.deadline, anyio.current_time() + grace)
            self.mailbox.ring()

    # -- the cell's task ----------------------------------------------------------------

    async def run(self) -> None:
        """The cell's whole life: incarnations, failures, restarts, then the end."""
        self.task_id = anyio.get_current_task().id
        cause: BaseException | None = None
        try:
            while True:
                failure = await self._incarnation()
                if failure is not None:
                    self.failures += 1
                if self.stopping:
                    cause = failure
                    break
                if self.round is None and (
                    failure is None or not self.parent.decide(self, failure)
                ):
                    cause = failure
                    break
                await self._wait_resumed()
                if self.stopping:
                    break
                self.restarts += 1
        finally:
            if cause is not None:
                log.error(
                    "actor %s stopped by a failure (after %d restarts): %s: %s",
                    self.path,
                    self.restarts,
                    type(cause).__name__,
                    cause,
                    exc_info=cause,
                )
            self._finalize(cause)

    async def _wait_resumed(self) -> None:
        assert self.round is not None
        self.down = True
        self.round.arrive()
        # Loop: a newer round may take us over between our resume and our waking up; we
        # are down already, so that round does not wait for us, and we wait for it.
        while not self.stopping and self.round is not None:
            self.resume_event = resume = anyio.Event()
            await resume.wait()
        self.resume_event = None
        self.down = False

    async def _incarnation(self) -> Exception | None:
        self.failure = None
        if self.stopping or self.round is not None:
            return None
        try:
            actor = self.factory()
        except Exception as exc:
            return exc
        ctx = ActorContext(self)
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                self.active = True
                try:
                    with anyio.CancelScope() as scope:
                        self.scope = scope
                        await actor.on_start(ctx)
                        await self._loop(actor, ctx)
                except Exception as exc:
                    if self.failure is None:
                        self.failure = exc
                finally:
                    self.active = False
                    self.scope = None
                    with anyio.CancelScope(shield=True):
                        await self.stop_children()
                    tg.cancel_scope.cancel()
        finally:
            self.tg = None
            with anyio.move_on_after(self.stop_grace, shield=True):
                try:
                    await actor.on_stop(ctx)
                except Exception as exc:
                    if self.failure is None:
                        self.failure = exc
            for other in list(self.watching):
                self.unwatch(other)
            self.sysq.clear()
            self.attention = False
        return self.failure

    async def _loop(self, actor: Actor, ctx: ActorContext) -> None:
        # The hot path: one mailbox receive and one call per message, no allocation.
        receive = self.mailbox.receive_stream.receive
        handle = actor.receive
        while True:
            if self.attention and await self._attend(actor, ctx):
                return
            message = await receive()
            if type(message) is Ask:
                try:
                    result = await handle(ctx, message.message)
                except BaseException as exc:
                    message.fail(exc, self.path)
                    raise
                message.succeed(result)
            elif message is WAKE:
                continue
            else:
                await handle(ctx, message)
            self.processed += 1

    async def _attend(self, actor: Actor, ctx: ActorContext) -> bool:
        """Handle what ``attention`` flags; return whether the incarnation must end."""
        if self.stopping or self.round is not None:
            return True
        self.attention = False
        sysq = self.sysq
        while sysq:
            await actor.receive(ctx, sysq.popleft())
            self.processed += 1
            if self.stopping or self.round is not None:
                return True
        return False

    def _finalize(self, cause: BaseException | None) -> None:
        # Synchronous on purpose: it runs in ``finally`` even under cancellation.
        self.stopped = self.stopping = True
        self.cause = cause
        if self.round is not None and not self.down:
            self.round.arrive()
        self.round = None
        if self.parent.children.get(self.name) is self:
            del self.parent.children[self.name]
        self.system._unregister(self)
        self.mailbox.close(self.path)
        for other in list(self.watching):
            self.unwatch(other)
        note = Terminated(ref=self.ref, cause=cause)
        for watcher in list(self.watchers):
            watcher.watching.pop(self, None)
            watcher.notify(note)
        self.watchers.clear()
        self.stopped_event.set()


def spawn(
    parent: Supervisor,
    factory: Callable[[], Actor],
    *,
    name: str | None,
    mailbox_size: int,
    strategy: SupervisorStrategy,
    grace: float,
) -> ActorRef:
    """Create a child cell of ``parent`` and start its task in ``parent``'s task group."""
    if not callable(factory):
        raise TypeError(
            f"factory must be a zero-argument callable returning an Actor, got {factory!r}"
        )
    if not isinstance(mailbox_size, int) or mailbox_size < 1:
        raise ValueError(f"mailbox_size must be an int >= 1, got {mailbox_size!r}")
    if not grace >= 0:
        raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
    if not parent.accepting():
        raise ActorStopped(
            f"{parent.path or 'the actor system'!r} is stopping or restarting and cannot spawn"
        )
    name, path = parent.child_path(name)
    cell = Cell(
        system=parent.system,
        parent=parent,
        name=name,
        path=path,
        factory=factory,
        mailbox_size=mailbox_size,
        strategy=strategy,
        grace=grace,
    )
    parent.children[name] = cell
    parent.system._register(cell)
    parent.task_group().start_soon(cell.run, name=f"actor {path}")
    return cell.ref
