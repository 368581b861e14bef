"""Fan-out/fan-in, a race, and bounded parallelism: concurrency in workflow code.

A workflow prices 20 items at once (``asyncio.gather`` over a step: the steps run together on
the worker), then waits for an approval signal or a timeout, whichever comes first, and ships
the items through at most 3 steps at a time (``asyncio.Semaphore``). The history holds each
step once, whatever order the results came in; replay follows that recorded order.

    python examples/fan_out.py
"""

from __future__ import annotations

import asyncio

import anyio

from riverrun import EventType, Runtime, sleep, step, wait_for_signal, workflow

RUNNING = 0
PEAK: dict[str, int] = {"price": 0, "ship": 0}


async def _busy(kind: str) -> None:
    global RUNNING
    RUNNING += 1
    PEAK[kind] = max(PEAK[kind], RUNNING)
    try:
        await anyio.sleep(0.05)  # the remote call
    finally:
        RUNNING -= 1


@step()
async def price(item: int) -> int:
    await _busy("price")
    return 10 + item


@step()
async def ship(item: int) -> str:
    await _busy("ship")
    return f"item-{item}"


@workflow()
async def order(items: list[int]) -> dict[str, object]:
    # fan-out/fan-in: every price in flight at once, results in argument order
    prices = await asyncio.gather(*(price(i) for i in items))

    # a race: the approval signal against a one-hour timer; the loser is cancelled
    approval = asyncio.create_task(wait_for_signal("approve"))
    deadline = asyncio.create_task(sleep("1h"))
    done, pending = await asyncio.wait({approval, deadline}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if approval not in done:
        return {"status": "expired"}

    # bounded parallelism: at most three shipments at a time
    gate = asyncio.Semaphore(3)

    async def ship_one(item: int) -> str:
        async with gate:
            return await ship(item)

    shipped = await asyncio.gather(*(ship_one(i) for i in items))
    return {"status": "shipped", "total": sum(prices), "shipped": len(shipped)}


async def main() -> None:
    async with Runtime.in_memory(workflows=[order]) as rt:
        handle = await rt.client.start(order, list(range(20)), workflow_id="order-1")
        await handle.signal("approve", "ok")
        print("result:", await handle.result(timeout=60))
        types = [e.type for e in await handle.events()]
        print("steps completed:", types.count(EventType.STEP_COMPLETED))
        print("prices in flight together:", PEAK["price"] > 1)
        print("shipments at once at most 3:", PEAK["ship"] <= 3)


if __name__ == "__main__":
    anyio.run(main)
