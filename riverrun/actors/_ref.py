"""Actor references: the only handle other code holds on an actor.

Design note: a ref addresses the cell, not one actor object, so it stays valid across
restarts and its mailbox keeps the messages queued while the actor restarts. Refs compare by
identity; each actor has exactly one. ``tell`` is a plain memory-stream send (the fast path);
``ask`` adds an envelope with a one-shot reply slot.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import anyio
import attrs

from riverrun._errors import ActorStopped, AskTimeout, MailboxFull

from ._mailbox import MailboxStatistics
from ._messages import Ask

if TYPE_CHECKING:
    from ._cell import Cell

__all__ = ["ActorRef", "ActorStatistics", "ActorStatus"]


class ActorStatus(enum.Enum):
    """Where an actor is in its life."""

    RUNNING = "running"
    """Starting (``on_start``) or handling messages."""
    RESTARTING = "restarting"
    """Failed, or restarting with a sibling; its mailbox keeps accepting messages."""
    STOPPING = "stopping"
    """Asked to stop; finishing its message, stopping its children, running ``on_stop``."""
    STOPPED = "stopped"
    """Gone for good; its ref refuses messages."""


@attrs.frozen(kw_only=True)
class ActorStatistics:
    """A snapshot of one actor.

    Attributes:
        path: The actor's path, e.g. ``"worker/wf-1"``.
        status: Where the actor is in its life.
        messages_processed: Messages its incarnations have handled (tell, ask, Terminated).
        restarts: How many times a new actor object was built after the first.
        failures: How many of its incarnations failed.
        children: How many live children it has.
        mailbox: Its mailbox.
    """

    path: str
    status: ActorStatus
    messages_processed: int
    restarts: int
    failures: int
    children: int
    mailbox: MailboxStatistics


@attrs.define(eq=False, repr=False)
class ActorRef:
    """A handle to an actor: send it messages, ask it questions, stop it, watch it end.

    Created by ``spawn``; never built by hand.
    """

    _cell: Cell

    @property
    def name(self) -> str:
        """The actor's name among its siblings."""
        return self._cell.name

    @property
    def path(self) -> str:
        """The actor's names from the top of the tree, joined by ``/``."""
        return self._cell.path

    @property
    def status(self) -> ActorStatus:
        """Where the actor is in its life now."""
        cell = self._cell
        if cell.stopped:
            return ActorStatus.STOPPED
        if cell.stopping:
            return ActorStatus.STOPPING
        if cell.down or cell.round is not None or cell.failure is not None:
            return ActorStatus.RESTARTING
        return ActorStatus.RUNNING

    @property
    def parent(self) -> ActorRef | None:
        """The supervising actor, or ``None`` for a top-level actor."""
        parent = self._cell.parent
        return getattr(parent, "ref", None)

    @property
    def children(self) -> tuple[ActorRef, ...]:
        """The live children, in spawn order."""
        return tuple(child.ref for child in self._cell.children.values())

    async def tell(self, message: object) -> None:
        """Put ``message`` in the mailbox, waiting while it is full (backpressure).

        Raises:
            ActorStopped: The actor has stopped (also if it stops while we wait for room).
        """
        try:
            await self._cell.mailbox.send_stream.send(message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._stopped() from None

    def tell_nowait(self, message: object) -> None:
        """Put ``message`` in the mailbox now.

        Raises:
            MailboxFull: The mailbox is full; use :meth:`tell` to wait for room.
            ActorStopped: The actor has stopped.
        """
        try:
            self._cell.mailbox.send_stream.send_nowait(message)
        except anyio.WouldBlock:
            raise MailboxFull(
                f"the mailbox of actor {self.path!r} is full "
                f"({self._cell.mailbox.size} messages); use `await tell()` to wait for room"
            ) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._stopped() from None

    async def ask(self, message: object, *, timeout: float | None = None) -> object:
        """Send ``message`` and wait for the value the actor's ``receive`` returns.

        If ``receive`` raises, the exception is raised here too, and the actor fails as it
        would for any message (its supervisor restarts it, or escalates). A timed-out ask
        stays in the mailbox and is still handled; only its reply is dropped.

        Args:
            message: The question.
            timeout: Seconds to wait, for room in the mailbox and for the reply together;
                ``None`` waits as long as the actor lives.

        Raises:
            AskTimeout: No reply within ``timeout`` (also a ``TimeoutError``).
            ActorStopped: The actor stopped (or restarted) before it replied.
        """
        envelope = Ask(message)
        if timeout is None:
            await self.tell(envelope)
            return await envelope.wait()
        with anyio.move_on_after(timeout):
            await self.tell(envelope)
            return await envelope.wait()
        raise AskTimeout(
            f"actor {self.path!r} did not reply to {message!r} within {timeout}s; "
            "it may be busy, blocked, or its mailbox full"
        )

    async def stop(self, *, grace: float | None = None) -> None:
        """Stop the actor and its subtree, and wait until all of it has stopped.

        The actor finishes the message in hand (for at most ``grace`` seconds, then it is
        cancelled), its children stop the same way, then its ``on_stop`` runs. Stopping a
        stopped actor does nothing. From inside the actor, use ``ctx.stop()`` instead.

        Args:
            grace: Seconds the actor gets to finish its message; default: its spawn grace.
        """
        cell = self._cell
        if not cell.stopped and cell.task_id == anyio.get_current_task().id:
            raise RuntimeError(
                f"actor {self.path!r} cannot await its own stop; call ctx.stop() instead"
            )
        if grace is not None and not grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        cell.request_stop(cell.grace if grace is None else grace)
        await cell.stopped_event.wait()

    async def wait_stopped(self) -> None:
        """Wait until the actor has stopped for good (returns at once if it has)."""
        await self._cell.stopped_event.wait()

    def statistics(self) -> ActorStatistics:
        """Return a snapshot of the actor's counters and mailbox."""
        cell = self._cell
        return ActorStatistics(
            path=cell.path,
            status=self.status,
            messages_processed=cell.processed,
            restarts=cell.restarts,
            failures=cell.failures,
            children=len(cell.children),
            mailbox=cell.mailbox.statistics(),
        )

    def _stopped(self) -> ActorStopped:
        return ActorStopped(f"actor {self.path!r} has stopped; it cannot receive messages")

    def __repr__(self) -> str:
        return f"<ActorRef {self.path!r} {self.status.value}>"
