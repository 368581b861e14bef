"""Ownership traffic at idle: 10,000 running, non-passivated workflows on one worker.

Starts an embedded nats-server and one worker (passivation off, so every workflow stays in
memory), starts N workflows (default 10,000) that each wait for a signal, waits until all are
hosted and idle, then counts, over a window of two lease periods, every request the process
sends to JetStream: KV puts/updates/creates (``$KV.>``), direct and message gets, purges,
consumer and stream calls (``$JS.API.>``). They are counted from outside the runtime, by a
separate NATS connection subscribed to those subjects (it sees every publish and request),
not by riverrun's own counters. It prints the operations per second against the target
(<= 10/s) and against a baseline computed for the same run: what per-workflow leases would
cost (N renewals per ttl/3), and the raw KV put rate measured on the same server. The
server's idle heartbeats to the partitions' inbox consumers (server to worker, one per second
per owned partition) are printed apart: they are no KV operations.

Then it stops the worker (it hands its partitions back) and starts a fresh one on the same
server: the time from its start to all N workflows hosted again (claiming the partitions
resumes them from each partition's index of running workflows) and to all N replayed.

The server runs at the default fsync interval (not "always"): this measures traffic, not disk.

Usage: python bench/ownership.py [--count N] [--lease-ttl SECONDS] [--window SECONDS] [--quick]
  --quick: 2,000 workflows, lease TTL 6 s (a 12 s window)
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import nats
from nats.aio.msg import Msg

from riverrun import Runtime, wait_for_signal, workflow
from riverrun.persistence._embedded import EmbeddedNatsServer

TARGET = 10.0


@workflow()
async def idle(i: int) -> int:
    got = await wait_for_signal("wake")
    return int(got) + i


class Traffic:
    """Every publish on ``$KV.>`` and request on ``$JS.API.>``, and the idle heartbeats
    on reply subjects, seen by a connection of its own."""

    def __init__(self) -> None:
        self.ops: collections.Counter[str] = collections.Counter()
        self.heartbeats = 0
        self.counting = False

    async def open(self, url: str) -> nats.NATS:
        nc = await nats.connect(url)
        await nc.subscribe("$KV.>", cb=self._kv)
        await nc.subscribe("$JS.API.>", cb=self._api)
        await nc.subscribe("_INBOX.>", cb=self._inbox)
        await nc.flush()
        return nc

    def start(self) -> None:
        self.ops.clear()
        self.heartbeats = 0
        self.counting = True

    def stop(self) -> None:
        self.counting = False

    async def _kv(self, msg: Msg) -> None:
        if self.counting:
            # $KV.<bucket>.<key...>: the bucket and the key's first token
            tokens = msg.subject.split(".")
            self.ops[f"KV put {tokens[1]} {tokens[2] if len(tokens) > 2 else ''}".rstrip()] += 1

    async def _api(self, msg: Msg) -> None:
        if self.counting:
            # $JS.API.DIRECT.GET.KV_x..., $JS.API.STREAM.PURGE.KV_x, $JS.API.CONSUMER...
            tokens = msg.subject.split(".")
            verb = ".".join(t for t in tokens[2:5] if not t.startswith(("KV_", "RR")))
            stream = next((t for t in tokens[3:] if t.startswith("KV_")), "")
            self.ops[f"API {verb} {stream}".rstrip()] += 1

    async def _inbox(self, msg: Msg) -> None:
        if self.counting and msg.headers and msg.headers.get("Status") == "100":
            self.heartbeats += 1

    @property
    def total(self) -> int:
        return sum(self.ops.values())


async def raw_kv_puts(url: str, count: int) -> float:
    """Sequential awaited KV puts per second on a scratch bucket of the same server."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="BENCH_OWNERSHIP_RAW", history=1)
    begin = time.perf_counter()
    for i in range(count):
        await kv.put(f"k{i % 16}", b"x" * 60)
    elapsed = time.perf_counter() - begin
    await js.delete_key_value("BENCH_OWNERSHIP_RAW")
    await nc.close()
    return count / elapsed


def replayed(rt: Runtime) -> int:
    """Hosted workflows whose run is replayed (waiting for their signal)."""
    worker: Any = rt.worker
    return sum(1 for a in list(worker._actors.values()) if a.instance.machine is not None)


