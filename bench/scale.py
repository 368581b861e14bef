"""Scale: many workflows parked on a timer + signal on one worker, passivated out of memory.

Starts N workflows (default 100,000) that each wait for a signal with a 1-day timeout (a
durable timer), lets the worker passivate them, prints the process RSS against the RSS of
the same process before the first start (the baseline measured in this run), then wakes
10,000 of them by signal and prints how long until all 10,000 results are in, against the
time of the same number of raw JetStream publishes.

The embedded server runs with the default fsync interval here (not "always"): this measures
riverrun's memory and CPU, not the disk.

Usage: python bench/scale.py [--count N] [--wake N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from datetime import timedelta
from typing import Any

import anyio
import nats

from riverrun import Runtime, wait_for_signal, workflow


@workflow()
async def parked(i: int) -> int:
    got = await wait_for_signal("wake", timeout="1d")
    return int(got) + i


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def raw_publishes(url: str, count: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH_SCALE_RAW", subjects=["bench.scale.>"])
    start = time.perf_counter()
    for i in range(count):
        await js.publish(f"bench.scale.{i % 100}", b"x" * 40)
    elapsed = time.perf_counter() - start
    await js.delete_stream("BENCH_SCALE_RAW")
    await nc.close()
    return elapsed


async def main(count: int, wake: int) -> None:
    gc.collect()
    async with Runtime.embedded(
        workflows=[parked], sync_interval=None, passivate_after=timedelta(seconds=2)
    ) as rt:
        assert rt.worker is not None and rt.url is not None
        worker = rt.worker
        baseline = rss_mib()
        print(f"baseline RSS (runtime up, no workflow): {baseline:.0f} MiB")

        start = time.perf_counter()
        handles: list[Any] = []
        limiter = anyio.CapacityLimiter(200)

        async def start_one(i: int) -> None:
            async with limiter:
                handles.append(await rt.client.start(parked, i, workflow_id=f"park-{i}"))

        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(start_one, i)
        started = time.perf_counter() - start
        print(f"started {count:,} workflows in {started:.1f}s ({count / started:.0f}/s)")

        peak = rss_mib()
        deadline = time.perf_counter() + 600
        while worker.statistics().active and time.perf_counter() < deadline:
            await anyio.sleep(0.5)
            peak = max(peak, rss_mib())
        gc.collect()
        stats = worker.statistics()
        after = rss_mib()
        print(f"passivated: active={stats.active} passivated={stats.passivated:,}; "
              f"RSS peak {peak:.0f} MiB, after passivation {after:.0f} MiB "
              f"= {after / baseline:.2f}x baseline, {after - baseline:.0f} MiB for {count:,} "
              f"parked workflows (target <= 1024 MiB)")

        raw = await raw_publishes(rt.url, wake)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for h in handles[:wake]:
                tg.start_soon(h.signal, "wake", 1)
        async with anyio.create_task_group() as tg:
            for h in handles[:wake]:
                tg.start_soon(h.result)
        woke = time.perf_counter() - start
        print(f"woke {wake:,} by signal, all results in: {woke:.1f}s "
              f"({wake / woke:.0f}/s) = {woke / raw:.1f}x {wake:,} sequential raw publishes "
              f"({raw:.2f}s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--wake", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="2,000 workflows, wake 500")
    ns = parser.parse_args()
    if ns.quick:
        ns.count, ns.wake = 2_000, 500
    anyio.run(main, ns.count, ns.wake)
