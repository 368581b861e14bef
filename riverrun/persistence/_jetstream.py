"""``open_jetstream_backend``: connect to NATS, create or check every stream and bucket, and
hand out a ``Backend`` whose stores all live in one namespace.

Design note: streams are created idempotently and never silently reused: an existing stream
whose subjects, replicas, storage or required features (atomic batches, rollups, direct get,
message schedules) differ from what riverrun needs is an ``IncompatibleStoreConfig`` naming
the difference and what to do. Settings that only tune (``max_consumers``, limits) are left
as the operator set them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from .._errors import StoreUnavailable
from ._backend import Backend
from ._clock import SystemClock
from ._codec import Codec
from ._jetstream_blobs import JetStreamPayloadStore, JetStreamSnapshotStore, open_object_bucket
from ._jetstream_conn import JetStreamConnection, ServerErrors, translate_errors
from ._jetstream_connect import connect
from ._jetstream_ends import JetStreamChainEnds
from ._jetstream_events import JetStreamEventLog
from ._jetstream_guard import guard_status_headers
from ._jetstream_inbox import JetStreamInbox
from ._jetstream_names import Names, check_namespace
from ._jetstream_owners import JetStreamOwnershipStore
from ._jetstream_runs import JetStreamRunStore, open_kv_bucket
from ._nats_security import NatsSecurity
from ._protocols import Clock
from ._quarantine import Quarantine
from ._redact import redact_url

__all__ = ["open_jetstream_backend"]

#: room left for headers when comparing an event's body with the server's max_payload
_HEADER_ROOM = 4096


def _events_stream(names: Names, replicas: int) -> tuple[StreamConfig, dict[str, Any]]:
    config = StreamConfig(
        name=names.events_stream,
        description="riverrun event histories: one subject per run",
        subjects=[names.events_filter],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_consumers=-1,
        allow_atomic=True,
        allow_rollup_hdrs=True,
        allow_direct=True,
        deny_purge=False,
        deny_delete=False,
    )
    required = {
        "subjects": [names.events_filter],
        "storage": StorageType.FILE,
        "num_replicas": replicas,
        "retention": RetentionPolicy.LIMITS,
        "allow_atomic": True,
        "allow_rollup_hdrs": True,
        "allow_direct": True,
        "deny_purge": False,
        "max_msgs_per_subject": -1,
        "max_age": 0.0,
    }
    return config, required


def _inbox_stream(names: Names, replicas: int) -> tuple[StreamConfig, dict[str, Any]]:
    subjects = [names.inbox_filter, names.schedules_filter]
    config = StreamConfig(
        name=names.inbox_stream,
        description="riverrun inboxes (one subject per workflow) and durable timers",
        subjects=subjects,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=replicas,
        max_consumers=-1,
        allow_msg_schedules=True,
        allow_rollup_hdrs=True,
        allow_direct=True,
    )
    required = {
        "subjects": subjects,
        "storage": StorageType.FILE,
        "num_replicas": replicas,
        "retention": RetentionPolicy.LIMITS,
        "allow_msg_schedules": True,
        "allow_rollup_hdrs": True,
        "allow_direct": True,
        "deny_purge": False,
        "max_msgs_per_subject": -1,
        "max_age": 0.0,
    }
    return config, required


@asynccontextmanager
async def open_jetstream_backend(
    servers: str | Sequence[str],
    *,
    namespace: str = "default",
    codec: Codec | None = None,
    clock: Clock | None = None,
    replicas: int = 1,
    connect_timeout: float = 5.0,
    request_timeout: float = 5.0,
    security: NatsSecurity | None = None,
    partitions: int | None = None,
) -> AsyncIterator[Backend]:
    """Connect to NATS JetStream and open every store of ``namespace``.

    Streams ``RIVERRUN_<NS>_EVENTS`` / ``_INBOX``, KV buckets ``_RUNS`` / ``_HEADS`` /
    ``_LEASES`` / ``_INDEX`` and object buckets ``_PAYLOADS`` / ``_SNAPSHOTS`` are created if missing.

    Args:
        servers: one NATS URL or several (a cluster).
        namespace: isolates one deployment's streams and buckets from another's
            (1-64 characters of letters, digits, ``_``, ``-``).
        codec: encodes events, records and messages (default: ``Codec()``).
        clock: time for leases and message timestamps (default: the system clock).
        replicas: stream and bucket replicas (3 on a production cluster).
        connect_timeout: seconds to wait for the first connection.
        request_timeout: seconds to wait for any one answer from the server.
        security: credentials and TLS (``NatsSecurity.build(...)``); default: none, or
            what the URLs carry (``nats://user:password@host``, never shown in messages).
        partitions: partitions per queue; a namespace setting stored once (16 unless the
            first runtime to use the namespace says otherwise). ``None``: what is stored.

    Yields:
        The ``Backend``; the connection is drained and closed when the block exits. After the
        first connection the client reconnects forever; while it is disconnected every call
        fails fast with ``StoreUnavailable`` (retryable).

    Raises:
        StoreUnavailable: no server answered within ``connect_timeout``.
        StorePermissionDenied: the server refused the credentials, or this user may not
            use a subject riverrun needs (the message names it).
        StoreTLSError: the TLS handshake failed (untrusted server, no client certificate).
        IncompatibleStoreConfig: a stream or bucket exists with settings riverrun cannot use.
        ValueError: a bad argument.
    """
    urls = [servers] if isinstance(servers, str) else list(servers)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(
            "servers must be a NATS URL or a non-empty list of them, got "
            f"{redact_url(repr(servers))}"
        )
    names = Names(check_namespace(namespace))
    if replicas not in (1, 3, 5):
        raise ValueError(f"replicas must be 1, 3 or 5, got {replicas}")
    if connect_timeout <= 0 or request_timeout <= 0:
        raise ValueError("connect_timeout and request_timeout must be positive")
    codec = codec if codec is not None else Codec()
    clock = clock if clock is not None else SystemClock()
    url = redact_url(", ".join(urls))

    server_errors = ServerErrors(url)
    nc = None
    # connect() keeps its own deadline and says why it failed; this one is a backstop
    with anyio.move_on_after(connect_timeout + 1.0) as scope:
        nc = await connect(
            urls,
            connect_timeout=connect_timeout,
            name=f"riverrun-{namespace}",
            security=security,
            server_errors=server_errors,
        )
    if nc is None or scope.cancelled_caught:
        raise StoreUnavailable(
            f"cannot connect to NATS at {url}: no answer within {connect_timeout:g} s. Is "
            "nats-server running (with JetStream enabled) and reachable?"
        )
    try:
        conn = JetStreamConnection(
            nc, url=url, request_timeout=request_timeout, server_errors=server_errors
        )
        backend = await _open_stores(conn, names, codec, clock, replicas, partitions)
        yield backend
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(request_timeout):
            # already closed or gone: nothing left to flush
            with contextlib.suppress(Exception):
                await nc.drain()
            if not nc.is_closed:
                await nc.close()


async def _open_stores(
    conn: JetStreamConnection,
    names: Names,
    codec: Codec,
    clock: Clock,
    replicas: int,
    partitions: int | None = None,
) -> Backend:
    guard_status_headers(conn.nc)  # a foreign Status header must not deafen the inbox watch
    with translate_errors(conn, f"open namespace {names.namespace!r}"):
        config, required = _events_stream(names, replicas)
        await conn.ensure_stream(config, required=required, what="events")
        config, required = _inbox_stream(names, replicas)
        await conn.ensure_stream(config, required=required, what="inbox")
    runs = await open_kv_bucket(conn, names.runs_bucket, replicas=replicas, what="runs")
    heads = await open_kv_bucket(conn, names.heads_bucket, replicas=replicas, what="heads")
    leases = await open_kv_bucket(conn, names.leases_bucket, replicas=replicas, what="leases")
    index = await open_kv_bucket(conn, names.index_bucket, replicas=replicas, what="index")
    payloads = await open_object_bucket(
        conn, names.payloads_bucket, replicas=replicas, what="payloads"
    )
    snapshots = await open_object_bucket(
        conn, names.snapshots_bucket, replicas=replicas, what="snapshots"
    )
    max_event_bytes = conn.max_payload - _HEADER_ROOM
    quarantine = Quarantine()
    owners = JetStreamOwnershipStore(
        conn, names, codec, clock, owners=leases, index=index, quarantine=quarantine
    )
    count = await owners.partitions(partitions)
    return Backend(
        name=f"jetstream:{names.namespace}",
        events=JetStreamEventLog(
            conn, names, codec, max_event_bytes=max_event_bytes, quarantine=quarantine
        ),
        runs=JetStreamRunStore(
            conn, names, codec, clock, runs=runs, heads=heads, quarantine=quarantine
        ),
        inbox=JetStreamInbox(conn, names, codec, clock, partitions=count),
        owners=owners,
        partitions=count,
        payloads=JetStreamPayloadStore(conn, payloads, names.payloads_bucket),
        snapshots=JetStreamSnapshotStore(conn, snapshots, names.snapshots_bucket),
        clock=clock,
        max_event_bytes=max_event_bytes,
        quarantine=quarantine,
        ends=JetStreamChainEnds(conn, names),
    )
