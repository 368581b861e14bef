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
