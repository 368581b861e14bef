"""Long-running sync: copy changed records from one system to another, page by page.

The workflow opts into ``auto_continue_as_new``: when its history passes the limits, the
runtime continues it as new at its next await, passing the run's argument objects as they are
at that moment. So all progress lives in the mutable ``state`` argument and is written there
before the next await; nothing the next run needs is kept only in a local variable. The start
time comes from a step, because workflow code must not read the clock itself.

    python examples/long_running_sync.py
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio

from riverrun import HistoryLimits, Runtime, step, workflow

#: the source system: 115 changed records, read in pages of 10 behind a cursor
SOURCE = [{"id": i, "name": f"customer {i}"} for i in range(115)]
TARGET: dict[int, dict[str, Any]] = {}


@step()
async def now() -> str:
    return datetime.now(UTC).isoformat()


@step()
async def fetch_changes(cursor: int, limit: int) -> list[dict[str, Any]]:
    return SOURCE[cursor : cursor + limit]


@step()
async def upsert(records: list[dict[str, Any]]) -> int:
    for record in records:
        TARGET[record["id"]] = record
    return len(records)


@workflow(auto_continue_as_new=True)
async def sync(state: dict[str, Any]) -> dict[str, Any]:
    if state["started_at"] is None:
        state["started_at"] = await now()
    while True:
        records = await fetch_changes(state["cursor"], 10)
        if not records:
            return state
        state["synced"] += await upsert(records)
        state["cursor"] += len(records)  # progress committed before the next await


async def main() -> None:
    limits = HistoryLimits(max_events=10)  # default: 10,000 events / 10 MiB
    async with Runtime.embedded(workflows=[sync], history_limits=limits) as rt:
        handle = await rt.client.start(
            sync, {"cursor": 0, "synced": 0, "started_at": None}, workflow_id="crm-sync"
        )
        result = await handle.result(timeout=60)
        print(f"result: synced {result['synced']} records, cursor {result['cursor']}")
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        for run in chain[:-1]:
            link = (await rt.client.events(run.run_id))[-1]
            print(
                f"run {run.execution}: {link.data['reason']}, carried {dict(link.data['args'][0])}"
            )
        print(f"run {chain[-1].execution}: {chain[-1].status.value}")
        print("runs:", len(chain))
        print("target matches source:", list(TARGET.values()) == SOURCE)


if __name__ == "__main__":
    anyio.run(main)
