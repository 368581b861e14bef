"""Fixtures shared by the persistence tests: the anyio backend, and a real S3 server (moto)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import attrs
import pytest

# The contract suites live in a helper module; let pytest rewrite its asserts too.
pytest.register_assert_rewrite("tests.persistence.contract")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@attrs.frozen(kw_only=True)
class S3Server:
    """An S3-compatible server for tests: where it listens and the credentials it accepts."""

    endpoint_url: str
    aws_access_key_id: str = "riverrun-test-key"
    aws_secret_access_key: str = "riverrun-test-secret"
    region_name: str = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto in server mode, as a real subprocess on a free loopback port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not _answers(url):
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"moto server exited with {process.returncode}: {stderr[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer on {url} within 30 s")
            time.sleep(0.05)
        yield S3Server(endpoint_url=url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
