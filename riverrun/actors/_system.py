"""The actor system: the root of the supervision tree and the owner of every actor task.

Design note: the system is a nursery in trio's sense. Entering it opens an anyio task group
(every actor task descends from it) and, inside that, a cancel scope around the ``async
with`` body. Top-level actors are supervised by a root guardian with the system's strategy.
An escalation that reaches the guardian is recorded in :attr:`ActorSystem.failures`; it goes
to ``on_escalation`` if one was given, and otherwise cancels the body, so that the system
stops and raises it from ``async with`` as an :class:`ExceptionGroup`, as a trio nursery
does with a crashed task. A normal exit stops the top-level actors gracefully (each subtree
children first, each actor with its grace period, then hard cancellation).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from riverrun._errors import ActorNotFound, EscalationError

from ._cell import Cell, spawn
from ._ref import ActorRef
from ._strategy import SupervisorStrategy
from ._supervisor import Supervisor

if TYPE_CHECKING:
    from ._actor import Actor

__all__ = ["ActorSystem"]


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class _Guardian(Supervisor):
    """The invisible parent of top-level actors."""

    __slots__ = ()

    def accepting(self) -> bool:
        return self.system._state is _State.RUNNING

    def task_group(self) -> TaskGroup:
        return self.system._task_group()

    def escalate(self, error: EscalationError) -> None:
        self.system._root_escalation(error)


class ActorSystem:
    """The root of a supervision tree; an async context manager that owns every actor.

    ::

        async with ActorSystem() as system:
            ref = await system.spawn(Counter, name="counter")
            await ref.tell("increment")

    Args:
        strategy: How the root supervises top-level actors; also the default strategy of
            every actor spawned without ``supervisor=``. Default: one-for-one, 3 restarts
            within 5 s, exponential backoff from 0.1 s.
        on_escalation: Called with the :class:`EscalationError` when a top-level actor
            fails more often than ``strategy`` allows. Without it, the system stops and
            raises the error out of ``async with`` (in an ``ExceptionGroup``).
        mailbox_size: Default mailbox capacity.
        grace: Default grace period of an actor, in seconds: how long it may take to
            finish its message once asked to stop, and then how long ``on_stop`` may take.
        clock: The clock of restart-intensity windows; default ``anyio.current_time``.
    """

    def __init__(
        self,
        *,
        strategy: SupervisorStrategy | None = None,
        on_escalation: Callable[[EscalationError], None] | None = None,
        mailbox_size: int = 1000,
        grace: float = 5.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(mailbox_size, int) or mailbox_size < 1:
            raise ValueError(f"mailbox_size must be an int >= 1, got {mailbox_size!r}")
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        self.strategy = SupervisorStrategy() if strategy is None else strategy
        self.mailbox_size = mailbox_size
        self.grace = grace
        self.clock: Callable[[], float] = anyio.current_time if clock is None else clock
        self._on_escalation = on_escalation
        self._state = _State.NEW
        self._tg: TaskGroup | None = None
        self._body_scope: anyio.CancelScope | None = None
        self._guardian = _Guardian(system=self, path="", strategy=self.strategy)
        self._registry: dict[str, Cell] = {}
        self._failures: list[EscalationError] = []
        self._unhandled: list[EscalationError] = []

    # -- public API ---------------------------------------------------------------------

    async def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        supervisor: SupervisorStrategy | None = None,
        grace: float | None = None,
    ) -> ActorRef:
        """Spawn a top-level actor, supervised by the system's root.

        Returns as soon as the actor exists: its mailbox accepts messages at once, and
        ``on_start`` runs before the first of them is handled.

        Args:
            factory: A zero-argument callable building the actor object (a class, a
                ``functools.partial``...). Each restart calls it again.
            name: Unique among live siblings, without ``/``; default ``$1``, ``$2``...
            mailbox_size: Mailbox capacity; default the system's.
            supervisor: The strategy this actor applies to *its* children.
            grace: This actor's grace period (see :class:`ActorSystem`).

        Raises:
            RuntimeError: The system is not running.
            ValueError: A bad name, size or grace.
        """
        self._check_running()
        await anyio.lowlevel.checkpoint()
        self._check_running()
        return spawn(
            self._guardian,
            factory,
            name=name,
            mailbox_size=self.mailbox_size if mailbox_size is None else mailbox_size,
            strategy=self.strategy if supervisor is None else supervisor,
            grace=self.grace if grace is None else grace,
        )

    def lookup(self, path: str) -> ActorRef:
        """The live actor at ``path`` (``"parent/child"``; a top-level actor's path is its name).

        Raises:
            ActorNotFound: No live actor has that path.
        """
        cell = self._registry.get(path.strip("/"))
        if cell is None:
            raise ActorNotFound(f"no live actor at {path!r}; it never existed or has stopped")
        return cell.ref

    @property
    def children(self) -> tuple[ActorRef, ...]:
        """The live top-level actors, in spawn order."""
        return tuple(cell.ref for cell in self._guardian.children.values())

    @property
    def failures(self) -> tuple[EscalationError, ...]:
        """Every escalation that reached the root, handled or not, oldest first."""
        return tuple(self._failures)

    def __len__(self) -> int:
        """The number of live actors."""
        return len(self._registry)

    def __repr__(self) -> str:
        return (
            f"<ActorSystem {self._state.value} actors={len(self._registry)} "
            f"failures={len(self._failures)}>"
        )

    async def __aenter__(self) -> ActorSystem:
        if self._state is not _State.NEW:
            raise RuntimeError("an ActorSystem can be entered only once; create a new one")
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._body_scope = anyio.CancelScope()
        self._body_scope.__enter__()
        self._state = _State.RUNNING
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._tg is not None and self._body_scope is not None
        if self._body_scope.__exit__(exc_type, exc, tb):
            exc_type, exc, tb = None, None, None  # the body was cancelled by an escalation
        self._state = _State.CLOSING
        cancelled = anyio.get_cancelled_exc_class()
        if not isinstance(exc, cancelled):
            try:
                await self._guardian.stop_children()
            except cancelled as stop_exc:  # cancelled from outside while stopping
                exc_type, exc, tb = type(stop_exc), stop_exc, stop_exc.__traceback__
        # Graceful or not, the task group cancels what is left (restart coordinators, or
        # every actor when we were cancelled from outside) and waits for all of it. Only a
        # cancellation goes into the task group: a body exception is not wrapped in a group.
        self._tg.cancel_scope.cancel()
        try:
            if isinstance(exc, cancelled):
                await self._tg.__aexit__(exc_type, exc, tb)
            else:
                await self._tg.__aexit__(None, None, None)
        finally:
            self._state = _State.CLOSED
        if self._unhandled:
            errors: list[BaseException] = [*self._unhandled]
            if exc is not None:
                errors.append(exc)
            raise BaseExceptionGroup("an actor failure escalated to the ActorSystem", errors)
        return False

    # -- for the kernel -----------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state is not _State.RUNNING:
            raise RuntimeError(
                f"the ActorSystem is {self._state.value}; spawn inside "
                "`async with ActorSystem() as system:`"
            )

    def _task_group(self) -> TaskGroup:
        assert self._tg is not None
        return self._tg

    def _register(self, cell: Cell) -> None:
        self._registry[cell.path] = cell

    def _unregister(self, cell: Cell) -> None:
        if self._registry.get(cell.path) is cell:
            del self._registry[cell.path]

    def _root_escalation(self, error: EscalationError) -> None:
        self._failures.append(error)
        if self._on_escalation is not None:
            try:
                self._on_escalation(error)
            except Exception as exc:
                error.add_note(f"on_escalation raised {exc!r}; the escalation is unhandled")
            else:
                return
        self._unhandled.append(error)
        if self._body_scope is not None:
            self._body_scope.cancel()
