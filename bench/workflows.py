"""Workflow benchmarks on the embedded nats-server.

Prints, in one run, at both ``sync_interval="always"`` (the embedded default: fsync every
write) and the server's default sync (fsync every 2 minutes), each against raw-JetStream
floors measured on the same server in the same run:
  W1  one workflow of 1,000 sequential steps      vs 1,000 raw awaited, fenced js.publish
  W2  10 steps then continue-as-new, until 1,000 steps (100 runs)
      vs the appends the design needs, raw and back to back: 1,000 step appends, 100 link
      appends (fenced) and 100 first-event appends (expected last sequence 0); no batches
  W3  500 workflows of 5 steps started at once     (workflows/s, and Python CPU per workflow)
      vs 500 concurrent raw appenders doing 7 fenced appends each (the design's appends);
      twice: with the garbage-collector threshold `riverrun worker` sets, and with Python's
  C   W1 and W3 on the memory backend (no server, no I/O): the runtime's own ceiling
  R   replay time of the current run after N lifetime events (continuing every 1,000)
      vs replay of a lone run of 1,000 events
  T   W1 and W3 with metrics (OpenTelemetry SDK + Prometheus reader) and with tracing (SDK +
      in-memory span exporter) against both disabled, as ratios (needs riverrun[otel])
  G   (--gc-rounds N only) W3 N times in one process, Python CPU per workflow with Python's
      collector settings and with the threshold `riverrun worker` sets

Usage: python bench/workflows.py [--quick] [--lifetime-events N] [--telemetry-only] [--w4-only]
       python bench/workflows.py --only-w [--steps N] [--workflows N]   (W1-W3 and C only)
       python bench/workflows.py --gc-rounds N [--workflows N]           (G only)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
import uuid
from typing import Any

import anyio
import nats

from riverrun import Runtime, continue_as_new, step, workflow
from riverrun.cli._worker import DEFAULT_GC_THRESHOLD, tune_collector
from riverrun.persistence import RunKey

_PAYLOAD = b"\x85" + b"x" * 60  # about the size of a step.completed event


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


@step()
async def slow_work(i: int) -> int:
    await anyio.sleep(0.05)  # a 50 ms remote call
    return i


@workflow()
async def fan_out(n: int) -> int:
    return sum(await asyncio.gather(*(slow_work(i) for i in range(n))))


@workflow()
async def slow_sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total += await slow_work(i)
    return total


async def w4(rt: Runtime, n: int = 100) -> None:
    """W4: the fan-out against one 50 ms step plus ``n`` raw appends, and against sequential."""
    assert rt.url is not None

    async def timed(wf: Any, arg: int) -> float:
        start = time.perf_counter()
        handle = await rt.client.start(wf, arg)
        await handle.result()
        return time.perf_counter() - start

    await timed(fan_out, 5)  # warm-up
    one = await timed(slow_sequential, 1)
    raw = await raw_baseline(rt.url, n)
    fan = await timed(fan_out, n)
    seq = await timed(slow_sequential, n)
    floor = one + raw
    print(f"W4: 1 workflow fanning out {n} steps of 50 ms: {fan:.3f}s = {fan / floor:.2f}x "
          f"(one 50 ms step {one:.3f}s + {n} raw appends {raw:.3f}s = {floor:.3f}s; target <= "
          f"1.5x); the same {n} steps sequentially: {seq:.3f}s ({seq / fan:.1f}x the fan-out)")


async def w4_only() -> None:
    """Only W4: ``--w4-only``."""
    async with Runtime.embedded(workflows=[fan_out, slow_sequential]) as rt:
        await w4(rt)


async def _raw_stream(url: str) -> tuple[Any, Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    # the same stream settings that matter as the events stream: file storage, atomic batches
    await nc.request(
        "$JS.API.STREAM.CREATE.BENCH_RAW",
        json.dumps({"name": "BENCH_RAW", "subjects": ["bench.raw.>"], "storage": "file",
                    "allow_atomic": True}).encode(),
    )
    return nc, js


async def _fenced(nc: Any, subject: str, msg_id: str, last: int) -> int:
    headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Last-Subject-Sequence": str(last)}
    reply = await nc.request(subject, _PAYLOAD, headers=headers, timeout=10)
    return int(json.loads(reply.data)["seq"])


async def raw_baseline(url: str, count: int) -> float:
    """Seconds for ``count`` awaited, fenced js.publish calls to a file stream, same server."""
    nc, js = await _raw_stream(url)
    start = time.perf_counter()
    last = 0
    for i in range(count):
        last = await _fenced(nc, "bench.raw.run", f"raw-{i}", last)
    elapsed = time.perf_counter() - start
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return elapsed


async def raw_batch_baseline(url: str, count: int) -> float:
    """Seconds for ``count`` sequential two-message atomic batches (the hand-over's write:
    an old subject's fenced terminal message and a new subject's first message)."""
    nc, js = await _raw_stream(url)
    start = time.perf_counter()
    last = 0
    for i in range(count):
        batch = uuid.uuid4().hex
        await nc.publish(f"bench.raw.b{i}", _PAYLOAD, headers={
            "Nats-Batch-Id": batch, "Nats-Batch-Sequence": "1", "Nats-Msg-Id": f"b{i}-old",
            "Nats-Expected-Last-Subject-Sequence": str(last)})
        reply = await nc.request(f"bench.raw.b{i + 1}", _PAYLOAD, timeout=10, headers={
            "Nats-Batch-Id": batch, "Nats-Batch-Sequence": "2", "Nats-Msg-Id": f"b{i}-new",
            "Nats-Batch-Commit": "1"})
        last = int(json.loads(reply.data)["seq"])
    elapsed = time.perf_counter() - start
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return elapsed


async def raw_handover_floor(url: str, steps: int, runs: int) -> float:
    """Seconds for W2's appends as the design makes them, raw and back to back: per run one
    first-event append (expected last sequence 0 on a new subject), its steps (fenced) and
    one link append (fenced); no atomic batches."""
    nc, js = await _raw_stream(url)
    per_run = max(steps // runs, 1)
    start = time.perf_counter()
    for r in range(runs):
        subject = f"bench.raw.h{r}"
        last = await _fenced(nc, subject, f"h{r}-1", 0)  # the run's first event
        for k in range(per_run):
            last = await _fenced(nc, subject, f"h{r}-s{k}", last)
        await _fenced(nc, subject, f"h{r}-link", last)  # the link: the hand-over's commit
    elapsed = time.perf_counter() - start
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return elapsed


async def raw_concurrent_baseline(url: str, workflows: int, appends: int) -> float:
    """Seconds for ``workflows`` concurrent tasks each making ``appends`` awaited, fenced
    publishes to its own subject: raw JetStream doing only W3's event writes."""
    nc, js = await _raw_stream(url)

    async def one(i: int) -> None:
        last = 0
        for k in range(appends):
            last = await _fenced(nc, f"bench.raw.w{i}", f"w{i}-{k}", last)

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(workflows):
            tg.start_soon(one, i)
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


