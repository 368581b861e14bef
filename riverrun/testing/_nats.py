"""Test helpers for a real nats-server: one embedded server per test session, and unique
namespaces so that tests sharing it never see each other's streams.

In a ``conftest.py``::

    from riverrun.testing import nats_server, unique_namespace

    @pytest.fixture(scope="session")
    def nats():
        with nats_server() as server:
            yield server

    async def test_something(nats):
        async with Runtime.connect(nats.url, namespace=unique_namespace()) as rt:
            ...

or, inside async code, ``async with nats_server() as server: ...``.
"""

from __future__ import annotations

import os
import uuid
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType

from ..persistence import EmbeddedNatsServer

__all__ = ["nats_server", "unique_namespace"]


def unique_namespace(prefix: str = "t") -> str:
    """A fresh namespace (``<prefix>-<12 hex>``) for one test."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class _NatsServerContext(
    AbstractContextManager[EmbeddedNatsServer], AbstractAsyncContextManager[EmbeddedNatsServer]
):
    """Both a sync and an async context manager around one ``EmbeddedNatsServer``."""

    def __init__(self, server: EmbeddedNatsServer) -> None:
        self.server = server

    def __repr__(self) -> str:
        return f"<nats_server {self.server!r}>"

    def __enter__(self) -> EmbeddedNatsServer:
        return self.server.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.stop()

    async def __aenter__(self) -> EmbeddedNatsServer:
        return await self.server.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.server.__aexit__(exc_type, exc, tb)


def nats_server(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    port: int | None = None,
    sync_interval: str | None = "always",
    binary: str | os.PathLike[str] | None = None,
) -> _NatsServerContext:
    """An embedded nats-server with JetStream for tests: ``with nats_server() as s:`` or
    ``async with nats_server() as s:``; ``s.url`` to connect, ``s.kill()`` /
    ``s.restart()`` for crash tests. See ``EmbeddedNatsServer`` for the arguments."""
    return _NatsServerContext(
        EmbeddedNatsServer(data_dir, port=port, sync_interval=sync_interval, binary=binary)
    )
