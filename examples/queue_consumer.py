"""A queue consumer: handle messages sent as signals, continuing as new every 10 messages.

Producers ``signal`` the workflow; it takes the messages in order with ``wait_for_signal``,
processes each with a step, and continues as new after every 10 so that its history stays
small. Messages that arrive while it hands over are not lost: those already recorded but not
consumed ride in the new run's first event, the rest wait in the inbox past its cursor. A
``None`` payload tells the consumer to stop.

    python examples/queue_consumer.py
"""

from __future__ import annotations

from typing import Any

import anyio

from riverrun import Retention, Runtime, continue_as_new, step, wait_for_signal, workflow

PER_RUN = 10
HANDLED: list[int] = []


@step()
async def handle_message(message: dict[str, Any]) -> int:
    HANDLED.append(message["n"])
    return int(message["n"])


@workflow()
async def consumer(handled: int = 0, checksum: int = 0) -> str:
    for _ in range(PER_RUN):
        message = await wait_for_signal("message")
        if message is None:
            return f"handled {handled} messages, checksum {checksum}"
        checksum += await handle_message(message)
        handled += 1
    continue_as_new(handled=handled, checksum=checksum)


async def main() -> None:
    # keep every run's full history, to show what each run received
    async with Runtime.embedded(workflows=[consumer], retention=Retention(keep_last=10)) as rt:
        handle = await rt.client.start(consumer, workflow_id="consumer-1")
        for n in range(1, 26):
            await handle.signal("message", {"n": n})
        await handle.signal("message", None)
        print("result:", await handle.result(timeout=60))
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        for run in chain:
            first = (await rt.client.events(run.run_id))[0]
            carried = len(first.data.get("pending_signals") or [])
            print(f"run {run.execution}: {run.status.value:<16} carried-in signals: {carried}")
        print("runs:", len(chain))
        print("handled in order:", list(range(1, 26)) == HANDLED)


if __name__ == "__main__":
    anyio.run(main)
