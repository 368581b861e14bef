"""Resuming a claimed partition: every running chain of its index is hosted again.

Design note. A worker that claims a partition (at start, on a hand-over, or after another
worker died) resumes the chains listed in the partition's index of running workflows, which
is also the orphan scan. That runs in a task of its own, not in the ownership round that
claimed the partition: a partition may hold thousands of chains, and the round must go on
renewing this worker's other leases meanwhile (a round longer than the lease TTL would let
its leases expire). Listing the index is retried with backoff while the store is unreachable
(logged, with the partition), for as long as this worker owns the partition.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["resume_partition"]

log = logging.getLogger("riverrun.worker")


async def resume_partition(
    worker: Worker, queue: str, partition: int, claim: anyio.CancelScope
) -> None:
    """Host every chain in the index of ``queue``/``partition`` while ``claim`` (the scope
    of the partition's inbox consumer) is the partition's current claim."""
    services = worker.services
    delay = services.options.restart_backoff
    while worker.claim_of(queue, partition) is claim:
        try:
            listed = await services.backend.owners.index_list(queue, partition)
        except Exception as exc:
            log.warning(
                "worker %s: could not list the running workflows of partition %s/%d to "
                "resume them (retrying in %.2fs): %s",
                services.worker_id,
                queue,
                partition,
                delay,
                exc,
            )
            await anyio.sleep(delay)
            delay = min(delay * 2, services.options.restart_backoff_max)
            continue
        for workflow_id, _ in listed:
            # (deliver skips them once the partition is handed over meanwhile)
            await worker.deliver(workflow_id, None, queue=queue)
        return
