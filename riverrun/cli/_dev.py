"""``riverrun dev``: a persistent nats-server with JetStream for local development.

The same embedded server as ``Runtime.embedded`` (it syncs every write by default), but on a
fixed port and a data directory that survives restarts, so workers, ``riverrun start`` and
``riverrun runs ...`` in other terminals can all use it. Runs until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import errno
import signal
import socket
from pathlib import Path

import anyio
import click

from ._exit import ExitCode, fail, run_command

__all__ = ["DEFAULT_DEV_DATA_DIR", "dev"]

DEFAULT_DEV_DATA_DIR = Path(".riverrun") / "nats"


def check_port_free(host: str, port: int) -> None:
    """Fail with a one-line error (exit 1) if ``host:port`` is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as nats-server does: a port held only by TIME_WAIT connections is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(
                    f"port {port} on {host} is already in use (another nats-server, or "
                    f"'riverrun dev' already running?); pick another with --port",
                    exit_code=ExitCode.FAILED,
                )
            fail(f"cannot listen on {host}:{port}: {exc.strerror}", exit_code=ExitCode.FAILED)


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DEV_DATA_DIR,
    show_default=True,
    help="Where JetStream keeps its files; kept across restarts.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=4222,
    show_default=True,
    help="Client port (0: any free port).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--sync-interval",
    default="always",
    show_default=True,
    metavar="always|DURATION|default",
    help="JetStream fsync interval: 'always' (every write survives a host crash), a duration "
    "such as 10s, or 'default' (the server's 2 minutes).",
)
def dev(data_dir: Path, port: int, host: str, sync_interval: str) -> None:
    """Run a local nats-server with JetStream until Ctrl-C (data kept in --data-dir)."""
    from riverrun.persistence import EmbeddedNatsServer

    if port:
        check_port_free(host, port)
    server = EmbeddedNatsServer(
        data_dir,
        port=port or None,
        host=host,
        sync_interval=None if sync_interval == "default" else sync_interval,
    )

    async def go() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with server:
                click.echo(f"riverrun dev: nats-server {_version(server)} with JetStream")
                click.echo(f"  url:      {server.url}")
                click.echo(f"  data dir: {server.data_dir.resolve()}")
                click.echo(f"  sync:     {sync_interval}")
                click.echo("Use it from other terminals with:")
                click.echo(f"  export RIVERRUN_SERVERS={server.url}")
                click.echo("Press Ctrl-C to stop.", nl=True)
                async for _ in signals:
                    break
                click.echo("riverrun dev: stopping nats-server...")
        click.echo("riverrun dev: stopped.")

    run_command(go)


def _version(server: object) -> str:
    version = getattr(server, "version", None)
    return ".".join(map(str, version)) if isinstance(version, tuple) else "?"
