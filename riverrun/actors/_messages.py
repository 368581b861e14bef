"""Messages the kernel itself puts in mailboxes.

Design note: a user message travels through the mailbox as itself, with no wrapper, so that
``tell`` costs one memory-stream send and nothing else. Only ``ask`` wraps its message, in an
:class:`_Ask` envelope that carries the one-shot reply slot. :data:`WAKE` is a doorbell the
kernel rings to wake an idle actor so that it looks at its system queue (``Terminated``
notifications) or at a stop request; it is never shown to user code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio
import attrs

from riverrun._errors import ActorStopped

if TYPE_CHECKING:
    from ._ref import ActorRef

__all__ = ["WAKE", "Terminated"]


@attrs.frozen(kw_only=True)
class Terminated:
    """Delivered to every watcher (see :meth:`ActorContext.watch`) when an actor ends.

    Attributes:
        ref: The actor that ended.
        cause: ``None`` when it stopped normally (asked to stop, or stopped by its parent);
            the exception when it failed and its supervisor gave up on it.
    """

    ref: ActorRef
    cause: BaseException | None


class _Wake:
    """The doorbell's type; a singleton."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<WAKE>"


WAKE: Final = _Wake()


class Ask:
    """A message sent by ``ask``, with the slot its reply goes into.

    Exactly one of :meth:`succeed` / :meth:`fail` takes effect; later calls are ignored, so
    an envelope can be failed defensively on every exit path of the actor.
    """

    __slots__ = ("_event", "error", "message", "result")

    def __init__(self, message: object) -> None:
        self.message = message
        self.result: object = None
        self.error: BaseException | None = None
        self._event = anyio.Event()

    def succeed(self, result: object) -> None:
        """Deliver ``result`` to the asker."""
        if not self._event.is_set():
            self.result = result
            self._event.set()

    def fail(self, error: BaseException, path: str) -> None:
        """Deliver ``error`` to the asker; a cancellation becomes :class:`ActorStopped`."""
        if self._event.is_set():
            return
        if not isinstance(error, Exception):
            stopped = ActorStopped(
                f"actor {path!r} was stopped or restarted before it replied to {self.message!r}"
            )
            stopped.__cause__ = error
            error = stopped
        self.error = error
        self._event.set()

    async def wait(self) -> object:
        """Wait for the reply; return it or raise the error the actor delivered."""
        await self._event.wait()
        if self.error is not None:
            raise self.error
        return self.result
