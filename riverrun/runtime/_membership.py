"""Membership: which workers are alive, what they serve, and who gets which partition.

Design note. Every worker records itself (a ``Member``: id, host, queues, registered types,
expiry) each third of the lease TTL; a member whose record expired is gone. The partitions of
a queue are assigned over its live members deterministically, so every worker computes the
same assignment from the same view: rendezvous hashing (each partition ranks the members by a
hash of (member, queue, partition)), each member taking at most its fair share (the counts
differ by at most one), which keeps the queue balanced and moves few partitions when a member
joins or leaves.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import attrs

from ..persistence import Member

if TYPE_CHECKING:
    from ._services import Services

__all__ = ["MembersCache", "assign", "describe_hosting", "live_members", "note_unserved", "unserved"]

log = logging.getLogger("riverrun.client")


def assign(members: Iterable[str], queue: str, partitions: int) -> dict[int, str]:
    """Partition → worker id for one queue over its live members (deterministic)."""
    ids = sorted(set(members))
    if not ids:
        return {}
    # each member gets base or base + 1 partitions; `extra` of them get the one more
    base, extra = divmod(partitions, len(ids))
    load = dict.fromkeys(ids, 0)
    out: dict[int, str] = {}
    for partition in range(partitions):
        ranked = sorted(ids, key=lambda m: _score(m, queue, partition), reverse=True)
        for member in ranked:
            if load[member] < base or (load[member] == base and extra > 0):
                if load[member] == base:
                    extra -= 1
                out[partition] = member
                load[member] += 1
                break
    return out


def _score(member: str, queue: str, partition: int) -> bytes:
    return hashlib.blake2b(f"{member}/{queue}/{partition}".encode(), digest_size=8).digest()


def live_members(members: Sequence[Member], services: Services) -> list[Member]:
    now = services.clock.now()
    return [m for m in members if m.expires_at > now]


@attrs.define(eq=False)
class MembersCache:
    """The namespace's live members as last read, refreshed at most every ``max_age`` s."""

    members: list[Member] = attrs.field(factory=list)
    read_at: float = -math.inf

    async def get(self, services: Services, max_age: float) -> list[Member]:
        if time.monotonic() - self.read_at > max_age:
            self.members = await services.backend.owners.members()
            self.read_at = time.monotonic()
        return live_members(self.members, services)


async def note_unserved(services: Services, queue: str, name: str, workflow_id: str) -> str | None:
    """Say (log WARNING) that a started workflow's queue has no live worker, or none that
    registers its type; returns what was said, ``None`` if it is served. Costs a read of
    the members at most every third of the lease TTL, none when a worker here serves it."""
    if services.local_worker and queue in services.served_queues and name in services.registry:
        return None
    ttl = services.options.lease_ttl.total_seconds()
    members = await services.members_cache.get(services, ttl / 3)
    problem = unserved(members, queue, name)
    if problem is not None:
        log.warning("workflow %s (%s): %s", workflow_id, name, problem)
    return problem


def unserved(members: Sequence[Member], queue: str, name: str) -> str | None:
    serving = [m for m in members if queue in m.queues]
    if not serving:
        return (
            f"no live worker serves queue {queue!r}: the workflow waits until one starts "
            f"(riverrun worker --queue {queue})"
        )
    if not any(name in m.workflows for m in serving):
        return (
            f"no live worker of queue {queue!r} registers workflow {name!r}: the workflow "
            "waits until one does"
        )
    return None


async def describe_hosting(services: Services, workflow_id: str, queue: str, name: str) -> str:
    """Where a running chain is hosted, for ``riverrun runs show``: the owner of its
    partition's lease (worker id, host, pid), or why nobody hosts it."""
    owners = services.backend.owners
    partition = services.partition_of(workflow_id)
    members = live_members(await owners.members(), services)
    problem = unserved(members, queue, name)
    where = f"queue {queue!r}, partition {partition}"
    if problem is not None:
        return f"{where}: {problem}"
    lease = await owners.get_lease(queue, partition)
    if lease is None or not lease.owner or lease.expires_at <= services.clock.now():
        return f"{where}: no worker holds the partition now (a live worker claims it shortly)"
    member = next((m for m in members if m.worker_id == lease.owner), None)
    if member is None:
        return (
            f"{where}: held by worker {lease.owner}, which is no longer live (another "
            "worker claims it once its lease expires)"
        )
    return f"{where}: hosted by worker {member.worker_id} on {member.host} (pid {member.pid})"
