"""Payloads (the claim check) and snapshots on the JetStream Object Store.

Design note: the Object Store chunks an object into 128 KiB messages. ``ObjectStore.get``
without ``writeinto`` grows its result with ``bytes +=`` — quadratic, minutes for 50 MB — so
every read here goes through ``writeinto`` into one ``BytesIO``. Payload names are the hex
sha256 of the content, which makes ``put`` idempotent (an existing name is not rewritten).
Snapshots live in their own bucket under their key (any string: the Object Store encodes
names into subjects itself), and are replaced in place.
"""

from __future__ import annotations

import contextlib
import io

import nats.js.errors
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore

from .._errors import IncompatibleStoreConfig, NotFoundInStore
from ._jetstream_conn import JetStreamConnection, translate_errors
from ._refs import check_payload_ref, payload_ref_async

__all__ = ["JetStreamPayloadStore", "JetStreamSnapshotStore", "open_object_bucket"]

_NOT_FOUND = (nats.js.errors.ObjectNotFoundError, nats.js.errors.ObjectDeletedError)


async def open_object_bucket(
    conn: JetStreamConnection, bucket: str, *, replicas: int, what: str
) -> ObjectStore:
    """Create the object bucket, or open it after checking its replicas."""
    with translate_errors(conn, f"open the {what} bucket {bucket}"):
        try:
            store = await conn.js.object_store(bucket)
        except nats.js.errors.BucketNotFoundError:
            return await conn.js.create_object_store(
                bucket, ObjectStoreConfig(storage=StorageType.FILE, replicas=replicas)
            )
        status = await store.status()
        have = status.stream_info.config.num_replicas
        if have != replicas:
            raise IncompatibleStoreConfig(
                f"the {what} object bucket {bucket!r} at {conn.url} exists with replicas="
                f"{have}, riverrun was asked for {replicas}. Delete it (`nats object rm "
                f"{bucket}`), open the backend with replicas={have}, or use another namespace."
            )
        return store


async def _read(store: ObjectStore, name: str) -> bytes:
    buffer = io.BytesIO()
    await store.get(name, writeinto=buffer)
    return buffer.getvalue()


async def _exists(store: ObjectStore, name: str) -> bool:
    try:
        info = await store.get_info(name)
    except _NOT_FOUND:
        return False
    return not info.deleted


class JetStreamPayloadStore:
    """``PayloadStore`` on a JetStream object bucket. Build it with ``open_jetstream_backend``."""

    def __init__(self, conn: JetStreamConnection, store: ObjectStore, bucket: str) -> None:
        self._conn = conn
        self._store = store
        self._bucket = bucket

    def __repr__(self) -> str:
        return f"<JetStreamPayloadStore {self._bucket}>"

    async def put(self, data: bytes) -> str:
        """Store ``data`` and return ``sha256:<hex>``; storing the same bytes again is free."""
        ref = await payload_ref_async(data)
        name = ref.removeprefix("sha256:")
        with translate_errors(self._conn, f"store payload {ref}"):
            self._conn.check_connected(f"store payload {ref}")
            if not await _exists(self._store, name):
                await self._store.put(name, data)
        return ref

    async def get(self, ref: str) -> bytes:
        """The payload's bytes. Raises ``NotFoundInStore`` for an unknown reference."""
        name = check_payload_ref(ref)
        with translate_errors(self._conn, f"read payload {ref}"):
            self._conn.check_connected(f"read payload {ref}")
            try:
                return await _read(self._store, name)
            except _NOT_FOUND as exc:
                raise NotFoundInStore(
                    f"payload {ref} is not in the object bucket {self._bucket}"
                ) from exc

    async def delete(self, ref: str) -> None:
        """Remove the payload (nothing happens if it is not there)."""
        try:
            name = check_payload_ref(ref)
        except NotFoundInStore:
            return
        with translate_errors(self._conn, f"delete payload {ref}"):
            self._conn.check_connected(f"delete payload {ref}")
            with contextlib.suppress(*_NOT_FOUND):
                await self._store.delete(name)

    async def exists(self, ref: str) -> bool:
        try:
            name = check_payload_ref(ref)
        except NotFoundInStore:
            return False
        with translate_errors(self._conn, f"look up payload {ref}"):
            self._conn.check_connected(f"look up payload {ref}")
            return await _exists(self._store, name)


class JetStreamSnapshotStore:
    """``SnapshotStore`` on a JetStream object bucket. Build it with ``open_jetstream_backend``."""

    def __init__(self, conn: JetStreamConnection, store: ObjectStore, bucket: str) -> None:
        self._conn = conn
        self._store = store
        self._bucket = bucket

    def __repr__(self) -> str:
        return f"<JetStreamSnapshotStore {self._bucket}>"

    async def put(self, key: str, data: bytes) -> None:
        """Store (or replace) the snapshot ``key``."""
        with translate_errors(self._conn, f"store snapshot {key!r}"):
            self._conn.check_connected(f"store snapshot {key!r}")
            await self._store.put(key, data)

    async def get(self, key: str) -> bytes | None:
        """The snapshot, or ``None``."""
        with translate_errors(self._conn, f"read snapshot {key!r}"):
            self._conn.check_connected(f"read snapshot {key!r}")
            try:
                return await _read(self._store, key)
            except _NOT_FOUND:
                return None

    async def delete(self, key: str) -> None:
        """Remove the snapshot (nothing happens if there is none)."""
        with translate_errors(self._conn, f"delete snapshot {key!r}"):
            self._conn.check_connected(f"delete snapshot {key!r}")
            with contextlib.suppress(*_NOT_FOUND):
                await self._store.delete(key)
