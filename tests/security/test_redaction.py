"""Secrets in NATS URLs (``nats://user:password@host``, ``nats://token@host``) never reach a
message, a ``repr`` or the command line's output; the host always does."""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable

import pytest

from riverrun import Runtime
from riverrun.cli._exit import CliError, unreachable_message
from riverrun.cli._settings import Settings
from riverrun.persistence import EmbeddedNatsServer, StoreUnavailable, redact_url
from tests.cli.conftest import WorkerProcess, base_env, run_riverrun

from .conftest import quoted

pytestmark = pytest.mark.anyio

PASSWORD = "pw-0f3a9c-secret"
TOKEN = "tok-77b1e2-secret"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def secret_urls(host: str) -> list[tuple[str, str]]:
    """(URL, its secret): a user/password URL and a token URL."""
    return [(f"nats://alice:{PASSWORD}@{host}", PASSWORD), (f"nats://{TOKEN}@{host}", TOKEN)]


URL_KINDS = ["user-password", "token"]


def test_redact_url_keeps_the_user_and_host_and_hides_the_secret() -> None:
    assert "nats://alice:***@h:4222" == redact_url(f"nats://alice:{PASSWORD}@h:4222")
    assert "nats://***@h:4222" == redact_url(f"nats://{TOKEN}@h:4222")
    assert "tls://bob:***@h" == redact_url("tls://bob:p@ss@h")  # an unescaped @ in a password
    assert "nats://a:***@h1:1, nats://***@h2:2" == redact_url("nats://a:x@h1:1, nats://t@h2:2")
    assert "nats://a:***@h1:1,nats://***@h2:2" == redact_url("nats://a:x@h1:1,nats://t@h2:2")
    assert "at nats://h:4222 (mail me@example.com)" == redact_url(
        "at nats://h:4222 (mail me@example.com)"
    )


@pytest.mark.parametrize("index", [0, 1], ids=URL_KINDS)
def test_runtime_repr_and_url_hide_the_secret(index: int) -> None:
    url, secret = secret_urls("nats-1.example:4222")[index]
    rt = Runtime.connect(url, namespace="ns")
    for shown in (repr(rt), str(rt.url)):
        assert secret not in shown
        assert "nats-1.example:4222" in shown


@pytest.mark.parametrize("index", [0, 1], ids=URL_KINDS)
async def test_an_unreachable_server_error_hides_the_secret(index: int) -> None:
    host = f"127.0.0.1:{closed_port()}"
    url, secret = secret_urls(host)[index]
    with pytest.raises(StoreUnavailable) as caught:
        async with Runtime.connect(url, namespace="ns", connect_timeout=1):
            pass
    assert host in str(caught.value)
    everything = "".join(traceback.format_exception(caught.value))
    assert secret not in everything


@pytest.mark.parametrize("index", [0, 1], ids=URL_KINDS)
async def test_errors_of_a_connected_runtime_hide_the_secret(
    index: int, secured_server: Callable[[str], EmbeddedNatsServer]
) -> None:
    config = (
        f"authorization {{ user: alice, password: {quoted(PASSWORD)} }}"
        if index == 0
        else f"authorization {{ token: {quoted(TOKEN)} }}"
    )
    server = secured_server(config)
    host = f"127.0.0.1:{server.port}"
    url, secret = secret_urls(host)[index]
    async with Runtime.connect(url, namespace="ns") as rt:
        assert secret not in repr(rt)
        server.kill()  # every call now fails with a message naming the server
        with pytest.raises(StoreUnavailable) as caught:
            await rt.client.list_runs()
    assert host in str(caught.value)
    assert secret not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize("index", [0, 1], ids=URL_KINDS)
def test_cli_messages_hide_the_secret(index: int) -> None:
    url, secret = secret_urls("nats-1.example:4222")[index]
    message = unreachable_message([url], StoreUnavailable(f"cannot connect to NATS at {url}"))
    assert secret not in message and "nats-1.example:4222" in message
    message = unreachable_message([url], "timed out")
    assert secret not in message and "nats-1.example:4222" in message
    error = CliError(f"something about {url}")
    assert secret not in error.format_message() and "nats-1.example:4222" in str(error)
    settings = Settings(servers=[url])
    assert secret not in repr(settings) and secret not in settings.where
    assert "nats-1.example:4222" in settings.where


@pytest.mark.parametrize("index", [0, 1], ids=URL_KINDS)
def test_cli_unreachable_server_output_hides_the_secret(index: int) -> None:
    host = f"127.0.0.1:{closed_port()}"
    url, secret = secret_urls(host)[index]
    result = run_riverrun("runs", "list", env=base_env(RIVERRUN_SERVERS=url), timeout=30)
    assert 4 == result.code, result.describe()
    assert host in result.stderr
    assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize("index", [0, 1], ids=URL_KINDS)
def test_worker_banner_hides_the_secret(
    index: int, secured_server: Callable[[str], EmbeddedNatsServer]
) -> None:
    config = (
        f"authorization {{ user: alice, password: {quoted(PASSWORD)} }}"
        if index == 0
        else f"authorization {{ token: {quoted(TOKEN)} }}"
    )
    server = secured_server(config)
    host = f"127.0.0.1:{server.port}"
    url, secret = secret_urls(host)[index]
    worker = WorkerProcess(
        "tests.security.workflows",
        base_env(RIVERRUN_SERVERS=url, RIVERRUN_NAMESPACE="banner"),
    )
    try:
        worker.wait_ready()
    finally:
        code = worker.stop()
    assert 0 == code, worker.output
    assert "hosting" in worker.output and host in worker.output
    assert secret not in worker.output
