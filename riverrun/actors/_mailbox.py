"""The bounded mailbox of an actor.

Design note: a mailbox is one anyio memory object stream and keeps anyio's meanings. The
kernel wakes an idle actor by putting a doorbell (``WAKE``) in its empty mailbox, never by
cancelling it, so that a request to stop can never interrupt a message. The mailbox outlives restarts (messages queued for a
crashed actor are handled by its next incarnation) and is closed only when the actor stops
for good; then the messages still in it become dead letters and pending asks fail.
"""

from __future__ import annotations

import contextlib

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from riverrun._errors import ActorStopped

from ._messages import WAKE, Ask

__all__ = ["Mailbox", "MailboxStatistics"]


@attrs.frozen(kw_only=True)
class MailboxStatistics:
    """A snapshot of a mailbox (anyio's memory object stream statistics).

    Attributes:
        current_buffer_used: Messages waiting in the mailbox.
        max_buffer_size: The mailbox's capacity.
        open_send_streams: Open sending ends (1 while the actor lives, 0 once stopped).
        open_receive_streams: Open receiving ends (1 while the actor lives, 0 once stopped).
        tasks_waiting_send: Senders blocked on a full mailbox (backpressure at work).
        tasks_waiting_receive: 1 when the actor is idle, waiting for a message.
    """

    current_buffer_used: int
    max_buffer_size: float
    open_send_streams: int
    open_receive_streams: int
    tasks_waiting_send: int
    tasks_waiting_receive: int


@attrs.define(eq=False)
class Mailbox:
    """An actor's bounded mailbox: the two ends of one memory object stream.

    Args:
        size: Capacity (>= 1); ``tell`` waits while this many messages are queued.
    """

    size: int
    send_stream: MemoryObjectSendStream[object] = attrs.field(init=False)
    receive_stream: MemoryObjectReceiveStream[object] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.send_stream, self.receive_stream = anyio.create_memory_object_stream[object](self.size)

    def ring(self) -> None:
        """Make sure the owner looks at its flags soon, without waiting for a message.

        An empty mailbox gets a :data:`WAKE`, which wakes the owner whether it already waits
        in ``receive`` or is just about to. A non-empty one needs nothing: the owner takes
        its next message without blocking and checks its flags right after.
        """
        if self.send_stream.statistics().current_buffer_used == 0:
            with contextlib.suppress(
                anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                self.send_stream.send_nowait(WAKE)

    def close(self, path: str) -> int:
        """Close both ends; fail every queued ask; return how many messages were dropped.

        Draining comes first, while the receiving end is still open, so that a sender blocked
        on a full mailbox is either drained with the rest or woken with
        ``BrokenResourceError`` (which ``ActorRef`` reports as ``ActorStopped``).
        """
        dropped = 0
        while True:
            try:
                message = self.receive_stream.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if message is WAKE:
                continue
            dropped += 1
            if type(message) is Ask:
                message.fail(
                    ActorStopped(f"actor {path!r} stopped before it handled {message.message!r}"),
                    path,
                )
        self.receive_stream.close()
        self.send_stream.close()
        return dropped

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox's state."""
        stats = self.send_stream.statistics()
        return MailboxStatistics(
            current_buffer_used=stats.current_buffer_used,
            max_buffer_size=stats.max_buffer_size,
            open_send_streams=stats.open_send_streams,
            open_receive_streams=stats.open_receive_streams,
            tasks_waiting_send=stats.tasks_waiting_send,
            tasks_waiting_receive=stats.tasks_waiting_receive,
        )