async def w1_w2_w3(sync_interval: str | None, steps: int, w3_count: int) -> None:
    """W1, W2 and W3 on an embedded server with ``sync_interval``, each printed with its raw
    floor measured on that server in the same run."""
    label = f"sync {sync_interval}" if sync_interval else "server default sync"
    runs_w2 = max(steps // 10, 1)
    async with Runtime.embedded(
        workflows=[sequential, chunked], sync_interval=sync_interval
    ) as rt:
        assert rt.url is not None
        raw = await raw_baseline(rt.url, steps)
        raw_w2 = await raw_handover_floor(rt.url, steps, runs_w2)
        raw_w3 = await raw_concurrent_baseline(rt.url, w3_count, 7)
        raw_batch = await raw_batch_baseline(rt.url, 100)
        print(f"[{label}] raw: {steps} awaited, fenced js.publish: {raw:.3f}s "
              f"({raw / steps * 1e3:.3f} ms each); 100 two-message atomic batches (no longer "
              f"used, for reference): {raw_batch:.3f}s ({raw_batch / 100 * 1e3:.2f} ms each)")
        handle = await rt.client.start(sequential, 5)  # warm-up
        await handle.result()

        start = time.perf_counter()
        handle = await rt.client.start(sequential, steps)
        await handle.result()
        w1 = time.perf_counter() - start
        print(f"[{label}] W1: 1 workflow x {steps} steps: {w1:.3f}s = {w1 / raw:.2f}x raw "
              f"(target <= 1.10x)")

        start = time.perf_counter()
        handle = await rt.client.start(chunked, 0, steps, 10)
        await handle.result()
        w2 = time.perf_counter() - start
        runs = len(await rt.client.get_workflow_chain(handle.first_run_id))
        print(f"[{label}] W2: {steps} steps in {runs} runs (continue-as-new every 10): "
              f"{w2:.3f}s; raw floor ({steps} step appends + {runs_w2} link appends + "
              f"{runs_w2} first-event appends, no batches): {raw_w2:.3f}s, ratio "
              f"{w2 / raw_w2:.2f}x (target <= 1.15x)")

        # first with Python's collector setting, then with the one of a `riverrun worker`
        # process (the second run finds a larger heap: any bias is against the worker's)
        default = gc.get_threshold()
        for collector, threshold in (
            (f"gc threshold {default[0]}, Python's default", default[0]),
            (f"gc threshold {DEFAULT_GC_THRESHOLD}, as riverrun worker", DEFAULT_GC_THRESHOLD),
        ):
            await anyio.sleep(1)  # what the runs before still do in the background settles
            w3, cpu = await _w3(rt, w3_count, gc_threshold=threshold)
            print(f"[{label}] W3 ({collector}): {w3_count} workflows x 5 steps at once: "
                  f"{w3:.3f}s = {w3_count / w3:.0f} workflows/s; raw floor ({w3_count} "
                  f"concurrent appenders, 7 fenced appends each): {raw_w3:.3f}s = "
                  f"{w3_count / raw_w3:.0f}/s; {raw_w3 / w3:.2f}x the raw floor (target >= "
                  f"0.6x); Python CPU {cpu / w3_count * 1e3:.2f} ms per workflow (process CPU "
                  f"/ workflows; the embedded server is another process) (target <= 1.0 ms)")


async def runtime_alone(steps: int, w3_count: int, rounds: int = 3) -> None:
    """W1 and W3 on the memory backend: no server, no network, no fsync. What is left is the
    runtime's own Python (and the memory stores'): a ceiling no storage setting can lift."""
    w1_best = w3_best = cpu_best = float("inf")
    async with Runtime.in_memory(workflows=[sequential]) as rt:
        handle = await rt.client.start(sequential, 5)  # warm-up
        await handle.result()
        for _ in range(rounds):  # best of: the machine's noise only ever slows a round down
            start = time.perf_counter()
            handle = await rt.client.start(sequential, steps)
            await handle.result()
            w1_best = min(w1_best, time.perf_counter() - start)
            w3, cpu = await _w3(rt, w3_count, gc_threshold=DEFAULT_GC_THRESHOLD)
            w3_best, cpu_best = min(w3_best, w3), min(cpu_best, cpu)
    print(f"C: the runtime alone (memory backend: no server, no I/O), best of {rounds}: W1 "
          f"{w1_best / steps * 1e6:.0f} us per step; W3 ({w3_count} x 5 steps, gc threshold "
          f"{DEFAULT_GC_THRESHOLD}) {w3_count / w3_best:.0f} workflows/s, Python CPU "
          f"{cpu_best / w3_count * 1e3:.2f} ms per workflow")


async def gc_rounds(rounds: int, w3_count: int) -> None:
    """W3 again and again in one process (a worker's steady state), with Python's default
    collector settings and with the youngest generation's threshold ``riverrun worker``
    sets: Python CPU per workflow, median over the rounds, each setting in its own process
    state as far as one process allows (alternating rounds)."""
    default = gc.get_threshold()
    cpu: dict[int, list[float]] = {default[0]: [], DEFAULT_GC_THRESHOLD: []}
    async with Runtime.embedded(workflows=[sequential], sync_interval=None) as rt:
        await _w3(rt, w3_count)  # warm-up
        for _ in range(rounds):
            for threshold, figures in cpu.items():
                _, cpu_spent = await _w3(rt, w3_count, gc_threshold=threshold)
                figures.append(cpu_spent / w3_count * 1e3)
    python, worker = (statistics.median(cpu[t]) for t in (default[0], DEFAULT_GC_THRESHOLD))
    print(f"G: W3 x {rounds} rounds each (server default sync), Python CPU per workflow, "
          f"median: {python:.2f} ms with Python's collector settings, {worker:.2f} ms with "
          f"riverrun worker's (youngest generation every {DEFAULT_GC_THRESHOLD} allocations) "
          f"= {worker / python:.2f}x")


async def _w3(rt: Runtime, count: int, *, gc_threshold: int | None = None) -> tuple[float, float]:
    """``count`` workflows of 5 steps started at once and awaited: (seconds, process CPU);
    with ``gc_threshold``, the collector's youngest generation set as ``riverrun worker``
    sets it (``tune_collector``) for the while."""
    if gc_threshold is not None:
        default = gc.get_threshold()
        tune_collector(gc_threshold)
        try:
            return await _w3(rt, count)
        finally:
            gc.set_threshold(*default)
    cpu = time.process_time()
    start = time.perf_counter()
    handles: list[Any] = []

    async def start_one() -> None:
        handles.append(await rt.client.start(sequential, 5))

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(start_one)
    async with anyio.create_task_group() as tg:
        for h in handles:
            tg.start_soon(h.result)
    return time.perf_counter() - start, time.process_time() - cpu


async def main(quick: bool, lifetime_events: int, only_w: bool, steps: int | None,
               workflows: int | None) -> None:
    steps = steps or (300 if quick else 1_000)
    w3_count = workflows or (100 if quick else 500)
    for sync_interval in ("always", None):
        await w1_w2_w3(sync_interval, steps, w3_count)
    await runtime_alone(steps, w3_count)
    if only_w:
        return
    async with Runtime.embedded(workflows=[sequential, chunked, fan_out, slow_sequential]) as rt:
        assert rt.url is not None
        await w4(rt)
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
        # interleaved, best of 15 each: the machine's noise hits both sides alike
        t_lone = t_long = float("inf")
        for _ in range(15):
            t_lone = min(t_lone, await replay_seconds(rt, lone.workflow_id, lone_run, repeat=1))
            t_long = min(t_long, await replay_seconds(rt, long.workflow_id, last.run_id, repeat=1))
        print(f"R: lifetime {len(chain) * 1_000:,} events over {len(chain)} runs "
              f"(built in {build:.1f}s); replay of the current run ({last_events} events): "
              f"{t_long * 1e3:.1f} ms vs a lone run ({lone_events} events): "
              f"{t_lone * 1e3:.1f} ms = {t_long / t_lone:.2f}x (target <= 1.1x)")
        await telemetry_overhead(rt.url, steps, w3_count, rounds=3)


async def _w1_w3(url: str, steps: int, w3_count: int, **telemetry: Any) -> tuple[float, float]:
    """W1 and W3 on a runtime of their own (own namespace) with the given providers."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    async with Runtime.connect(
        url, workflows=[sequential], namespace=namespace, worker=True, **telemetry
    ) as rt:
        await (await rt.client.start(sequential, 5)).result()  # warm-up
        start = time.perf_counter()
        await (await rt.client.start(sequential, steps)).result()
        w1 = time.perf_counter() - start
        w3, _ = await _w3(rt, w3_count)
    return w1, w3


async def telemetry_overhead(url: str, steps: int, w3_count: int, rounds: int) -> None:
    """T: W1 and W3 with metrics, with tracing, and with neither; best of ``rounds``
    interleaved rounds each, so the machine's noise hits every configuration alike."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from prometheus_client import generate_latest

    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    configs: dict[str, dict[str, Any]] = {
        "off": {},
        "metrics": {"meter_provider": meter_provider},
        "tracing": {"tracer_provider": tracer_provider},
    }
    best = {name: [float("inf"), float("inf")] for name in configs}
    spans = 0
    names = list(configs)
    for round_ in range(rounds):
        # a different configuration goes first each round: none always pays for warming up
        for name in names[round_ % 3 :] + names[: round_ % 3]:
            w1, w3 = await _w1_w3(url, steps, w3_count, **configs[name])
            best[name] = [min(best[name][0], w1), min(best[name][1], w3)]
            spans = max(spans, len(exporter.get_finished_spans()))
            exporter.clear()
    scraped = len(generate_latest().splitlines())  # the exporter can render what it got
    off = best["off"]
    for name, target in (("metrics", 1.05), ("tracing", 1.15)):
        w1, w3 = best[name]
        print(f"T {name}: W1 {steps} steps {w1:.3f}s = {w1 / off[0]:.2f}x off ({off[0]:.3f}s); "
              f"W3 {w3_count} workflows {w3:.3f}s = {w3 / off[1]:.2f}x off ({off[1]:.3f}s) "
              f"(target <= {target:.2f}x; best of {rounds})")
    print(f"T: {spans} spans per tracing round; {scraped} lines on the Prometheus endpoint")
    meter_provider.shutdown()
    tracer_provider.shutdown()


async def telemetry_only(rounds: int) -> None:
    """Only T, at small sizes: ``--telemetry-only``."""
    async with Runtime.embedded(worker=False) as rt:
        assert rt.url is not None
        await telemetry_overhead(rt.url, 300, 100, rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--lifetime-events", type=int, default=None)
    parser.add_argument("--telemetry-only", action="store_true",
                        help="only T (telemetry overhead) at small sizes: 300 steps, 100 workflows")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of T with --telemetry-only")
    parser.add_argument("--only-w", action="store_true",
                        help="only W1-W3 (both sync settings) and C, no replay (R) or telemetry (T)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps of W1 and W2 (default 1,000; 300 with --quick)")
    parser.add_argument("--workflows", type=int, default=None,
                        help="workflows of W3 (default 500; 100 with --quick)")
    parser.add_argument("--w4-only", action="store_true", help="only W4 (fan-out of 100 steps)")
    parser.add_argument("--gc-rounds", type=int, default=0, metavar="N",
                        help="only G: N rounds of W3 with each collector setting")
    ns = parser.parse_args()
    if ns.gc_rounds:
        anyio.run(gc_rounds, ns.gc_rounds, ns.workflows or 500)
        raise SystemExit(0)
    if ns.w4_only:
        anyio.run(w4_only)
        raise SystemExit(0)
    if ns.telemetry_only:
        anyio.run(telemetry_only, ns.rounds)
        raise SystemExit(0)
    lifetime = ns.lifetime_events or (20_000 if ns.quick else 1_000_000)
    anyio.run(main, ns.quick, lifetime, ns.only_w, ns.steps, ns.workflows)
