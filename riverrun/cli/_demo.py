"""The workflow that ``riverrun demo`` runs: batch processing with continue-as-new.

One batch per run; after each batch the run continues as new with the next offset, so each
run's history stays a handful of events however many batches there are. It lives in its own
module so that ``riverrun worker riverrun.cli._demo`` can host it too, e.g. against
``riverrun dev`` (then ``riverrun start batch_processor '{"batches": 5}' --wait``).

``approval`` waits for a ``decision`` signal: a running workflow to signal, cancel or
terminate. Every example in docs/cli.md runs against this module.
"""

from __future__ import annotations

from typing import Any

import anyio.lowlevel

from riverrun import continue_as_new, step, wait_for_signal, workflow

__all__ = ["approval", "batch_processor", "process_batch"]


@step()
async def process_batch(batch: int, batch_size: int) -> int:
    """Process one batch of items; returns how many were processed."""
    items = range(batch * batch_size, (batch + 1) * batch_size)
    await anyio.lowlevel.checkpoint()  # a real step would call a database or an API here
    return len(items)


@workflow(name="batch_processor")
async def batch_processor(
    batch: int = 0, batches: int = 10, batch_size: int = 100, processed: int = 0
) -> str:
    """One batch per run; continue as new with the next batch until all are done."""
    processed += await process_batch(batch, batch_size)
    if batch + 1 >= batches:
        return f"Processed {processed} items in {batches} batches"
    continue_as_new(batch=batch + 1, batches=batches, batch_size=batch_size, processed=processed)


@workflow(name="approval")
async def approval(order: str) -> dict[str, Any]:
    """Wait for the ``decision`` signal about ``order`` and return it with the order."""
    decision = await wait_for_signal("decision")
    return {"order": order, "decision": decision}
