"""Opening the JetStream backend, and the faults it must survive or report clearly: a server
SIGKILLed and restarted between appends, an unreachable server, streams made by someone else
with settings riverrun cannot use; plus large payloads, the shared inbox consumer and timers
that fire across a server restart."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta

import anyio
import nats
import pytest
from nats.js.api import StreamConfig

from riverrun.persistence import (
    Backend,
    EmbeddedNatsServer,
    IncompatibleStoreConfig,
    NewEvent,
    RunKey,
    StoreUnavailable,
    open_jetstream_backend,
)
from riverrun.persistence._embedded import find_nats_server
from riverrun.persistence._jetstream_names import Names

pytestmark = pytest.mark.anyio

WAIT = 20.0


def ev(**data: object) -> NewEvent:
    return NewEvent(type="test.happened", timestamp=datetime.now(UTC), data=data)


@pytest.fixture
async def backend(nats_server: EmbeddedNatsServer, namespace: str) -> AsyncIterator[Backend]:
    async with open_jetstream_backend(nats_server.url, namespace=namespace) as backend:
        yield backend


async def test_sigkill_and_restart_between_appends_loses_nothing_acknowledged(
    nats_server_factory: Callable[..., EmbeddedNatsServer], namespace: str
) -> None:
    server = nats_server_factory()
    key = RunKey(workflow_id="wf-crash", run_id="r1")
    async with open_jetstream_backend(
        server.url, namespace=namespace, request_timeout=1.0
    ) as backend:
        for i in range(5):
            await backend.events.append(key, ev(i=i), expected_last=i, idempotency_id=f"e{i}")

        server.kill()
        errors: list[StoreUnavailable] = []
        for _ in range(3):  # every call during the outage fails, clearly and retryably
            with pytest.raises(StoreUnavailable) as info:
                await backend.events.append(key, ev(i=5), expected_last=5, idempotency_id="e5")
            errors.append(info.value)
        assert all(isinstance(e, ConnectionError) for e in errors)
        assert all(server.url.removeprefix("nats://") in str(e) for e in errors)
        assert "retry" in str(errors[-1])

        server.restart()
        # The client reconnects by itself; retry the same append until it goes through.
        with anyio.fail_after(WAIT):
            while True:
                try:
                    seq = await backend.events.append(
                        key, ev(i=5), expected_last=5, idempotency_id="e5"
                    )
                    break
                except StoreUnavailable:
                    await anyio.sleep(0.05)

        assert 6 == seq
        assert 7 == await backend.events.append(key, ev(i=6), expected_last=6, idempotency_id="e6")
        assert list(range(7)) == [e.data["i"] for e in await backend.events.read(key)]


async def test_unreachable_server_is_store_unavailable_naming_the_url() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"nats://127.0.0.1:{port}"

    with anyio.fail_after(WAIT), pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
        async with open_jetstream_backend(url, connect_timeout=1.0):
            pass  # pragma: no cover


@pytest.mark.parametrize(
    ("settings", "difference"),
    [
        ({"allow_atomic": False}, "allow_atomic"),
        ({"subjects": "plus another"}, "subjects"),
        ({"allow_rollup_hdrs": False}, "allow_rollup_hdrs"),
    ],
    ids=["no-atomic", "subjects", "no-rollup"],
)
async def test_incompatible_existing_events_stream_is_refused(
    nats_server: EmbeddedNatsServer, namespace: str, settings: dict[str, object], difference: str
) -> None:
    names = Names(namespace)
    config: dict[str, object] = {
        "name": names.events_stream,
        "subjects": [names.events_filter],
        "allow_atomic": True,
        "allow_rollup_hdrs": True,
        "allow_direct": True,
    }
    config.update(settings)
    if settings.get("subjects"):
        config["subjects"] = [names.events_filter, f"other-{namespace}.>"]
    nc = await nats.connect(nats_server.url)
    try:
        await nc.jetstream().add_stream(StreamConfig(**config))  # type: ignore[arg-type]
    finally:
        await nc.close()

    with pytest.raises(IncompatibleStoreConfig, match=difference) as info:
        async with open_jetstream_backend(nats_server.url, namespace=namespace):
            pass  # pragma: no cover
    assert names.events_stream in str(info.value)
    assert "nats stream" in str(info.value)  # says what to do


async def test_reopening_a_namespace_reuses_its_streams(
    nats_server: EmbeddedNatsServer, namespace: str
) -> None:
    key = RunKey(workflow_id="wf", run_id="r")
    async with open_jetstream_backend(nats_server.url, namespace=namespace) as first:
        await first.events.append(key, ev(), expected_last=0, idempotency_id="1")
    async with open_jetstream_backend(nats_server.url, namespace=namespace) as again:
        assert 1 == await again.events.last_sequence(key)


async def test_bad_arguments_are_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="namespace"):
        async with open_jetstream_backend("nats://127.0.0.1:1", namespace="a.b"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="replicas"):
        async with open_jetstream_backend("nats://127.0.0.1:1", replicas=2):
            pass  # pragma: no cover


@pytest.mark.slow
@pytest.mark.parametrize("size", [3 * 1024 * 1024, 50 * 1024 * 1024], ids=["3MB", "50MB"])
async def test_large_payloads_round_trip_exactly(backend: Backend, size: int) -> None:
    block = bytes(range(256)) * 4096
    data = (block * (size // len(block) + 1))[:size]
    data = uuid.uuid4().bytes + data[16:]

    ref = await backend.payloads.put(data)

    assert data == await backend.payloads.get(ref)
    assert ref == await backend.payloads.put(data)


async def test_watch_is_one_consumer_for_every_workflow(
    backend: Backend, nats_server: EmbeddedNatsServer
) -> None:
    names = Names(backend.name.removeprefix("jetstream:"))
    workflows = [f"wf-{i}" for i in range(20)]
    nc = await nats.connect(nats_server.url)
    try:
        async with backend.inbox.watch() as messages:
            for wf in workflows:
                await backend.inbox.send(wf, "signal", {"wf": wf})
            seen: set[str] = set()
            with anyio.fail_after(WAIT):
                async for message in messages:
                    seen.add(message.workflow_id)
                    if seen == set(workflows):
                        break
            info = await nc.jetstream().stream_info(names.inbox_stream)
            assert 1 == info.state.consumer_count
    finally:
        await nc.close()


async def test_a_timer_due_while_the_server_was_down_fires_on_restart(
    nats_server_factory: Callable[..., EmbeddedNatsServer], namespace: str
) -> None:
    server = nats_server_factory()
    async with open_jetstream_backend(server.url, namespace=namespace) as backend:
        at = datetime.now(UTC) + timedelta(seconds=0.3)
        await backend.inbox.schedule("wf", "t1", at, "timer.fired", {"timer_id": "t1"})
        server.kill()
        with anyio.fail_after(WAIT):
            await backend.clock.sleep_until(at)  # the timer falls due while the server is down
        server.restart()

        with anyio.fail_after(WAIT):
            while True:
                try:
                    fired = await backend.inbox.read("wf")
                except StoreUnavailable:
                    fired = []
                if fired:
                    break
                await anyio.sleep(0.05)

        assert [("timer.fired", {"timer_id": "t1"}, at)] == [
            (m.kind, dict(m.data), m.timestamp) for m in fired
        ]


@pytest.fixture
def server_without_jetstream() -> Iterator[str]:
    """A plain nats-server (no ``-js``); yields its URL once it accepts connections."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [str(find_nats_server()), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


async def test_a_server_without_jetstream_is_reported_as_such(
    server_without_jetstream: str,
) -> None:
    with pytest.raises(StoreUnavailable, match="JetStream enabled"):
        async with open_jetstream_backend(server_without_jetstream, namespace="x"):
            pass  # pragma: no cover
