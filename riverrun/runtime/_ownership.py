"""A worker's partition ownership: membership heartbeat, claim, renew, hand-off, release.

Design note. Each third of ``lease_ttl`` the worker records itself as a member, reads the live
members, computes which partitions of each queue it serves are its own (``assign``), and
then: renews the leases of its partitions still assigned to it (one compare-and-set each),
hands over gracefully those assigned to another live worker (stops its workflows there, lets
their queued projections finish, then releases the lease), and claims those assigned to it
(a free or expired lease: a dead worker's partitions are taken once their leases expire).
Claiming a partition opens its inbox consumer, then resumes every chain in the partition's
index, which is also the orphan scan. A round that sees a change coming before the next period
(another member's record expiring, or a lease held on a partition assigned here expiring) runs
the next round right then, not a whole period later: a dead worker's partitions are claimed as
soon as their leases expire (failover within the TTL), not up to a third of the TTL after.
Lease and membership traffic is O(partitions + members) per period, never O(workflows).
Leaving (the worker stops) hands every partition back.

A lease lost (taken over after it expired: this worker was cut off) stops this worker's
workflows of that partition at once; the log's append fence makes any append they still try
fail with ``ConcurrencyConflict``.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from ..persistence import Lease, Member
from ._membership import assign, live_members

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["PartitionOwner"]

log = logging.getLogger("riverrun.worker")


class PartitionOwner:
    """Keeps one worker's partitions of the queues it serves."""

    def __init__(self, worker: Worker, queues: list[str]) -> None:
        self.worker = worker
        self.services = worker.services
        self.queues = list(queues)
        self.leases: dict[tuple[str, int], Lease] = {}
        self.host = socket.gethostname()
        self._wake = anyio.Event()
        self._rounds = 0
        #: when the last round saw something change before the next period (a member's
        #: record or a lease expiring): the next round runs then
        self.next_change: datetime | None = None
        self._woken_for: datetime | None = None

    def __repr__(self) -> str:
        return f"<PartitionOwner queues={self.queues} owned={len(self.leases)}>"

    def owned(self) -> dict[str, list[int]]:
        """The partitions this worker owns now, by queue: their lease is held and their inbox
        consumer is open (a claim in progress is not counted yet)."""
        out: dict[str, list[int]] = {q: [] for q in self.queues}
        for queue, partition in sorted(self.leases):
            if self.worker.listening(queue, partition):
                out.setdefault(queue, []).append(partition)
        return out

    def wake(self) -> None:
        """Run the next round now (membership may have changed)."""
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        period = self.services.options.lease_ttl.total_seconds() / 3
        try:
            await self.round()
            task_status.started()
            while True:
                with anyio.move_on_after(self._until_next_round(period)):
                    await self._wake.wait()
                self._wake = anyio.Event()
                try:
                    await self.round()
                except Exception as exc:  # an outage: keep what we hold, try again next period
                    log.warning("worker %s: ownership round failed: %s", self.worker_id, exc)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.leave()

    def _until_next_round(self, period: float) -> float:
        """Seconds to the next round: a period, or less when a change is due sooner."""
        if self.next_change is None:
            return period
        # (a change woken for once is not waited for again: a clock that stands still)
        self._woken_for = self.next_change
        due = float((self.next_change - self.services.clock.now()).total_seconds())
        # a little after the expiry, so that it has passed when the round looks
        return max(0.01, min(period, due + 0.05))

    def _note_change(self, at: datetime) -> None:
        if at <= self.services.clock.now() or (self._woken_for and at <= self._woken_for):
            return
        if self.next_change is None or at < self.next_change:
            self.next_change = at

    @property
    def worker_id(self) -> str:
        return self.services.worker_id

    def _member(self) -> Member:
        services = self.services
        return Member(
            worker_id=self.worker_id,
            host=self.host,
            pid=os.getpid(),
            queues=tuple(self.queues),
            workflows=tuple(services.registry.names()),
            expires_at=services.clock.now() + services.options.lease_ttl,
        )

    async def round(self) -> None:
        """One heartbeat: renew, hand over, claim."""
        owners = self.services.backend.owners
        ttl = self.services.options.lease_ttl
        me = self._member()
        await owners.heartbeat(me)
        members = [m for m in live_members(await owners.members(), self.services) if m.worker_id != me.worker_id]
        self.next_change = None
        for member in members:
            self._note_change(member.expires_at)  # it is gone then, unless it heartbeats
        members.append(me)
        partitions = self.services.backend.partitions
        claimed: list[str] = []
        released: list[str] = []
        for queue in self.queues:
            serving = [m.worker_id for m in members if queue in m.queues]
            mine = {p for p, w in assign(serving, queue, partitions).items() if w == me.worker_id}
            for partition in range(partitions):
                key = (queue, partition)
                lease = self.leases.get(key)
                if lease is not None and partition not in mine:
                    await self.worker.release_partition(queue, partition)
                    await owners.release(lease)
                    del self.leases[key]
                    released.append(f"{queue}/{partition}")
                elif lease is not None:
                    renewed = await owners.renew(lease, ttl)
                    if renewed is None:
                        del self.leases[key]
                        log.warning(
                            "worker %s lost partition %s/%d to another worker (its lease "
                            "expired before it was renewed); stopped its workflows here",
                            self.worker_id,
                            queue,
                            partition,
                        )
                        await self.worker.release_partition(queue, partition)
                    else:
                        self.leases[key] = renewed
                        if not self.worker.owns(queue, partition):
                            # an earlier round failed between taking the lease and opening
                            # the partition's consumer: finish the claim now
                            await self.worker.claim_partition(queue, partition)
                            claimed.append(f"{queue}/{partition}")
                elif partition in mine:
                    got = await owners.acquire(queue, partition, me.worker_id, ttl)
                    if got is not None:
                        self.leases[key] = got
                        await self.worker.claim_partition(queue, partition)
                        claimed.append(f"{queue}/{partition}")
                    else:
                        # still held (a dead worker's lease not expired yet, or an owner
                        # handing it over): try again when that lease expires
                        held = await owners.get_lease(queue, partition)
                        if held is not None:
                            self._note_change(held.expires_at)
        if claimed:
            # the first claim is what the worker starts with (``riverrun worker`` prints it);
            # every later change is news
            level = logging.INFO if self._rounds else logging.DEBUG
            log.log(level, "worker %s claimed partitions %s", self.worker_id, ", ".join(claimed))
        self._rounds += 1
        if released:
            log.info("worker %s released partitions %s", self.worker_id, ", ".join(released))

    async def leave(self) -> None:
        """Hand every partition back and leave the membership (the worker stops)."""
        owners = self.services.backend.owners
        released = []
        for (queue, partition), lease in sorted(self.leases.items()):
            await self.worker.release_partition(queue, partition)
            try:
                await owners.release(lease)
            except Exception as exc:
                log.warning("worker %s: could not release %s/%d: %s", self.worker_id, queue, partition, exc)
            released.append(f"{queue}/{partition}")
        self.leases.clear()
        try:
            await owners.leave(self.worker_id)
        except Exception as exc:
            log.warning("worker %s: could not leave the membership: %s", self.worker_id, exc)
        if released:
            log.info("worker %s released partitions %s", self.worker_id, ", ".join(released))
