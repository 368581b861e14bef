"""Batch processing: work through a data set in chunks, one run per chunk.

Each run fetches one batch, processes it, and continues as new with the next offset, so no
run's history grows with the size of the data set. The chain ends when a fetch comes back
empty. Earlier runs are truncated to their link event after each hand-over; the output shows
it.

    python examples/batch.py
"""

from __future__ import annotations

import anyio

from riverrun import RetryPolicy, Runtime, continue_as_new, step, workflow

#: the "database": 1,000 rows
ROWS = [{"id": i, "amount": i % 7} for i in range(1_000)]


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.1))
async def fetch_batch(offset: int, size: int) -> list[dict[str, int]]:
    return ROWS[offset : offset + size]


@step()
async def process_batch(rows: list[dict[str, int]]) -> int:
    # stands in for real work (writes to another system); returns the batch's total
    return sum(row["amount"] for row in rows)


@workflow()
async def batch_processor(offset: int = 0, batch_size: int = 250, total: int = 0) -> str:
    rows = await fetch_batch(offset, batch_size)
    if not rows:
        return f"Processed {offset} items, total amount {total}"
    total += await process_batch(rows)
    continue_as_new(offset=offset + len(rows), batch_size=batch_size, total=total)


async def main() -> None:
    async with Runtime.embedded(workflows=[batch_processor]) as rt:
        handle = await rt.client.start(batch_processor, workflow_id="batch-1")
        print("result:", await handle.result(timeout=60))
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        for run in chain:
            events = await rt.client.events(run.run_id)
            print(
                f"run {run.execution}: {run.status.value:<16} "
                f"{len(events)} event(s) kept: {', '.join(e.type.value for e in events)}"
            )
        print("runs:", len(chain))


if __name__ == "__main__":
    anyio.run(main)
