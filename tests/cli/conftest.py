"""The CLI tests run the real ``riverrun`` command in subprocesses against the session's
nats-server (``nats_server`` from tests/conftest.py), with a worker subprocess hosting
tests/cli/workflows.py in a namespace of its own."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from riverrun.persistence import EmbeddedNatsServer
from riverrun.testing._nats import unique_namespace

ROOT = Path(__file__).resolve().parent.parent.parent
#: generous: these bound a hang, they are not timing assertions
COMMAND_TIMEOUT = 60.0


@attrs.frozen
class Result:
    """What one ``riverrun`` invocation did."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == 0, self.describe()
        return json.loads(self.stdout)

    def describe(self) -> str:
        return f"riverrun {' '.join(self.args)} -> {self.code}\n{self.stdout}\n{self.stderr}"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERRUN_")}
    env.update(extra)
    return env


def run_riverrun(
    *args: str, env: dict[str, str], timeout: float = COMMAND_TIMEOUT, cwd: Path = ROOT
) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "riverrun", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )
    return Result(args=args, code=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


@attrs.define
class Cli:
    """Runs ``riverrun`` against one server and namespace (through the environment)."""

    url: str
    namespace: str

    def env(self) -> dict[str, str]:
        return base_env(RIVERRUN_SERVERS=self.url, RIVERRUN_NAMESPACE=self.namespace)

    def __call__(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Result:
        return run_riverrun(*args, env=self.env(), timeout=timeout)


class WorkerProcess:
    """``riverrun worker ...`` in a subprocess; ``stderr`` is collected by a thread."""

    def __init__(self, target: str, env: dict[str, str], *extra: str, cwd: Path = ROOT) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riverrun", "worker", target, *extra],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "hosting" in line:
                self._ready.set()
        self._ready.set()  # ended: wait_ready reports the failure

    def wait_ready(self) -> None:
        assert self._ready.wait(COMMAND_TIMEOUT), "the worker did not start in time"
        assert self.proc.poll() is None, "".join(self.lines)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(COMMAND_TIMEOUT)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def cli(nats_server: EmbeddedNatsServer) -> Iterator[Cli]:
    """A namespace of this test module's own, served by one worker for the module."""
    runner = Cli(url=nats_server.url, namespace=unique_namespace("cli"))
    worker = WorkerProcess("tests.cli.workflows", runner.env())
    try:
        worker.wait_ready()
        yield runner
    finally:
        code = worker.stop()
        assert code == 0, worker.output


@attrs.frozen
class S3Endpoint:
    url: str
    access_key: str = "riverrun-cli-key"
    secret_key: str = "riverrun-cli-secret"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """moto in server mode, a real S3-compatible server in a subprocess."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(url, process)
        yield S3Endpoint(url=url)
    finally:
        process.terminate()
        try:
            process.wait(COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_http(url: str, process: subprocess.Popen[bytes]) -> None:
    # readiness of a server we just started: poll until it answers (bounded, not a timing test)
    for _ in range(600):
        if process.poll() is not None:
            pytest.fail(f"moto server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"moto server did not answer on {url}")
