"""The JetStream ownership store: partition leases, members and the running-chain index.

Design note. Leases, members and the namespace's partition count live in the ``_LEASES`` KV
bucket (keys ``config``, ``lease.<queue>.<partition>``, ``member.<worker>``); the index of
running chains in the ``_INDEX`` bucket, one key per chain,
``<queue>.<partition>.<workflow_id>.<first_run_id>``. A lease is taken and renewed by
compare-and-set on its revision, so the revision is the fencing token; a release writes a
free lease (owner ``""``) the same way. Lease traffic is O(partitions), not O(workflows).

Listing members or one partition's index is a batch direct get over the bucket's stream with a
subject filter: no watcher, no consumer. Index entries and members are removed by purging
their subject, which leaves no delete marker behind, so a partition's listing costs what is
running in it, not everything that ever ran there.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.js.errors
from nats.js.kv import KeyValue

from .._errors import IncompatibleStoreConfig, PersistenceError
from ._codec import Codec
from ._jetstream_conn import ANY_REVISION, JetStreamConnection, translate_errors
from ._jetstream_names import Names, escape_token, unescape_token
from ._model import Lease, Member
from ._partitions import DEFAULT_PARTITIONS, check_partitions
from ._protocols import Clock
from ._quarantine import Quarantine, QuarantinedMessage

__all__ = ["JetStreamOwnershipStore"]

_FREE = datetime(1970, 1, 1, tzinfo=UTC)
_BATCH = 1000


class JetStreamOwnershipStore:
    """``OwnershipStore`` on JetStream KV. Build it with ``open_jetstream_backend``."""

    def __init__(
        self,
        conn: JetStreamConnection,
        names: Names,
        codec: Codec,
        clock: Clock,
        *,
        owners: KeyValue,
        index: KeyValue,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._conn = conn
        self._names = names
        self._codec = codec
        self._clock = clock
        self._owners = owners
        self._index = index
        self._owners_bucket = names.leases_bucket
        self._index_bucket = names.index_bucket
        self._quarantine = quarantine if quarantine is not None else Quarantine()

    def __repr__(self) -> str:
        return f"<JetStreamOwnershipStore {self._owners_bucket}>"

    # -- the namespace's partition count -----------------------------------------------------

    async def partitions(self, requested: int | None) -> int:
        if requested is not None:
            check_partitions(requested)
        what = "the namespace's partition count"
        with translate_errors(self._conn, f"read {what}"):
            for _ in range(3):
                raw = await self._get_raw(self._owners, "config")
                if raw is None:
                    wanted = requested or DEFAULT_PARTITIONS
                    data = self._codec.dumps({"partitions": wanted}, what=what)
                    try:
                        await self._owners.create("config", data)
                    except nats.js.errors.KeyWrongLastSequenceError:
                        continue  # another process stored it first: read theirs
                    return wanted
                config = self._codec.loads(raw[0], what=what)
                stored = config.get("partitions") if isinstance(config, dict) else None
                if not isinstance(stored, int):
                    raise PersistenceError(
                        f"the config key of bucket {self._owners_bucket} holds {config!r}, not "
                        "riverrun's namespace settings; delete the key or use another namespace"
                    )
                if requested is not None and requested != stored:
                    raise IncompatibleStoreConfig(
                        f"partitions={requested} was asked for, but namespace "
                        f"{self._names.namespace!r} at {self._conn.url} has {stored} partitions "
                        "per queue (a namespace setting, fixed when it was first used). Drop "
                        f"the partitions option (or set it to {stored}), or use a new namespace"
                    )
                return stored
        raise PersistenceError(f"could not read or store {what}; try again")

    # -- leases ------------------------------------------------------------------------------

    async def acquire(self, queue: str, partition: int, owner: str, ttl: timedelta) -> Lease | None:
        _check_ttl(ttl)
        key = _lease_key(queue, partition)
        what = f"lease of partition {queue}/{partition}"
        with translate_errors(self._conn, what):
            held = await self._get_raw(self._owners, key)
            now = self._clock.now()
            if held is not None:
                current = self._decode(held[0], Lease, what)
                if current.owner not in ("", owner) and current.expires_at > now:
                    return None
            lease = Lease(
                queue=queue, partition=partition, owner=owner, expires_at=now + ttl, revision=0
            )
            data = self._codec.dumps(lease, what=what)
            try:
                if held is None:
                    revision = await self._owners.create(key, data)
                else:
                    revision = await self._owners.update(key, data, last=held[1])
            except nats.js.errors.KeyWrongLastSequenceError:
                return None  # another worker took it between our read and write
        return _with_revision(lease, revision)

    async def renew(self, lease: Lease, ttl: timedelta) -> Lease | None:
        _check_ttl(ttl)
        renewed = Lease(
            queue=lease.queue,
            partition=lease.partition,
            owner=lease.owner,
            expires_at=self._clock.now() + ttl,
            revision=0,
        )
        what = f"lease of partition {lease.queue}/{lease.partition}"
        data = self._codec.dumps(renewed, what=what)
        with translate_errors(self._conn, f"renew the {what}"):
            try:
                revision = await self._owners.update(
                    _lease_key(lease.queue, lease.partition), data, last=lease.revision
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                return None
        return _with_revision(renewed, revision)

    async def release(self, lease: Lease) -> None:
        free = Lease(
            queue=lease.queue, partition=lease.partition, owner="", expires_at=_FREE, revision=0
        )
        what = f"lease of partition {lease.queue}/{lease.partition}"
        data = self._codec.dumps(free, what=what)
        with (
            translate_errors(self._conn, f"release the {what}"),
            # no longer ours: leave the new owner's lease alone
            contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError),
        ):
            await self._owners.update(
                _lease_key(lease.queue, lease.partition), data, last=lease.revision
            )

    async def get_lease(self, queue: str, partition: int) -> Lease | None:
        what = f"lease of partition {queue}/{partition}"
        with translate_errors(self._conn, f"read the {what}"):
            held = await self._get_raw(self._owners, _lease_key(queue, partition))
        if held is None:
            return None
        return _with_revision(self._decode(held[0], Lease, what), held[1])

    # -- members -----------------------------------------------------------------------------

    async def heartbeat(self, member: Member) -> None:
        key = f"member.{escape_token(member.worker_id)}"
        data = self._codec.dumps(member, what=f"member {member.worker_id}")
        with translate_errors(self._conn, f"record worker {member.worker_id} as a member"):
            await self._owners.put(key, data)

    async def leave(self, worker_id: str) -> None:
        subject = f"$KV.{self._owners_bucket}.member.{escape_token(worker_id)}"
        with translate_errors(self._conn, f"remove member {worker_id}"):
            await self._conn.purge(f"KV_{self._owners_bucket}", subject=subject)

    async def members(self) -> list[Member]:
        found: list[Member] = []
        async for subject, seq, data in self._scan(
            self._owners_bucket, f"$KV.{self._owners_bucket}.member.>", "list members"
        ):
            try:
                found.append(self._decode(data, Member, f"member {subject}"))
            except PersistenceError as exc:
                self._quarantine.report(
                    QuarantinedMessage(subject=subject, sequence=seq, reason=str(exc))
                )
        return found

    # -- the index of running chains -----------------------------------------------------------

    async def index_add(self, queue: str, partition: int, workflow_id: str, run_id: str) -> None:
        key = _index_key(queue, partition, workflow_id, run_id)
        with translate_errors(self._conn, f"index running workflow {workflow_id}"):
            await self._conn.kv_put(self._index_bucket, key, b"", expected_revision=ANY_REVISION)

    async def index_remove(self, queue: str, partition: int, workflow_id: str, run_id: str) -> None:
        subject = f"$KV.{self._index_bucket}.{_index_key(queue, partition, workflow_id, run_id)}"
        with translate_errors(self._conn, f"unindex workflow {workflow_id}"):
            await self._conn.purge(f"KV_{self._index_bucket}", subject=subject)

    async def index_list(self, queue: str, partition: int) -> list[tuple[str, str]]:
        prefix = f"$KV.{self._index_bucket}.{queue}.{partition}."
        found: list[tuple[str, str]] = []
        async for subject, _, _ in self._scan(
            self._index_bucket, prefix + ">", f"list the running workflows of {queue}/{partition}"
        ):
            tokens = subject[len(prefix) :].split(".")
            if len(tokens) == 2:
                try:
                    found.append((unescape_token(tokens[0]), unescape_token(tokens[1])))
                except ValueError:
                    continue
        return found

    # -- internals ---------------------------------------------------------------------------

    async def _scan(self, bucket: str, filter_subject: str, what: str) -> Any:
        start = 1
        while True:
            with translate_errors(self._conn, what):
                msgs, pending = await self._conn.direct_batch(
                    f"KV_{bucket}", filter_subject, start_seq=start, batch=_BATCH
                )
            headers: dict[str, str] = {}
            for msg in msgs:
                headers = msg.headers or {}
                if "KV-Operation" in headers:
                    continue  # a delete or purge marker
                subject = headers.get("Nats-Subject", msg.subject)
                yield subject, int(headers.get("Nats-Sequence", "0")), msg.data
            if not msgs or pending == 0:
                return
            start = int(headers["Nats-Sequence"]) + 1

    async def _get_raw(self, kv: KeyValue, key: str) -> tuple[bytes, int] | None:
        bucket = self._owners_bucket if kv is self._owners else self._index_bucket
        return await self._conn.kv_get(bucket, key)

    def _decode(self, data: bytes, cls: type[Any], what: str) -> Any:
        value = self._codec.loads(data, what=what)
        if not isinstance(value, cls):
            raise PersistenceError(
                f"{what} holds a {type(value).__name__}, not a {cls.__name__}; the bucket was "
                "written by something other than riverrun"
            )
        return value


def _lease_key(queue: str, partition: int) -> str:
    return f"lease.{queue}.{partition}"


def _index_key(queue: str, partition: int, workflow_id: str, run_id: str) -> str:
    return f"{queue}.{partition}.{escape_token(workflow_id)}.{escape_token(run_id)}"


def _with_revision(lease: Lease, revision: int) -> Lease:
    return Lease(
        queue=lease.queue,
        partition=lease.partition,
        owner=lease.owner,
        expires_at=lease.expires_at,
        revision=int(revision),
    )


def _check_ttl(ttl: timedelta) -> None:
    if ttl <= timedelta(0):
        raise ValueError(f"lease ttl must be positive, got {ttl}")
