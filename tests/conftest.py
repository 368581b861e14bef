"""Fixtures for the whole test suite: the anyio backend, one nats-server per session, and
fresh namespaces so that tests sharing that server never see each other's streams."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from riverrun.persistence import EmbeddedNatsServer
from riverrun.testing._nats import unique_namespace


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNatsServer]:
    """One embedded nats-server (JetStream, fsync on every write) for the whole session.

    Tests isolate themselves with the ``namespace`` fixture; a test that kills or restarts a
    server uses ``nats_server_factory`` instead, never this one.
    """
    server = EmbeddedNatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    """A fresh namespace (``t-<12 hex>``): its own streams and buckets on the shared server."""
    return unique_namespace()


@pytest.fixture
def nats_server_factory(tmp_path: Path) -> Iterator[Callable[..., EmbeddedNatsServer]]:
    """Start private servers (``factory(**EmbeddedNatsServer kwargs)``), stopped after the
    test. Each gets its own data directory under ``tmp_path`` unless one is given."""
    started: list[EmbeddedNatsServer] = []

    def factory(**kwargs: object) -> EmbeddedNatsServer:
        kwargs.setdefault("data_dir", tmp_path / f"nats-{len(started)}")
        server = EmbeddedNatsServer(**kwargs)  # type: ignore[arg-type]
        started.append(server)
        server.start()
        return server

    try:
        yield factory
    finally:
        for server in reversed(started):
            server.stop()
