"""Chain-end announcements on NATS: a core message (not stored) on ``rr.<ns>.end``.

The body is the workflow id. A worker publishes one when it has written a chain's final run
record; a process waiting on results subscribes once, on first need, and keeps the
subscription until the backend closes. Core NATS delivers at most once, and a user without
permission to subscribe is refused at ``listen``: waiters poll the store as a backstop
either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from .._errors import StorePermissionDenied
from ._jetstream_conn import JetStreamConnection, translate_errors
from ._jetstream_names import Names

__all__ = ["JetStreamChainEnds"]

_log = logging.getLogger("riverrun.persistence.jetstream")


class JetStreamChainEnds:
    """``ChainEnds`` on the namespace's ``rr.<ns>.end`` subject."""

    def __init__(self, conn: JetStreamConnection, names: Names) -> None:
        self._conn = conn
        self.subject = f"rr.{names.namespace}.end"
        self._listeners: list[Callable[[str], None]] = []
        self._subscribing: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<JetStreamChainEnds {self.subject} listeners={len(self._listeners)}>"

    async def announce(self, workflow_id: str) -> None:
        nc = self._conn.nc
        if not nc.is_connected:
            return  # nobody would hear it before the waiters' next poll anyway
        try:
            await nc.publish(self.subject, workflow_id.encode())
        except Exception as exc:  # best effort: a waiter's poll finds the end
            _log.debug("chain end of %s not announced: %r", workflow_id, exc)

    async def listen(self, on_end: Callable[[str], None]) -> None:
        self._listeners.append(on_end)
        if self._subscribing is None:
            self._subscribing = asyncio.get_running_loop().create_future()
            try:
                await self._subscribe()
            except BaseException as exc:
                self._subscribing.set_exception(exc)
                self._subscribing.exception()  # retrieved: a later listener tries again
                self._subscribing = None
                self._listeners.remove(on_end)
                raise
            self._subscribing.set_result(None)
        else:
            await asyncio.shield(self._subscribing)

    async def _subscribe(self) -> None:
        conn = self._conn
        nc = conn.nc
        conn.check_connected(f"listen on {self.subject}")
        before = conn.server_errors.violations
        sub = await nc.subscribe(self.subject, cb=self._heard)
        # The server has the interest (or has refused it) once a request sent after the SUB
        # is answered: nats-py's flush() will not do, its PING goes straight to the socket,
        # ahead of a SUB still in nats-py's buffer (its PONG then comes before the server has
        # seen the SUB). A refusal is an error line nats-py hands to the error callback as
        # it reads it, before that reply.
        with translate_errors(conn, f"listen on {self.subject}"):
            await conn.request("$JS.API.INFO", b"")
        denied = conn.server_errors.denied_since(before)
        if denied is not None and denied[1].lower() == self.subject.lower():
            await sub.unsubscribe()
            raise StorePermissionDenied(
                f"NATS at {conn.url} refused to let this user subscribe to {self.subject!r} "
                "(chain ends; give the user that permission, see docs/deployment.md, "
                "least-privilege users)"
            )

    async def _heard(self, msg: Any) -> None:
        try:
            workflow_id = bytes(msg.data).decode()
        except UnicodeDecodeError:
            return  # not ours: nothing waits on it
        for on_end in list(self._listeners):
            try:
                on_end(workflow_id)
            except Exception:
                _log.exception("a chain-end listener failed on workflow %s", workflow_id)
