
"""The S3 stores against a real S3-compatible server (moto in server mode)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from riverrun.persistence import (
    NotFoundInStore,
    PayloadStore,
    SnapshotStore,
    StoreUnavailable,
)
from riverrun.persistence._s3 import S3PayloadStore, S3SnapshotStore, open_s3_stores

from .conftest import S3Server, free_port
from .contract import PayloadStoreContract, SnapshotStoreContract

pytestmark = pytest.mark.anyio

BUCKET = "riverrun-tests"


@pytest.fixture
async def s3_stores(s3_server: S3Server) -> AsyncIterator[tuple[S3PayloadStore, S3SnapshotStore]]:
    async with open_s3_stores(
        BUCKET,
        endpoint_url=s3_server.endpoint_url,
        region_name=s3_server.region_name,
        aws_access_key_id=s3_server.aws_access_key_id,
        aws_secret_access_key=s3_server.aws_secret_access_key,
        prefix=f"test-{uuid.uuid4().hex[:8]}",
    ) as stores:
        yield stores


class TestS3PayloadStore(PayloadStoreContract):
    @pytest.fixture
    async def payload_store(
        self, s3_stores: tuple[S3PayloadStore, S3SnapshotStore]
    ) -> AsyncIterator[PayloadStore]:
        yield s3_stores[0]


class TestS3SnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    async def snapshot_store(
        self, s3_stores: tuple[S3PayloadStore, S3SnapshotStore]
    ) -> AsyncIterator[SnapshotStore]:
        yield s3_stores[1]


@pytest.mark.slow
@pytest.mark.parametrize("size", [3 * 1024 * 1024, 50 * 1024 * 1024], ids=["3MB", "50MB"])
async def test_large_payloads_round_trip(
    s3_stores: tuple[S3PayloadStore, S3SnapshotStore], size: int
) -> None:
    payloads, snapshots = s3_stores
    data = _pattern(size)

    ref = await payloads.put(data)
    await snapshots.put("big", data)

    assert data == await payloads.get(ref)
    assert data == await snapshots.get("big")
    assert ref == await payloads.put(data)  # already there: idempotent, not sent again


async def test_bucket_is_created_when_absent(s3_server: S3Server) -> None:
    bucket = f"riverrun-new-{uuid.uuid4().hex[:12]}"
    async with open_s3_stores(
        bucket,
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.aws_access_key_id,
        aws_secret_access_key=s3_server.aws_secret_access_key,
    ) as (payloads, _):
        ref = await payloads.put(b"x")
    # opening again finds the existing bucket and its content
    async with open_s3_stores(
        bucket,
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.aws_access_key_id,
        aws_secret_access_key=s3_server.aws_secret_access_key,
    ) as (payloads, _):
        assert b"x" == await payloads.get(ref)


async def test_bucket_in_another_region(s3_server: S3Server) -> None:
    async with open_s3_stores(
        f"riverrun-eu-{uuid.uuid4().hex[:12]}",
        endpoint_url=s3_server.endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id=s3_server.aws_access_key_id,
        aws_secret_access_key=s3_server.aws_secret_access_key,
    ) as (_, snapshots):
        await snapshots.put("k", b"v")
        assert b"v" == await snapshots.get("k")


async def test_prefixes_keep_namespaces_apart(s3_server: S3Server) -> None:
    tag = uuid.uuid4().hex[:8]
    async with (
        open_s3_stores(
            BUCKET,
            endpoint_url=s3_server.endpoint_url,
            aws_access_key_id=s3_server.aws_access_key_id,
            aws_secret_access_key=s3_server.aws_secret_access_key,
            prefix=f"a-{tag}",
        ) as (_, snapshots_a),
        open_s3_stores(
            BUCKET,
            endpoint_url=s3_server.endpoint_url,
            aws_access_key_id=s3_server.aws_access_key_id,
            aws_secret_access_key=s3_server.aws_secret_access_key,
            prefix=f"b-{tag}/",
        ) as (_, snapshots_b),
    ):
        await snapshots_a.put("same-key", b"a")
        assert None is await snapshots_b.get("same-key")


async def test_malformed_reference_is_not_found(
    s3_stores: tuple[S3PayloadStore, S3SnapshotStore],
) -> None:
    payloads, _ = s3_stores
    with pytest.raises(NotFoundInStore, match="not a payload reference"):
        await payloads.get("md5:abc")
    assert not await payloads.exists("../../etc/passwd")


async def test_credentials_never_show(
    s3_server: S3Server, s3_stores: tuple[S3PayloadStore, S3SnapshotStore]
) -> None:
    payloads, snapshots = s3_stores
    shown = repr(payloads) + repr(snapshots)

    assert s3_server.aws_secret_access_key not in shown
    assert s3_server.aws_access_key_id not in shown
    assert BUCKET in shown


async def test_unreachable_server_is_store_unavailable() -> None:
    secret = "do-not-print-" + uuid.uuid4().hex
    with pytest.raises(StoreUnavailable) as caught:
        async with open_s3_stores(
            BUCKET,
            endpoint_url=f"http://127.0.0.1:{free_port()}",
            aws_access_key_id="key-id",
            aws_secret_access_key=secret,
        ):
            pass  # pragma: no cover

    message = str(caught.value)
    assert "127.0.0.1" in message
    assert secret not in message
    assert isinstance(caught.value, ConnectionError)


async def test_a_deleted_bucket_is_store_unavailable(s3_server: S3Server) -> None:
    import aioboto3

    bucket = f"riverrun-gone-{uuid.uuid4().hex[:12]}"
    async with open_s3_stores(
        bucket,
        endpoint_url=s3_server.endpoint_url,
        aws_access_key_id=s3_server.aws_access_key_id,
        aws_secret_access_key=s3_server.aws_secret_access_key,
    ) as (_, snapshots):
        session = aioboto3.Session(
            aws_access_key_id=s3_server.aws_access_key_id,
            aws_secret_access_key=s3_server.aws_secret_access_key,
            region_name=s3_server.region_name,
        )
        async with session.client("s3", endpoint_url=s3_server.endpoint_url) as client:
            await client.delete_bucket(Bucket=bucket)

        with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
            await snapshots.put("k", b"v")


def _pattern(size: int) -> bytes:
    block = bytes(range(256)) * 4096
    return (block * (size // len(block) + 1))[:size]
