"""Request/reply on the hot path, with less work per request than ``nc.request``.

Design note. Every store operation is one NATS request: a message published with a reply
subject, answered by the server on that subject. ``nc.request`` pays, per request, for header
validation by regular expression, a random token from ``os.urandom``, a ``Msg`` object, a hop
through the reply subscription's queue and task, and ``asyncio.wait_for`` (a second future and
a timer). Measured on the embedded server, that is about a quarter of the Python CPU of a
fenced publish. :class:`Requests` keeps what matters and drops the rest:

- one wildcard reply subscription per connection (``<inbox prefix>.<nuid>.*``), each request
  a counter token under it;
- the command built in one piece (riverrun's header names and values are known to be valid:
  ids are validated, nothing carries a line break);
- the reply handed to its future from the connection's read loop itself, without a ``Msg``;
  nats-py's own ``_process_msg`` still parses the headers of a reply that has any (so the
  stored-status guard applies) and handles every other subscription as before;
- timeouts checked by one sweep every 0.1 s while requests wait, not a timer each;
- a request answered by several messages (a batch direct get: the messages, then a status
  line that ends them) collects them under its token, without a subscription of its own;

- the command appended to nats-py's pending buffer (so it keeps its order with everything
  else sent on the connection, and is buffered across a reconnect as nats-py does) and written
  by a callback at the end of the loop turn: every request of the turn in one write, without
  a turn of nats-py's flusher task.

It uses private parts of nats-py 2.x (``_process_msg``, the reader's entry point for a
message; ``_pending``, ``_transport`` and ``_flush_queue``, the writer's); ``supported`` checks
that they exist and the connection falls back to ``nc.request`` if they do not.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient

__all__ = ["Reply", "Requests", "is_status"]

#: a reply: its body and its headers (parsed; ``None`` without any)
Reply = tuple[bytes, "dict[str, str] | None"]


def is_status(headers: dict[str, str] | None) -> bool:
    """Whether a reply with these headers is a status message (end of batch, not found, no
    responders, an error), not a stored message: a stored message always has
    ``Nats-Sequence``, so a ``Status`` header on it is its own."""
    return headers is not None and "Status" in headers and "Nats-Sequence" not in headers

_NO_RESPONDERS = "503"
#: how often waiting requests are checked for their timeout (the precision of a timeout)
_SWEEP_SECONDS = 0.1
_PARTS = ("_process_msg", "_process_headers", "_pending", "_transport", "_flush_queue")


class Requests:
    """Requests on one connection through one reply subscription (see the module note)."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._waiting: dict[bytes, asyncio.Future[Reply]] = {}
        #: replies collected so far for the multi-message requests waiting (``request_many``)
        self._batches: dict[bytes, list[Reply]] = {}
        self._tokens = itertools.count(1)
        self._prefix = b""
        self._sid: int | None = None
        self._opening: asyncio.Future[None] | None = None
        self._flush_soon = False
        #: when each waiting request times out (loop time)
        self._deadlines: dict[bytes, float] = {}
        self._sweeping = False

    @staticmethod
    def supported(nc: NatsClient) -> bool:
        return all(hasattr(nc, part) for part in _PARTS)

    async def request(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float
    ) -> Reply:
        """Publish ``payload`` on ``subject`` and wait for the reply.

        Raises nats-py's own errors (``TimeoutError``, ``NoRespondersError``,
        ``ConnectionClosedError``), as ``nc.request`` does.
        """
        if self._sid is None:
            await self._open()
        token, future = self._send(subject, payload, headers, timeout)
        try:
            data, reply_headers = await future
        finally:
            self._forget(token)
        if not data and reply_headers and reply_headers.get("Status") == _NO_RESPONDERS:
            raise nats.errors.NoRespondersError
        return data, reply_headers

    async def request_many(
        self, subject: str, payload: bytes, timeout: float
    ) -> tuple[list[Reply], dict[str, str]]:
        """A request answered by several messages and then a status message that ends them
        (a batch direct get): the messages, and the headers of the one that ended them.

        A status message (``is_status``) ends the replies. ``timeout`` applies to the
        whole. Raises as ``request``.
        """
        if self._sid is None:
            await self._open()
        replies: list[Reply] = []
        token, future = self._send(subject, payload, None, timeout, replies)
        try:
            _, last = await future
        finally:
            self._forget(token)
        assert last is not None  # what ends a batch is a status message
        return replies, last

    def _send(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        replies: list[Reply] | None = None,
    ) -> tuple[bytes, asyncio.Future[Reply]]:
        """Queue the command (written at the end of the loop turn) and register its reply
        token (and ``replies``, where a multi-message request collects); the caller awaits the
        future and unregisters the token."""
        nc = self._nc
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        token = b"%d" % next(self._tokens)
        reply = self._prefix + token
        subject_bytes = subject.encode()
        if headers:
            head = b"NATS/1.0\r\n" + "".join(
                f"{key}: {value}\r\n" for key, value in headers.items()
            ).encode() + b"\r\n"
            size = len(head)
            command = b"".join((
                b"HPUB %s %s %d %d\r\n" % (subject_bytes, reply, size, size + len(payload)),
                head,
                payload,
                b"\r\n",
            ))
        else:
            command = b"".join((
                b"PUB %s %s %d\r\n" % (subject_bytes, reply, len(payload)),
                payload,
                b"\r\n",
            ))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self._waiting[token] = future
        self._deadlines[token] = loop.time() + timeout
        if replies is not None:
            self._batches[token] = replies
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(_SWEEP_SECONDS, self._sweep)
        nc.stats["out_msgs"] += 1
        nc.stats["out_bytes"] += len(payload)
        nc._pending.append(command)
        nc._pending_data_size += len(command)
        if not self._flush_soon:
            self._flush_soon = True
            loop.call_soon(self._flush)
        return token, future

    def _forget(self, token: bytes) -> None:
        """Unregister ``token``'s request, however its wait ended (a reply, a timeout, a
        cancellation). (Not a coroutine around the wait: that is a frame more per request.)"""
        self._waiting.pop(token, None)
        self._deadlines.pop(token, None)
        self._batches.pop(token, None)

    def _sweep(self) -> None:
        """Time out the requests whose deadline passed (a timer per request would cost a
        heap push and a cancel each); runs every ``_SWEEP_SECONDS`` while any is waiting."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired = [token for token, deadline in self._deadlines.items() if deadline <= now]
        for token in expired:
            del self._deadlines[token]
            future = self._waiting.pop(token, None)
            if future is not None and not future.done():
                future.set_exception(nats.errors.TimeoutError())
        if self._deadlines:
            loop.call_later(_SWEEP_SECONDS, self._sweep)
        else:
            self._sweeping = False

    def _flush(self) -> None:
        """Write what is pending at the end of this loop turn: every request made in the
        turn goes out in one write, without a turn of nats-py's flusher task."""
        self._flush_soon = False
        nc = self._nc
        if not nc._pending:
            return
        transport = nc._transport
        if transport is not None and nc.is_connected and not nc.is_connecting:
            try:
                transport.writelines(nc._pending)
            except Exception:  # nats-py's flusher reports it and reconnects
                pass
            else:
                nc._pending = []
                nc._pending_data_size = 0
                return
        # reconnecting (nats-py sends the buffer once connected) or a failed write
        if nc._flush_queue is not None and nc._flush_queue.empty():
            nc._flush_queue.put_nowait(asyncio.get_running_loop().create_future())

    async def _open(self) -> None:
        """Subscribe to the reply subjects and hook the reader (once; concurrent callers wait)."""
        if self._opening is not None:
            await asyncio.shield(self._opening)
            return
        self._opening = asyncio.get_running_loop().create_future()
        try:
            nc = self._nc
            prefix = bytes(nc._inbox_prefix) + b"." + bytes(nc._nuid.next()) + b"."
            sub = await nc.subscribe(prefix.decode() + "*", cb=_ignore)
            self._prefix = prefix
            self._hook(sub._id)
            self._sid = sub._id
        except BaseException as exc:
            self._opening.set_exception(exc)
            self._opening.exception()  # retrieved: later callers try again
            self._opening = None
            raise
        self._opening.set_result(None)

    def _hook(self, sid: int) -> None:
        nc = self._nc
        original: Callable[..., Awaitable[None]] = nc._process_msg
        waiting = self._waiting
        batches = self._batches
        start = len(self._prefix)

        async def process_msg(
            msg_sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any
        ) -> None:
            if msg_sid != sid:
                await original(msg_sid, subject, reply, data, headers)
                return
            token = bytes(subject[start:])
            parsed = await nc._process_headers(headers) if headers else None
            replies = batches.get(token)
            if replies is not None and not is_status(parsed):
                replies.append((bytes(data), parsed))  # one of several (request_many)
                return
            future = waiting.pop(token, None)
            if future is not None and not future.done():  # else timed out or given up
                future.set_result((bytes(data), parsed))

        nc._process_msg = process_msg  # type: ignore[method-assign,assignment]


async def _ignore(_msg: Any) -> None:
    """The reply subscription's callback: never called (the hook takes its messages)."""


