"""The least-privilege template of docs/deployment.md, on a real nats-server: a worker user
and a client user of namespace ``orders`` run workflows; the client cannot purge, neither
can read namespace ``other``; and a refused subject is ``StorePermissionDenied`` naming it,
not a timeout to retry for ever."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import nats
import nats.errors
import pytest

from riverrun import Runtime
from riverrun.persistence import (
    EmbeddedNatsServer,
    NatsSecurity,
    RunKey,
    StorePermissionDenied,
    StoreUnavailable,
    open_jetstream_backend,
)

from .conftest import quoted
from .workflows import approval, big_result, doubler, everything

pytestmark = pytest.mark.anyio

DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
HANG = 60
#: short, so that a refused request (which nats-server answers with silence) fails soon
REQUEST_TIMEOUT = 1.0
USERS = {"admin": "admin-pw", "worker": "worker-pw", "client": "client-pw"}
#: the reply-subject prefix each user is allowed (the admin keeps nats-py's default)
INBOX = {"admin": None, "worker": "_INBOX_ORDERS_WORKER", "client": "_INBOX_ORDERS_CLIENT"}


def template() -> str:
    """The code block after the marker comment in docs/deployment.md."""
    text = DEPLOYMENT.read_text()
    match = re.search(r"<!-- least-privilege template.*?-->\s*```\n(.*?)```", text, re.S)
    assert match is not None, "the least-privilege template is missing from deployment.md"
    return match.group(1)


def server_config() -> str:
    return template() + (
        "authorization {\n  users = [\n"
        f"    {{ user: admin, password: {quoted(USERS['admin'])} }}\n"
        f"    {{ user: worker, password: {quoted(USERS['worker'])}, "
        "permissions: $RIVERRUN_ORDERS_WORKER }\n"
        f"    {{ user: client, password: {quoted(USERS['client'])}, "
        "permissions: $RIVERRUN_ORDERS_CLIENT }\n"
        "  ]\n}\n"
    )


@pytest.fixture
def server(secured_server: Callable[[str], EmbeddedNatsServer]) -> EmbeddedNatsServer:
    return secured_server(server_config())


def url(server: EmbeddedNatsServer, user: str) -> str:
    return server.url.replace("nats://", f"nats://{user}:{USERS[user]}@")


def connect(server: EmbeddedNatsServer, user: str, **options: Any) -> Runtime:
    return Runtime.connect(url(server, user), inbox_prefix=INBOX[user], **options)


def backend(server: EmbeddedNatsServer, user: str, namespace: str) -> Any:
    return open_jetstream_backend(
        url(server, user),
        namespace=namespace,
        request_timeout=REQUEST_TIMEOUT,
        security=NatsSecurity.build(inbox_prefix=INBOX[user]),
    )


async def make_other_namespace(server: EmbeddedNatsServer) -> None:
    """Namespace ``other``, with one completed run, made by the admin."""
    async with connect(server, "admin", namespace="other", workflows=[doubler]) as rt:
        assert 2 == await (await rt.client.start(doubler, 1, workflow_id="o-1")).result()


async def test_the_worker_and_client_users_run_workflows(server: EmbeddedNatsServer) -> None:
    await make_other_namespace(server)
    with anyio.fail_after(HANG):
        async with (
            connect(
                server, "worker", namespace="orders", workflows=[approval, doubler, everything, big_result]
            ),
            connect(server, "client", namespace="orders") as client_rt,
        ):
            client = client_rt.client
            handle = await client.start(approval, 1, workflow_id="a-1")
            await handle.signal("decide", "approved")
            assert "1: approved" == await handle.result()
            # a claim-checked argument, a timer, a child, continue-as-new (truncation)
            big = await client.start(everything, b"x" * 400_000, 2)
            assert 400_000 == await big.result()
            # a claim-checked result, read from the payload store by the client
            assert 300_000 == len(await (await client.start(big_result, 300_000)).result())
            assert {"a-1"} <= {run.workflow_id for run in await client.list_runs()}


async def test_a_client_user_that_may_not_hear_chain_ends_polls_for_results(
    secured_server: Callable[[str], EmbeddedNatsServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="riverrun.client")  # whatever the root's level
    allowed = '"_INBOX_ORDERS_CLIENT.>", "rr.orders.end"'
    assert allowed in server_config()
    server = secured_server(server_config().replace(allowed, '"_INBOX_ORDERS_CLIENT.>"'))
    with anyio.fail_after(HANG):
        async with (
            connect(server, "worker", namespace="orders", workflows=[doubler]),
            connect(server, "client", namespace="orders") as client_rt,
        ):
            handle = await client_rt.client.start(doubler, 5, workflow_id="d-polled")
            assert 10 == await handle.result()
    warnings = [r.getMessage() for r in caplog.records if r.name == "riverrun.client"]
    assert any(
        "not listening for chain ends" in m and "'rr.orders.end'" in m for m in warnings
    ), warnings


async def test_the_client_user_cannot_purge(server: EmbeddedNatsServer) -> None:
    async with connect(server, "worker", namespace="orders", workflows=[doubler]) as rt:
        handle = await rt.client.start(doubler, 4, workflow_id="d-1")
        assert 8 == await handle.result()
        run_id = handle.first_run_id
    async with backend(server, "client", "orders") as client:
        key = RunKey(workflow_id="d-1", run_id=run_id)
        with pytest.raises(StorePermissionDenied) as caught:
            await client.events.delete(key)  # a purge of the run's subject
        assert "$js.api.stream.purge.riverrun_orders_events" == caught.value.subject
        assert "permissions violation" in str(caught.value)
        assert 1 <= len(await client.events.read(key))  # still there, and readable


@pytest.mark.parametrize("user", ["client", "worker"])
async def test_no_user_can_open_another_namespace(server: EmbeddedNatsServer, user: str) -> None:
    await make_other_namespace(server)
    with anyio.fail_after(HANG), pytest.raises(StorePermissionDenied) as caught:
        async with backend(server, user, "other"):
            pass
    assert caught.value.subject is not None and "riverrun_other_events" in caught.value.subject
    assert not isinstance(caught.value, StoreUnavailable)  # not an outage to wait out


@pytest.mark.parametrize("user", ["client", "worker"])
async def test_no_user_can_read_another_namespaces_streams(
    server: EmbeddedNatsServer, user: str
) -> None:
    await make_other_namespace(server)
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    nc = await nats.connect(
        url(server, user),
        error_cb=on_error,
        max_reconnect_attempts=1,
        connect_timeout=5,
        inbox_prefix=INBOX[user] or "_INBOX",
    )
    try:
        for subject, body in [
            ("$JS.API.DIRECT.GET.RIVERRUN_OTHER_EVENTS.rr.other.ev.>", b""),
            ("$JS.API.STREAM.MSG.GET.RIVERRUN_OTHER_EVENTS", b'{"seq": 1}'),
            ("$JS.API.DIRECT.GET.KV_RIVERRUN_OTHER_RUNS", b'{"seq": 1}'),
            ("$JS.API.CONSUMER.CREATE.RIVERRUN_OTHER_EVENTS", b"{}"),
            ("$JS.API.STREAM.PURGE.RIVERRUN_OTHER_EVENTS", b"{}"),
        ]:
            with pytest.raises(nats.errors.TimeoutError):
                await nc.request(subject, body, timeout=REQUEST_TIMEOUT)
            assert f'permissions violation for publish to "{subject.lower()}"' in refused[-1]
    finally:
        await nc.close()
    # and nothing of it was touched: the admin still reads the run
    async with connect(server, "admin", namespace="other") as rt:
        assert 2 == await rt.client.get_handle("o-1").result()


@pytest.mark.parametrize("user", ["client", "worker"])
async def test_no_user_can_listen_to_replies_meant_for_others(
    server: EmbeddedNatsServer, user: str
) -> None:
    refused: list[str] = []
    heard = anyio.Event()

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))
        heard.set()

    nc = await nats.connect(
        url(server, user), error_cb=on_error, max_reconnect_attempts=1, connect_timeout=5,
        inbox_prefix=INBOX[user] or "_INBOX",
    )  # fmt: skip
    try:
        others = [p for u, p in INBOX.items() if u != user and p] + ["_INBOX"]
        for prefix in others:
            heard = anyio.Event()
            await nc.subscribe(f"{prefix}.>")
            with anyio.fail_after(HANG):
                await heard.wait()  # the server answers a refused SUB with -ERR
            assert f'permissions violation for subscription to "{prefix.lower()}.>"' in (
                refused[-1]
            )
    finally:
        await nc.close()


async def test_a_start_by_a_user_without_the_permission_is_denied_not_retried(
    secured_server: Callable[[str], EmbeddedNatsServer],
) -> None:
    # the client template without the payload store: a claim-checked argument is refused
    config = server_config().replace('    "$O.RIVERRUN_ORDERS_PAYLOADS.>"\n', "", 2)
    limited = config.replace(
        "RIVERRUN_ORDERS_CLIENT = {", "RIVERRUN_ORDERS_LIMITED = {"
    ).replace("$RIVERRUN_ORDERS_CLIENT", "$RIVERRUN_ORDERS_LIMITED")
    assert "$O.RIVERRUN_ORDERS_PAYLOADS" not in limited.split("RIVERRUN_ORDERS_LIMITED = {")[1]
    server = secured_server(limited)
    async with connect(server, "worker", namespace="orders"):
        pass  # creates the namespace
    async with connect(server, "client", namespace="orders") as rt:
        small = await rt.client.start(approval, 1)  # needs no payload store
        assert small.first_run_id
        with anyio.fail_after(HANG), pytest.raises(StorePermissionDenied) as caught:
            await rt.client.start(everything, b"x" * 400_000, 0)
    assert caught.value.subject is not None
    assert caught.value.subject.startswith("$o.riverrun_orders_payloads.")
    assert "give the user that permission" in str(caught.value)