async def wait_for(what: str, check: Any, timeout: float) -> float:
    begin = time.perf_counter()
    with anyio.fail_after(timeout):
        while not check():  # noqa: ASYNC110 - polling the worker's state
            await anyio.sleep(0.05)
    return time.perf_counter() - begin


async def main(count: int, ttl: float, window: float) -> None:
    options: dict[str, Any] = {
        "workflows": [idle],
        "namespace": "ownership",
        "passivate_after": None,
        "lease_ttl": timedelta(seconds=ttl),
    }
    with tempfile.TemporaryDirectory(prefix="riverrun-ownership-bench-") as tmp:
        server = EmbeddedNatsServer(data_dir=Path(tmp), sync_interval=None)
        server.start()
        try:
            url = server.url
            traffic = Traffic()
            watcher = await traffic.open(url)
            async with Runtime.connect(url, **options) as rt:
                assert rt.worker is not None
                partitions = sum(len(p) for p in rt.worker.partitions().values())
                begin = time.perf_counter()
                limiter = anyio.CapacityLimiter(200)

                async def start_one(i: int) -> None:
                    async with limiter:
                        await rt.client.start(idle, i, workflow_id=f"idle-{i}")

                async with anyio.create_task_group() as tg:
                    for i in range(count):
                        tg.start_soon(start_one, i)
                print(f"started {count:,} workflows in {time.perf_counter() - begin:.1f}s; "
                      f"one worker owning {partitions} partitions, lease TTL {ttl:g}s, "
                      "passivation off")
                await wait_for("replayed", lambda: replayed(rt) >= count, 600)
                # let whatever the starts left behind settle: one renewal period
                await anyio.sleep(ttl / 3)
                active = rt.worker.statistics().active
                traffic.start()
                await anyio.sleep(window)
                traffic.stop()
                ops, heartbeats = traffic.total, traffic.heartbeats
                detail = sorted(traffic.ops.items(), key=lambda kv: -kv[1])
                print(f"idle window {window:g}s with {active:,} workflows in memory: "
                      f"{ops} JetStream operations = {ops / window:.2f}/s (target <= "
                      f"{TARGET:g}/s): {'OK' if ops / window <= TARGET else 'OVER TARGET'}")
                for what, n in detail:
                    print(f"    {n:6d}  {what}")
                print(f"    (not counted: {heartbeats} idle heartbeats from the server to the "
                      f"{partitions} inbox consumers = {heartbeats / window:.1f}/s)")
            await watcher.close()

            per_workflow = count / (ttl / 3)
            raw = await raw_kv_puts(url, 2_000)
            print(f"baseline, per-workflow leases for the same {count:,} workflows: "
                  f"{per_workflow:,.0f} renewals/s; ownership traffic = "
                  f"{ops / window / per_workflow:.4f}x that ({per_workflow * window / max(ops, 1):,.0f}x "
                  f"fewer operations)")
            print(f"baseline, raw KV puts on this server: {raw:,.0f}/s sequential; ownership "
                  f"traffic uses {ops / window / raw * 100:.3f}% of it")

            begin = time.perf_counter()
            async with Runtime.connect(url, **options) as rt:
                entered = time.perf_counter() - begin
                worker: Any = rt.worker
                hosted = await wait_for(
                    "hosted", lambda: worker.statistics().active >= count, 600
                ) + entered
                done = await wait_for("replayed", lambda: replayed(rt) >= count, 600) + hosted
                print(f"restart: a fresh worker on the same namespace hosted all {count:,} "
                      f"workflows {hosted:.2f}s after its start (its first ownership round "
                      f"took {entered:.2f}s), all replayed after {done:.2f}s "
                      f"({count / done:,.0f} workflows/s)")
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--lease-ttl", type=float, default=None,
                        help="seconds (default: RuntimeOptions().lease_ttl, 30)")
    parser.add_argument("--window", type=float, default=None,
                        help="seconds counted (default: two lease periods, 2 x TTL)")
    parser.add_argument("--quick", action="store_true", help="2,000 workflows, lease TTL 6 s")
    ns = parser.parse_args()
    if ns.quick:
        ns.count = 2_000
        ns.lease_ttl = ns.lease_ttl or 6.0
    ttl = ns.lease_ttl or 30.0
    anyio.run(main, ns.count, ttl, ns.window or 2 * ttl)
