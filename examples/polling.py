"""Polling: check an external feed on an interval, for as long as it has updates.

The workflow polls in a loop and sleeps (a durable timer) between polls. It does not continue
as new after every poll: it keeps going until riverrun suggests it
(``info().continue_as_new_suggested``), then carries its cursor and counters into a fresh run.
The history limit is set very low here so that the example shows a few continuations.

    python examples/polling.py
"""

from __future__ import annotations

import anyio

from riverrun import HistoryLimits, Runtime, continue_as_new, info, sleep, step, workflow

#: the "remote API": pages of updates behind a cursor; the last page has no next cursor
PAGES: dict[str, tuple[list[str], str | None]] = {
    f"c{i}": ([f"update-{i}-{j}" for j in range(i % 3)], f"c{i + 1}" if i < 9 else None)
    for i in range(10)
}
APPLIED: list[str] = []


@step()
async def check_for_updates(cursor: str) -> tuple[list[str], str | None]:
    return PAGES[cursor]


@step()
async def apply_update(update: str) -> None:
    APPLIED.append(update)


@workflow()
async def poller(cursor: str = "c0", polls: int = 0, applied: int = 0) -> str:
    while True:
        updates, next_cursor = await check_for_updates(cursor)
        polls += 1
        for update in updates:
            await apply_update(update)
            applied += 1
        if next_cursor is None:
            return f"{polls} polls, {applied} updates applied"
        cursor = next_cursor
        await sleep("100ms")  # the poll interval; a durable timer
        if info().continue_as_new_suggested:
            continue_as_new(cursor=cursor, polls=polls, applied=applied)


async def main() -> None:
    limits = HistoryLimits(max_events=12)  # default: 10,000 events / 10 MiB
    async with Runtime.embedded(workflows=[poller], history_limits=limits) as rt:
        handle = await rt.client.start(poller, workflow_id="poller-1")
        print("result:", await handle.result(timeout=60))
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        for run in chain:
            print(f"run {run.execution}: {run.status.value}")
        print("runs:", len(chain))
        print("applied in order:", sorted(APPLIED, key=lambda u: int(u.split("-")[1])) == APPLIED)


if __name__ == "__main__":
    anyio.run(main)
