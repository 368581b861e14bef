"""Workflow benchmarks on the embedded default (nats-server, sync every write).

Prints, in one run, a raw-JetStream baseline and:
  W1  one workflow of 1,000 sequential steps      vs 1,000 raw awaited js.publish
  W2  10 steps then continue-as-new, until 1,000 steps (100 runs)
  W3  500 workflows of 5 steps started at once     (workflows/s)
  R   replay time of the current run after N lifetime events (continuing every 1,000)
      vs replay of a lone run of 1,000 events

Usage: python bench/workflows.py [--quick] [--lifetime-events N]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
import nats

from riverrun import Runtime, continue_as_new, step, workflow
from riverrun.persistence import RunKey


@step()
async def work(i: int) -> int:
    return i + 1


@workflow()
async def sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total += await work(i)
    return total


@workflow()
async def chunked(done: int, total: int, per_run: int) -> int:
    for _ in range(per_run):
        if done >= total:
            return done
        await work(done)
        done += 1
    if done >= total:
        return done
    continue_as_new(done, total, per_run)


async def raw_baseline(url: str, count: int) -> float:
    """Seconds for ``count`` awaited js.publish calls to a file stream, same server."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH_RAW", subjects=["bench.raw.>"])
    payload = b"\x85" + b"x" * 60  # about the size of a step.completed event
    headers = {"Nats-Msg-Id": "", "Nats-Expected-Last-Subject-Sequence": "0"}
    start = time.perf_counter()
    last = 0
    for i in range(count):
        headers = {
            "Nats-Msg-Id": f"raw-{i}",
            "Nats-Expected-Last-Subject-Sequence": str(last),
        }
        ack = await js.publish("bench.raw.run", payload, headers=headers)
        last = ack.seq
    elapsed = time.perf_counter() - start
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return elapsed


async def replay_seconds(rt: Runtime, workflow_id: str, run_id: str, repeat: int = 5) -> float:
    """Best of ``repeat`` full replays of one run (read + decode + apply)."""
    from riverrun.runtime._instance import WorkflowInstance

    services = rt._services
    assert services is not None
    best = float("inf")
    for _ in range(repeat):
        instance = WorkflowInstance(services, workflow_id)
        start = time.perf_counter()
        machine = await instance._load(run_id)
        best = min(best, time.perf_counter() - start)
        assert machine.definition is not None
    return best


async def main(quick: bool, lifetime_events: int) -> None:
    steps = 300 if quick else 1_000
    w3_count = 100 if quick else 500
    async with Runtime.embedded(workflows=[sequential, chunked]) as rt:
        assert rt.url is not None
        raw = await raw_baseline(rt.url, steps)
        print(f"raw: {steps} awaited js.publish (sync always): {raw:.3f}s "
              f"({raw / steps * 1e3:.3f} ms each)")

        handle = await rt.client.start(sequential, 5)  # warm-up
        await handle.result()

        start = time.perf_counter()
        handle = await rt.client.start(sequential, steps)
        await handle.result()
        w1 = time.perf_counter() - start
        print(f"W1: 1 workflow x {steps} steps: {w1:.3f}s = {w1 / raw:.2f}x raw (target <= 1.25x)")

        start = time.perf_counter()
        handle = await rt.client.start(chunked, 0, steps, 10)
        await handle.result()
        w2 = time.perf_counter() - start
        runs = len(await rt.client.get_workflow_chain(handle.first_run_id))
        print(f"W2: {steps} steps in {runs} runs (continue-as-new every 10): {w2:.3f}s "
              f"= {w2 / raw:.2f}x raw (target <= 0.7s at 1,000 steps)")

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            handles: list[Any] = []

            async def start_one(i: int) -> None:
                handles.append(await rt.client.start(sequential, 5))

            for i in range(w3_count):
                tg.start_soon(start_one, i)
        async with anyio.create_task_group() as tg:
            for h in handles:
                tg.start_soon(h.result)
        w3 = time.perf_counter() - start
        per_wf_raw = raw / steps * 7  # ~7 log writes per 5-step workflow
        print(f"W3: {w3_count} workflows x 5 steps at once: {w3:.3f}s = "
              f"{w3_count / w3:.0f} workflows/s (target >= 2,000/s); "
              f"raw floor for the same 7 appends each, sequential: "
              f"{w3 / (per_wf_raw * w3_count):.2f}x")

        # Replay: a lone run of 1,000 events vs the current run after many continuations.
        lone = await rt.client.start(sequential, 998)  # started + 998 steps + completed
        await lone.result()
        lone_run = (await lone.describe()).run_id
        lone_events = len(await rt.backend.events.read(RunKey(workflow_id=lone.workflow_id,
                                                                run_id=lone_run)))
        # The chain: each run is started + 998 steps + its terminal event = 1,000 events, and
        # the last run is a full one too, so it compares like for like with the lone run.
        steps_per_run = 998
        runs_wanted = max(lifetime_events // 1_000, 2)
        start = time.perf_counter()
        long = await rt.client.start(chunked, 0, runs_wanted * steps_per_run, steps_per_run)
        await long.result()
        build = time.perf_counter() - start
        chain = await rt.client.get_workflow_chain(long.first_run_id)
        last = chain[-1]
        key = RunKey(workflow_id=long.workflow_id, run_id=last.run_id)
        last_events = len(await rt.backend.events.read(key))
        t_lone = await replay_seconds(rt, lone.workflow_id, lone_run)
        t_long = await replay_seconds(rt, long.workflow_id, last.run_id)
        print(f"R: lifetime {len(chain) * 1_000:,} events over {len(chain)} runs "
              f"(built in {build:.1f}s); replay of the current run ({last_events} events): "
              f"{t_long * 1e3:.1f} ms vs a lone run ({lone_events} events): "
              f"{t_lone * 1e3:.1f} ms = {t_long / t_lone:.2f}x (target <= 1.1x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--lifetime-events", type=int, default=None)
    ns = parser.parse_args()
    lifetime = ns.lifetime_events or (20_000 if ns.quick else 1_000_000)
    anyio.run(main, ns.quick, lifetime)
