"""A recurring job: a daily report, one run per day, on a virtual clock.

Each run generates the day's report, sleeps 24 hours (a durable timer) and continues as new
for the next day. A week of virtual time passes in well under a second because the runtime
comes from ``riverrun.testing.open_test_runtime``: an in-memory runtime whose clock jumps to
the next timer whenever everything is idle. With ``Runtime.embedded()`` or
``Runtime.connect()`` the same workflow sleeps for real, and its timers survive restarts.

    python examples/recurring.py
"""

from __future__ import annotations

import time

import anyio

from riverrun import continue_as_new, sleep, step, workflow
from riverrun.testing import VirtualClock, open_test_runtime

CLOCK = VirtualClock()
#: reports "sent", with the (virtual) time each was generated
SENT: list[str] = []


@step()
async def generate_report(day: int) -> str:
    # a step may read the clock: its result is recorded, so replay sees the same value
    report = f"day {day} report at {CLOCK.now():%Y-%m-%d %H:%M}"
    SENT.append(report)
    return report


@workflow()
async def daily_report(day: int = 1, last_day: int = 7) -> str:
    await generate_report(day)
    if day == last_day:
        return f"sent {day} daily reports"
    await sleep("24h")
    continue_as_new(day=day + 1, last_day=last_day)


async def main() -> None:
    started = time.monotonic()
    async with open_test_runtime([daily_report], clock=CLOCK) as rt:
        handle = await rt.client.start(daily_report, workflow_id="daily-report")
        print("result:", await handle.result(timeout=30))
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
    for report in SENT:
        print(report)
    print("runs:", len(chain), "statuses:", " ".join(r.status.value for r in chain))
    print(
        f"virtual time now {CLOCK.now():%Y-%m-%d %H:%M}, real time {time.monotonic() - started:.2f}s"
    )


if __name__ == "__main__":
    anyio.run(main)
