"""Payload and snapshot stores on S3 (or any S3-compatible server: MinIO, Ceph, moto).

Design note: the only module that imports ``aioboto3``/``botocore``. Every call goes through
``_map_errors``, which turns botocore's errors into ``NotFoundInStore`` (a missing key) or
``StoreUnavailable`` (everything else: unreachable endpoint, timeouts, throttling, refused
credentials, a bucket deleted under us), with the S3 error code and our operation in the
message. Credentials are handed to the aioboto3 session and never kept on our objects, so
neither ``repr`` nor an error message can show them; messages are scrubbed of them anyway,
in case a server echoes them back. Objects over ``_MULTIPART_THRESHOLD`` go up as multipart
uploads (a few parts in flight at once) and come down as a stream read in chunks.

Layout in the bucket: ``<prefix>payloads/<sha256 hex>`` and ``<prefix>snapshots/<key>``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aioboto3
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from .._errors import NotFoundInStore, StoreUnavailable
from ._refs import check_payload_ref, payload_ref_async

__all__ = ["S3PayloadStore", "S3SnapshotStore", "open_s3_stores"]

_MULTIPART_THRESHOLD: Final = 16 * 1024 * 1024
_PART_SIZE: Final = 8 * 1024 * 1024  # S3 needs >= 5 MiB for every part but the last
_PARTS_IN_FLIGHT: Final = 4
_READ_CHUNK: Final = 1024 * 1024
_NOT_FOUND_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})


class _S3Objects:
    """Object operations under one bucket and prefix, shared by both stores."""

    def __init__(
        self, client: Any, *, bucket: str, prefix: str, endpoint: str, secrets: tuple[str, ...]
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self._secrets = tuple(s for s in secrets if s)

    def describe(self) -> str:
        return f"bucket={self.bucket!r} prefix={self.prefix!r} endpoint={self.endpoint!r}"

    @contextmanager
    def map_errors(self, operation: str, key: str | None = None) -> Iterator[None]:
        """Translate botocore errors raised inside the block (see the module note)."""
        where = f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "Unknown"))
            if code in _NOT_FOUND_CODES and key is not None:
                raise NotFoundInStore(f"{operation}: {where} does not exist") from exc
            detail = self._scrub(str(error.get("Message", "")))
            raise StoreUnavailable(
                f"{operation} {where} failed with S3 error {code}"
                + (f" ({detail})" if detail else "")
                + f" at {self.endpoint}; check the endpoint, bucket and credentials"
            ) from exc
        except (BotoCoreError, OSError, TimeoutError) as exc:
            detail = self._scrub(f"{type(exc).__name__}: {exc}")
            raise StoreUnavailable(
                f"{operation} {where}: cannot reach S3 at {self.endpoint} ({detail}); "
                "check that the server is up, then retry"
            ) from exc

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def ensure_bucket(self, region_name: str) -> None:
        with self.map_errors("create bucket"):
            try:
                await self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in {"404", "NoSuchBucket"}:
                    raise
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if region_name != "us-east-1":  # S3 refuses an explicit us-east-1 constraint
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region_name}
            try:
                await self.client.create_bucket(**kwargs)
            except ClientError as exc:
                # Another process created it between our head and our create: fine.
                code = str(exc.response.get("Error", {}).get("Code"))
                if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    async def put(self, key: str, data: bytes) -> None:
        with self.map_errors("put", key):
            if len(data) <= _MULTIPART_THRESHOLD:
                await self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
            else:
                await self._put_multipart(key, data)

    async def _put_multipart(self, key: str, data: bytes) -> None:
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        view = memoryview(data)
        count = math.ceil(len(data) / _PART_SIZE)
        etags: list[str] = [""] * count
        limiter = anyio.CapacityLimiter(_PARTS_IN_FLIGHT)

        async def send_part(index: int) -> None:
            async with limiter:
                body = bytes(view[index * _PART_SIZE : (index + 1) * _PART_SIZE])
                part = await self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=index + 1,
                    Body=body,
                )
                etags[index] = part["ETag"]

        try:
            try:
                async with anyio.create_task_group() as tg:
                    for index in range(count):
                        tg.start_soon(send_part, index)
            except BaseExceptionGroup as group:
                # Surface the failing part's own error, so that map_errors can translate it.
                first = _first_error(group)
                if first is None:
                    raise
                raise first from group
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"ETag": etag, "PartNumber": i + 1} for i, etag in enumerate(etags)]
                },
            )
        except BaseException:
            # Do not leave billed, invisible parts behind; best effort, bounded in time.
            with (
                anyio.move_on_after(10, shield=True),
                suppress(ClientError, BotoCoreError, OSError),
            ):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            raise

    async def get(self, key: str) -> bytes:
        with self.map_errors("get", key):
            response = await self.client.get_object(Bucket=self.bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            body = response["Body"]
            async with body:  # releases the connection, even if reading fails
                if size <= _READ_CHUNK:
                    return bytes(await body.read())
                buffer = bytearray()
                async for chunk in body.iter_chunks(_READ_CHUNK):
                    buffer += chunk
                return bytes(buffer)

    async def get_or_none(self, key: str) -> bytes | None:
        try:
            return await self.get(key)
        except NotFoundInStore:
            return None

    async def exists(self, key: str) -> bool:
        with self.map_errors("head", key):
            try:
                await self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND_CODES:
                    return False
                raise
            return True

    async def delete(self, key: str) -> None:
        with self.map_errors("delete", key):
            await self.client.delete_object(Bucket=self.bucket, Key=key)


class S3PayloadStore:
    """``PayloadStore`` on S3: content-addressed objects ``<prefix>payloads/<sha256 hex>``.

    Open it with :func:`open_s3_stores`.
    """

    def __init__(self, objects: _S3Objects) -> None:
        self._objects = objects

    def __repr__(self) -> str:
        return f"<S3PayloadStore {self._objects.describe()}>"

    def _key(self, ref: str) -> str:
        return f"{self._objects.prefix}payloads/{check_payload_ref(ref)}"

    async def put(self, data: bytes) -> str:
        """Store ``data``; return ``sha256:<hex>``. Bytes already stored are not sent again."""
        data = bytes(data)
        ref = await payload_ref_async(data)
        key = self._key(ref)
        if not await self._objects.exists(key):
            await self._objects.put(key, data)
        return ref

    async def get(self, ref: str) -> bytes:
        """The payload of ``ref``; raises ``NotFoundInStore`` if there is none."""
        return await self._objects.get(self._key(ref))

    async def delete(self, ref: str) -> None:
        """Remove the payload (nothing happens if there is none)."""
        try:
            key = self._key(ref)
        except NotFoundInStore:
            return
        await self._objects.delete(key)

    async def exists(self, ref: str) -> bool:
        """Whether the store holds ``ref``."""
        try:
            key = self._key(ref)
        except NotFoundInStore:
            return False
        return await self._objects.exists(key)


class S3SnapshotStore:
    """``SnapshotStore`` on S3: objects ``<prefix>snapshots/<key>``, overwritten in place.

    Open it with :func:`open_s3_stores`.
    """

    def __init__(self, objects: _S3Objects) -> None:
        self._objects = objects

    def __repr__(self) -> str:
        return f"<S3SnapshotStore {self._objects.describe()}>"

    def _key(self, key: str) -> str:
        if not key:
            raise ValueError("a snapshot key must not be empty")
        return f"{self._objects.prefix}snapshots/{key}"

    async def put(self, key: str, data: bytes) -> None:
        """Store (or overwrite) the snapshot ``key``."""
        await self._objects.put(self._key(key), bytes(data))

    async def get(self, key: str) -> bytes | None:
        """The snapshot ``key``, or ``None``."""
        return await self._objects.get_or_none(self._key(key))

    async def delete(self, key: str) -> None:
        """Remove the snapshot (nothing happens if there is none)."""
        await self._objects.delete(self._key(key))


@asynccontextmanager
async def open_s3_stores(
    bucket: str,
    *,
    endpoint_url: str | None = None,
    region_name: str = "us-east-1",
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    prefix: str = "",
) -> AsyncIterator[tuple[S3PayloadStore, S3SnapshotStore]]:
    """Open the payload and snapshot stores in ``bucket``, creating the bucket if absent.

    Args:
        bucket: the bucket name.
        endpoint_url: an S3-compatible server (MinIO, ...); ``None`` for AWS.
        region_name: the bucket's region.
        aws_access_key_id: credentials; ``None`` uses the usual AWS chain (environment,
            config files, instance role).
        aws_secret_access_key: see ``aws_access_key_id``.
        prefix: put every object under this key prefix (a ``/`` is added if missing), to
            share a bucket between namespaces.

    Yields:
        ``(payload_store, snapshot_store)``, usable until the block exits.

    Raises:
        StoreUnavailable: the server cannot be reached, refuses the credentials, or the
            bucket cannot be created.
    """
    if not bucket:
        raise ValueError("open_s3_stores() needs a bucket name")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    session = aioboto3.Session(
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        region_name=region_name,
    )
    config = AioConfig(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        # S3-compatible servers do not all accept the newer default CRC checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    endpoint = _redact_url(endpoint_url) if endpoint_url else f"AWS S3 ({region_name})"
    secrets = (aws_secret_access_key or "", aws_access_key_id or "")
    async with session.client("s3", endpoint_url=endpoint_url, config=config) as client:
        objects = _S3Objects(
            client, bucket=bucket, prefix=prefix, endpoint=endpoint, secrets=secrets
        )
        await objects.ensure_bucket(region_name)
        yield S3PayloadStore(objects), S3SnapshotStore(objects)


def _first_error(group: BaseExceptionGroup[BaseException]) -> Exception | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first_error(exc)
            if found is not None:
                return found
        elif isinstance(exc, Exception):
            return exc
    return None


def _redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
