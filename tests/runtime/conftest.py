"""Runtime fixtures: every runtime test runs on the memory backend and on real JetStream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from riverrun import Runtime

RuntimeFactory = Callable[..., AbstractAsyncContextManager[Runtime]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "jetstream"])
def make_runtime(request: pytest.FixtureRequest) -> RuntimeFactory:
    """``async with make_runtime(workflows=[...], **options) as rt`` on each backend."""
    if request.param == "memory":

        @asynccontextmanager
        async def memory(workflows: Iterable[Any] = (), **opts: Any) -> AsyncIterator[Runtime]:
            async with Runtime.in_memory(workflows=workflows, **opts) as rt:
                yield rt

        return memory

    server = request.getfixturevalue("nats_server")
    namespace = request.getfixturevalue("namespace")

    @asynccontextmanager
    async def jetstream(workflows: Iterable[Any] = (), **opts: Any) -> AsyncIterator[Runtime]:
        opts.setdefault("namespace", namespace)
        async with Runtime.connect(server.url, workflows=workflows, worker=True, **opts) as rt:
            yield rt

    return jetstream


@pytest.fixture
def namespace_key(request: pytest.FixtureRequest) -> str:
    """A string unique to this test (and backend parameter), for per-test counters."""
    return request.node.nodeid
