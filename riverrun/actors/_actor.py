"""The base class of actors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._context import ActorContext

__all__ = ["Actor"]


class Actor:
    """Subclass this and override :meth:`receive` (and, if needed, the two hooks).

    An actor object lives for one *incarnation*: it is built by the factory given to
    ``spawn``, and a restart builds a fresh one from the same factory, so state that must
    survive a restart does not live on the object. The kernel calls the hooks from the
    actor's own task, one at a time: ``on_start``, then ``receive`` for each message, then
    ``on_stop``.
    """

    async def on_start(self, ctx: ActorContext) -> None:
        """Called before the first message; spawn children and start tasks here.

        An exception fails the actor, like one raised by :meth:`receive`.
        """

    async def receive(self, ctx: ActorContext, message: object) -> object:
        """Handle one message; the return value is the reply to ``ask`` (ignored for tell).

        Also receives :class:`Terminated` for every actor watched with ``ctx.watch``.
        An exception fails the actor: its supervisor restarts it or escalates; for an
        ``ask``, the asker gets the exception too.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not handle {message!r}: override Actor.receive"
        )

    async def on_stop(self, ctx: ActorContext) -> None:
        """Called once per incarnation when it ends, whatever the reason (stop, failure,
        restart), after its children have stopped and its background tasks are cancelled.

        Runs shielded from cancellation, with a deadline of the actor's grace period.
        """
