"""The in-memory ownership store: partition leases, members and the running index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio.lowlevel

from .._errors import IncompatibleStoreConfig
from ._clock import SystemClock
from ._model import Lease, Member
from ._partitions import DEFAULT_PARTITIONS, check_partitions
from ._protocols import Clock

__all__ = ["MemoryOwnershipStore"]

_FREE = datetime(1970, 1, 1, tzinfo=UTC)


class MemoryOwnershipStore:
    """``OwnershipStore`` kept in process memory (shared by runtimes on one backend)."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._partitions: int | None = None
        self._revision = 0
        self._leases: dict[tuple[str, int], Lease] = {}
        self._members: dict[str, Member] = {}
        self._index: dict[tuple[str, int], dict[tuple[str, str], None]] = {}

    def __repr__(self) -> str:
        return (
            f"<MemoryOwnershipStore partitions={self._partitions} leases={len(self._leases)} "
            f"members={len(self._members)}>"
        )

    async def partitions(self, requested: int | None) -> int:
        await anyio.lowlevel.checkpoint()
        if requested is not None:
            check_partitions(requested)
        if self._partitions is None:
            self._partitions = requested or DEFAULT_PARTITIONS
        elif requested is not None and requested != self._partitions:
            raise IncompatibleStoreConfig(_mismatch(requested, self._partitions, "this backend"))
        return self._partitions

    async def acquire(self, queue: str, partition: int, owner: str, ttl: timedelta) -> Lease | None:
        await anyio.lowlevel.checkpoint()
        _check_ttl(ttl)
        now = self._clock.now()
        held = self._leases.get((queue, partition))
        if held is not None and held.owner not in ("", owner) and held.expires_at > now:
            return None
        return self._grant(queue, partition, owner, now + ttl)

    async def renew(self, lease: Lease, ttl: timedelta) -> Lease | None:
        await anyio.lowlevel.checkpoint()
        _check_ttl(ttl)
        held = self._leases.get((lease.queue, lease.partition))
        if held is None or held.revision != lease.revision:
            return None
        return self._grant(lease.queue, lease.partition, lease.owner, self._clock.now() + ttl)

    async def release(self, lease: Lease) -> None:
        await anyio.lowlevel.checkpoint()
        held = self._leases.get((lease.queue, lease.partition))
        if held is not None and held.revision == lease.revision:
            self._grant(lease.queue, lease.partition, "", _FREE)

    async def get_lease(self, queue: str, partition: int) -> Lease | None:
        await anyio.lowlevel.checkpoint()
        return self._leases.get((queue, partition))

    async def heartbeat(self, member: Member) -> None:
        await anyio.lowlevel.checkpoint()
        self._members[member.worker_id] = member

    async def leave(self, worker_id: str) -> None:
        await anyio.lowlevel.checkpoint()
        self._members.pop(worker_id, None)

    async def members(self) -> list[Member]:
        await anyio.lowlevel.checkpoint()
        return list(self._members.values())

    async def index_add(self, queue: str, partition: int, workflow_id: str, run_id: str) -> None:
        await anyio.lowlevel.checkpoint()
        self._index.setdefault((queue, partition), {})[(workflow_id, run_id)] = None

    async def index_remove(self, queue: str, partition: int, workflow_id: str, run_id: str) -> None:
        await anyio.lowlevel.checkpoint()
        self._index.get((queue, partition), {}).pop((workflow_id, run_id), None)

    async def index_list(self, queue: str, partition: int) -> list[tuple[str, str]]:
        await anyio.lowlevel.checkpoint()
        return list(self._index.get((queue, partition), {}))

    def _grant(self, queue: str, partition: int, owner: str, expires_at: datetime) -> Lease:
        self._revision += 1
        lease = Lease(
            queue=queue,
            partition=partition,
            owner=owner,
            expires_at=expires_at,
            revision=self._revision,
        )
        self._leases[(queue, partition)] = lease
        return lease


def _check_ttl(ttl: timedelta) -> None:
    if ttl <= timedelta(0):
        raise ValueError(f"lease ttl must be positive, got {ttl}")


def _mismatch(requested: int, stored: int, where: str) -> str:
    return (
        f"partitions={requested} was asked for, but the namespace at {where} has {stored} "
        f"partitions per queue (a namespace setting, fixed when it was first used). Drop the "
        f"partitions option (or set it to {stored}), or use a new namespace"
    )
