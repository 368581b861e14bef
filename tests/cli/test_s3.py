"""RIVERRUN_S3_*: workers and the command line keep large payloads in S3 (moto here)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from riverrun.cli._runtime import S3Settings
from riverrun.persistence import EmbeddedNatsServer, open_s3_stores
from riverrun.testing._nats import unique_namespace

from .conftest import Cli, S3Endpoint, WorkerProcess


def test_s3_settings_from_env() -> None:
    assert S3Settings.from_env({}) is None
    assert S3Settings(bucket="b") == S3Settings.from_env({"RIVERRUN_S3_BUCKET": "b"})
    assert S3Settings(
        bucket="b", endpoint_url="http://minio:9000", region_name="eu-west-1", prefix="p/"
    ) == S3Settings.from_env(
        {
            "RIVERRUN_S3_BUCKET": "b",
            "RIVERRUN_S3_ENDPOINT_URL": "http://minio:9000",
            "AWS_REGION": "eu-west-1",
            "RIVERRUN_S3_PREFIX": "p/",
        }
    )


@pytest.fixture
def s3_cli(nats_server: EmbeddedNatsServer, s3_endpoint: S3Endpoint) -> Cli:
    return S3Cli(url=nats_server.url, namespace=unique_namespace("cli"), s3=s3_endpoint)


class S3Cli(Cli):
    def __init__(self, *, url: str, namespace: str, s3: S3Endpoint) -> None:
        super().__init__(url=url, namespace=namespace)
        self.s3 = s3

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "RIVERRUN_S3_BUCKET": "riverrun-cli",
            "RIVERRUN_S3_ENDPOINT_URL": self.s3.url,
            "AWS_ACCESS_KEY_ID": self.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3.secret_key,
        }


async def payload_objects(endpoint: S3Endpoint, namespace: str) -> int:
    async with open_s3_stores(
        "riverrun-cli",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
    ) as (payloads, _):
        objects = payloads._objects  # the bucket listing is not part of the store protocol
        listed = await objects.client.list_objects_v2(
            Bucket="riverrun-cli", Prefix=f"{namespace}/payloads/"
        )
        return int(listed.get("KeyCount", 0))


def test_a_large_argument_goes_to_s3_and_comes_back(s3_cli: S3Cli, tmp_path: Path) -> None:
    worker = WorkerProcess("tests.cli.workflows", s3_cli.env())
    try:
        worker.wait_ready()
        big = "x" * (300 * 1024)  # over the 256 KiB claim-check threshold
        args_file = tmp_path / "args.json"  # too large for a command-line argument
        args_file.write_text(json.dumps([big]))
        report = s3_cli("start", "greeter", f"@{args_file}", "--wait", "--json").json()
        assert f"hello {big}!" == report["result"]
        shown = s3_cli("runs", "show", report["workflow_id"], "--json").json()
        assert f"hello {big}!" == shown["result"]
    finally:
        assert 0 == worker.stop(), worker.output
    assert anyio.run(payload_objects, s3_cli.s3, s3_cli.namespace) >= 1
