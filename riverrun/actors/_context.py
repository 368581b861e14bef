"""What an actor can do to the world from inside its hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVarTuple

from ._ref import ActorRef
from ._strategy import SupervisorStrategy

if TYPE_CHECKING:
    from ._actor import Actor
    from ._cell import Cell
    from ._system import ActorSystem

__all__ = ["ActorContext"]

_Ts = TypeVarTuple("_Ts")


class ActorContext:
    """The actor's view of itself and its place in the tree; passed to every hook.

    One context serves all incarnations of an actor. Its methods are meant for the actor's
    own hooks and background tasks, not for other actors.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @property
    def self_ref(self) -> ActorRef:
        """This actor's ref (stable across restarts)."""
        return self._cell.ref

    @property
    def name(self) -> str:
        """This actor's name among its siblings."""
        return self._cell.name

    @property
    def path(self) -> str:
        """This actor's path from the top of the tree, e.g. ``"worker/wf-1"``."""
        return self._cell.path

    @property
    def parent(self) -> ActorRef | None:
        """The supervising actor's ref, or ``None`` for a top-level actor."""
        return self._cell.ref.parent

    @property
    def children(self) -> tuple[ActorRef, ...]:
        """The live children, in spawn order."""
        return self._cell.ref.children

    @property
    def system(self) -> ActorSystem:
        """The actor system this actor belongs to."""
        return self._cell.system

    @property
    def restarts(self) -> int:
        """How many times this actor has been restarted (0 in its first incarnation)."""
        return self._cell.restarts

    async def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        mailbox_size: int | None = None,
        supervisor: SupervisorStrategy | None = None,
        grace: float | None = None,
    ) -> ActorRef:
        """Spawn a child actor, supervised by this actor.

        This actor's own strategy (the ``supervisor`` it was spawned with) decides what
        happens when the child fails. The child belongs to the current incarnation: it is
        stopped before this actor's ``on_stop``, and whenever this actor restarts. The
        arguments are those of :meth:`ActorSystem.spawn`; defaults come from the system.

        Raises:
            ActorStopped: This actor is stopping or restarting.
            ValueError: ``name`` is taken by a live sibling, or contains ``/``.
        """
        cell = self._cell
        defaults = cell.system
        return cell.spawn_child(
            factory,
            name=name,
            mailbox_size=defaults.mailbox_size if mailbox_size is None else mailbox_size,
            strategy=defaults.strategy if supervisor is None else supervisor,
            grace=defaults.grace if grace is None else grace,
        )

    def watch(self, ref: ActorRef) -> None:
        """Receive ``Terminated(ref=ref, cause=...)`` when ``ref``'s actor ends.

        ``cause`` is ``None`` for a normal stop and the exception for a failure its
        supervisor gave up on. Watching an actor that has already ended delivers
        ``Terminated`` at once. Watches last for the current incarnation.
        """
        self._cell.watch(ref._cell)

    def unwatch(self, ref: ActorRef) -> None:
        """Stop watching ``ref``."""
        self._cell.unwatch(ref._cell)

    def stop(self) -> None:
        """Stop this actor after the current message (its grace period still applies)."""
        self._cell.request_stop(self._cell.grace)

    def start_soon(
        self,
        func: Callable[[*_Ts], Awaitable[object]],
        *args: *_Ts,
        name: str | None = None,
    ) -> None:
        """Run ``func(*args)`` as a background task owned by this actor.

        The task is cancelled when the incarnation ends (after the children have stopped,
        before ``on_stop``). If it raises, the actor fails, as if ``receive`` had raised.

        Raises:
            ActorStopped: This actor is stopping or restarting.
        """
        self._cell.start_soon(func, args, name)
