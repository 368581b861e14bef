"""The connection's lean request path (``Requests``), against a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from riverrun.persistence import EmbeddedNatsServer
from riverrun.persistence._jetstream_conn import JetStreamConnection
from riverrun.persistence._jetstream_guard import guard_status_headers
from riverrun.persistence._jetstream_requests import Requests

pytestmark = pytest.mark.anyio


@pytest.fixture
async def nc(nats_server: EmbeddedNatsServer) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_server.url)
    guard_status_headers(client)
    try:
        yield client
    finally:
        await client.close()


async def responder(
    nc: NatsClient, subject: str, answer: Callable[[Msg], Any]
) -> Any:
    async def reply(msg: Msg) -> None:
        body, headers = answer(msg)
        await nc.publish(msg.reply, body, headers=headers)

    return await nc.subscribe(subject, cb=reply)


async def test_concurrent_requests_each_get_their_own_reply(nc: NatsClient) -> None:
    await responder(nc, "echo", lambda msg: (msg.data[::-1], None))
    await nc.flush()
    requests = Requests(nc)
    got: dict[int, bytes] = {}

    async def one(i: int) -> None:
        body, headers = await requests.request("echo", f"{i:04d}".encode(), None, 5.0)
        assert headers is None
        got[i] = body

    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(one, i)
    assert {i: f"{i:04d}".encode()[::-1] for i in range(300)} == got
    assert not requests._waiting  # nothing left behind


async def test_headers_go_out_and_come_back_parsed_with_the_stored_status_guard(
    nc: NatsClient,
) -> None:
    seen: list[dict[str, str] | None] = []

    def answer(msg: Msg) -> Any:
        seen.append(msg.headers)
        # a reply that carries a "Status" header of its own, as a stored message may
        return b"", {"Status": "100", "Nats-Sequence": "7"}

    await responder(nc, "headed", answer)
    await nc.flush()
    body, headers = await Requests(nc).request(
        "headed", b"x", {"Nats-Msg-Id": "a:1", "Nats-Expected-Last-Subject-Sequence": "0"}, 5.0
    )
    assert [{"Nats-Msg-Id": "a:1", "Nats-Expected-Last-Subject-Sequence": "0"}] == seen
    assert b"" == body
    assert headers is not None
    assert "7" == headers["Nats-Sequence"]
    assert "Status" not in headers and "100" == headers["Rr-Stored-Status"]


async def test_no_responders_and_timeouts_raise_as_nats_py_does(nc: NatsClient) -> None:
    requests = Requests(nc)
    with pytest.raises(nats.errors.NoRespondersError):
        await requests.request("nobody.listens", b"", None, 5.0)
    await nc.subscribe("silent")  # hears the request, never answers
    await nc.flush()
    with anyio.fail_after(5):
        with pytest.raises(nats.errors.TimeoutError):
            await requests.request("silent", b"", None, 0.2)
    assert not requests._waiting


async def test_a_cancelled_request_leaves_nothing_behind_and_the_next_one_works(
    nc: NatsClient,
) -> None:
    await nc.subscribe("silent")
    await responder(nc, "echo", lambda msg: (msg.data, None))
    await nc.flush()
    requests = Requests(nc)
    with anyio.move_on_after(0.1):
        await requests.request("silent", b"", None, 5.0)
    assert not requests._waiting
    assert (b"ok", None) == await requests.request("echo", b"ok", None, 5.0)


async def test_other_subscriptions_still_get_their_messages(nc: NatsClient) -> None:
    requests = Requests(nc)
    await responder(nc, "echo", lambda msg: (msg.data, None))
    await requests.request("echo", b"", None, 5.0)  # the reader is hooked now
    sub = await nc.subscribe("plain")
    await nc.publish("plain", b"hello", headers={"K": "v"})
    msg = await sub.next_msg(timeout=5)
    assert (b"hello", {"K": "v"}) == (msg.data, msg.headers)
    # and nats-py's own request path
    assert b"x" == (await nc.request("echo", b"x", timeout=5)).data


async def test_a_stream_publish_through_the_connection_fails_fast_without_a_stream(
    nc: NatsClient,
) -> None:
    conn = JetStreamConnection(nc, url="nats://test", request_timeout=5.0)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await conn.publish("no.stream.here", b"", None)


async def test_concurrent_batch_reads_each_collect_their_own_messages(nc: NatsClient) -> None:
    # the messages of a batch direct get and the status line that ends them ("NATS/1.0 204
    # EOB", which a client cannot publish) come from a real stream
    js = nc.jetstream()
    await js.add_stream(name="MANY", subjects=["many.>"], allow_direct=True)
    for i in range(60):
        await js.publish(f"many.{i % 3}", f"{i}".encode())
    conn = JetStreamConnection(nc, url="nats://test", request_timeout=5.0)
    requests = conn._requests
    assert requests is not None
    got: dict[tuple[int, int], tuple[list[bytes], int]] = {}

    async def one(subject: int, batch: int) -> None:
        msgs, pending = await conn.direct_batch("MANY", f"many.{subject}", start_seq=1, batch=batch)
        got[(subject, batch)] = ([m.data for m in msgs], pending)

    async with anyio.create_task_group() as tg:
        for subject in range(3):
            for batch in range(1, 25):
                tg.start_soon(one, subject, batch)
    for (subject, batch), (bodies, pending) in got.items():
        on_subject = [f"{i}".encode() for i in range(subject, 60, 3)]  # 20 each
        assert on_subject[:batch] == bodies
        assert max(20 - batch, 0) == pending
    assert 3 * 24 == len(got)
    assert not requests._waiting and not requests._batches
    # a single-reply request on the same path is unaffected
    await responder(nc, "echo", lambda msg: (msg.data, None))
    await nc.flush()
    assert (b"ok", None) == await requests.request("echo", b"ok", None, 5.0)


async def test_a_request_for_several_messages_times_out_and_leaves_nothing_behind(
    nc: NatsClient,
) -> None:
    async def answer(msg: Msg) -> None:  # two messages, never the status that ends them
        for i in range(2):
            await nc.publish(msg.reply, b"m", headers={"Nats-Sequence": str(i + 1)})

    await nc.subscribe("unended", cb=answer)
    await nc.flush()
    requests = Requests(nc)
    with anyio.fail_after(5), pytest.raises(nats.errors.TimeoutError):
        await requests.request_many("unended", b"", 0.2)
    assert not requests._waiting and not requests._batches and not requests._deadlines


async def test_a_batch_direct_get_reads_a_stream_on_the_lean_path(nc: NatsClient) -> None:
    js = nc.jetstream()
    await js.add_stream(name="BATCH", subjects=["batch.>"], allow_direct=True)
    for i in range(25):
        await js.publish("batch.a", f"a{i}".encode())
        await js.publish("batch.b", f"b{i}".encode())
    conn = JetStreamConnection(nc, url="nats://test", request_timeout=5.0)
    assert conn._requests is not None
    msgs, pending = await conn.direct_batch("BATCH", "batch.a", start_seq=1, batch=10)
    assert [f"a{i}".encode() for i in range(10)] == [m.data for m in msgs]
    assert {"batch.a"} == {m.subject for m in msgs}  # the stored subject, not the reply's
    assert 15 == pending
    last_seq = int((msgs[-1].headers or {})["Nats-Sequence"])
    rest, pending = await conn.direct_batch("BATCH", "batch.a", start_seq=last_seq + 1, batch=100)
    assert [f"a{i}".encode() for i in range(10, 25)] == [m.data for m in rest]
    assert 0 == pending
    none, pending = await conn.direct_batch("BATCH", "batch.c", start_seq=1, batch=10)
    assert ([], 0) == (none, pending)
    assert not conn._requests._batches
