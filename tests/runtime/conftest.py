"""Runtime fixtures: every runtime test runs on the memory backend and on real JetStream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from riverrun import Runtime, RuntimeOptions
from riverrun.persistence import Backend, RunKey, StoredEvent, open_memory_backend

RuntimeFactory = Callable[..., AbstractAsyncContextManager[Runtime]]


def fail_history_reads(
    monkeypatch: pytest.MonkeyPatch,
    rt: Runtime,
    fault: Callable[[int, RunKey], BaseException | None],
) -> None:
    """Make the runtime's history reads raise ``fault(n, key)`` for the n-th read (1, 2, ...)
    until it returns ``None``, then read as usual.

    Chains are hosted from the log, as after a restart: a chain started in this process is
    otherwise handed to its worker with its first event, and its first hosting reads nothing.
    """
    events = rt.backend.events
    original = events.stream
    reads = {"n": 0}

    def stream(key: RunKey, *, after: int = 0) -> AsyncIterator[StoredEvent]:
        reads["n"] += 1
        error = fault(reads["n"], key)
        if error is not None:
            raise error
        return original(key, after=after)

    monkeypatch.setattr(events, "stream", stream)
    monkeypatch.setattr(rt._services, "on_started", None)


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


@pytest.fixture(params=["memory", "jetstream"])
async def shared_runtime(request: pytest.FixtureRequest) -> AsyncIterator[RuntimeFactory]:
    """``shared_runtime(workflows=..., **options)``: runtimes that share one namespace."""
    if request.param == "memory":
        async with open_memory_backend() as shared:

            @asynccontextmanager
            async def same_backend(_codec: Any) -> AsyncIterator[Backend]:
                yield shared

            @asynccontextmanager
            async def memory(workflows: Any = (), **opts: Any) -> AsyncIterator[Runtime]:
                async with Runtime(
                    same_backend, workflows=workflows, options=RuntimeOptions(**opts)
                ) as rt:
                    yield rt

            yield memory
        return
    server = request.getfixturevalue("nats_server")
    namespace = request.getfixturevalue("namespace")

    @asynccontextmanager
    async def jetstream(workflows: Any = (), **opts: Any) -> AsyncIterator[Runtime]:
        async with Runtime.connect(
            server.url, workflows=workflows, worker=True, namespace=namespace, **opts
        ) as rt:
            yield rt

    yield jetstream
