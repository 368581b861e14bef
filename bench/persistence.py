"""Benchmarks of the JetStream persistence backend, each against a baseline in the same run.

    python bench/persistence.py            # full run (about 2-4 minutes)
    python bench/persistence.py --quick    # scaled down (about 20 s)
    python bench/persistence.py --converters   # only (d), no server (a few seconds)

(a) appends: N sequential awaited ``JetStreamEventLog.append`` (fenced, idempotent) versus
    raw awaited ``js.publish`` of the same bytes into a stream of the same kind, on the same
    server (``sync_interval: always`` unless ``--sync default``). Target ratio <= 1.15.
(b) replay: reading the 10,000 events of one run scattered among 1,000,000 other events
    (100,000 other runs), with ``read`` (batch direct get) and, for reference, an ordered
    consumer filtered on the run's subject.
(c) truncation: stream bytes before and after truncating 1,000 runs of 20 events each to
    their last event (``truncate(keep_last=1)``).

(d) converters: encode + decode of a typical ``step.completed`` event whose result is a small
    dataclass (a few fields, a tz-aware datetime, a list), with today's codec and
    DataConverter, against msgspec (typed msgpack Structs) and cattrs (its msgpack preconf
    converter) on the same event. Needs ``pip install riverrun[bench]``.

Prints figures and ratios; asserts nothing (speed is shown here, never in tests).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
import timeit
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.js.api import DeliverPolicy, StorageType, StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from riverrun.persistence import (
    Backend,
    EmbeddedNatsServer,
    NewEvent,
    RunKey,
    open_jetstream_backend,
)
from riverrun.persistence._codec import Codec
from riverrun.persistence._envelope import encode_event
from riverrun.persistence._jetstream_names import Names

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def step_event(i: int) -> NewEvent:
    return NewEvent(
        type="step.completed",
        timestamp=T0,
        data={"step": "fetch_batch", "attempt": 1, "result": {"offset": i, "items": 100}},
    )


async def bench_appends(backend: Backend, url: str, n: int, rounds: int) -> None:
    names = Names(backend.name.removeprefix("jetstream:"))
    codec = Codec()
    body = encode_event(codec, step_event(0))
    nc = await nats.connect(url)
    js = nc.jetstream()
    # The baseline stream: the same kind (file storage, R1, same server and sync setting).
    baseline_stream = f"{names.events_stream}_BASELINE"
    await js.add_stream(
        StreamConfig(
            name=baseline_stream,
            subjects=[f"base.{names.namespace}.>"],
            storage=StorageType.FILE,
            allow_direct=True,
        )
    )
    log = backend.events
    per_round = n // rounds
    ours: list[float] = []
    raw: list[float] = []
    run = 0
    # Warm up both paths (connections, stream files, code paths).
    key = RunKey(workflow_id="warm", run_id="up")
    for i in range(200):
        await log.append(key, step_event(i), expected_last=i, idempotency_id=f"w{i}")
        await js.publish(f"base.{names.namespace}.warm", body)

    # Alternate the order (ABBA) in many short rounds so that drift and load from other
    # processes on the machine hit both sides alike.
    async def run_ours() -> float:
        nonlocal run
        run += 1
        key = RunKey(workflow_id=f"wf-{run}", run_id=uuid.uuid4().hex)
        events = [step_event(i) for i in range(per_round)]
        start = time.perf_counter()
        for i, event in enumerate(events):
            await log.append(key, event, expected_last=i, idempotency_id=f"{i}")
        return time.perf_counter() - start

    async def run_raw() -> float:
        nonlocal run
        run += 1
        subject = f"base.{names.namespace}.wf-{run}"
        start = time.perf_counter()
        for _ in range(per_round):
            await js.publish(subject, body)
        return time.perf_counter() - start

    for r in range(rounds):
        if r % 2 == 0:
            ours.append(await run_ours())
            raw.append(await run_raw())
        else:
            raw.append(await run_raw())
            ours.append(await run_ours())
    await nc.close()

    total = per_round * rounds
    ours_us = sum(ours) / total * 1e6
    raw_us = sum(raw) / total * 1e6
    ratios = [o / r for o, r in zip(ours, raw, strict=True)]
    print(f"(a) {total:,} sequential appends, {len(body)} B body each")
    print(f"    JetStreamEventLog.append : {ours_us:7.1f} us/append  ({1e6 / ours_us:,.0f}/s)")
    print(f"    raw awaited js.publish   : {raw_us:7.1f} us/append  ({1e6 / raw_us:,.0f}/s)")
    print(
        f"    ratio append/raw         : {ours_us / raw_us:.3f}x   (target <= 1.15x; "
        f"per round: median {statistics.median(ratios):.3f}, "
        f"min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


async def fill(url: str, stream: str, subjects: list[str], bodies: list[bytes]) -> float:
    """Publish ``bodies[i]`` to ``subjects[i]``, pipelined; returns messages/s."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=8000)
    start = time.perf_counter()
    for subject, body in zip(subjects, bodies, strict=True):
        await js.publish_async(subject, body, headers=None)
    await js.publish_async_completed()
    rate = len(bodies) / (time.perf_counter() - start)
    await nc.close()
    return rate


async def bench_replay(backend: Backend, url: str, target_events: int, others: int) -> None:
    names = Names(backend.name.removeprefix("jetstream:"))
    codec = Codec()
    key = RunKey(workflow_id="replay-target", run_id="r1")
    target_subject = names.events_subject(key.workflow_id, key.run_id)
    other_runs = max(others // 10, 1)
    print(
        f"(b) filling: {target_events:,} events of one run among {others:,} events of "
        f"{other_runs:,} other runs ..."
    )
    def target_headers(seq: int) -> dict[str, str]:
        # what the log writes: a message without the run's Msg-Id is foreign, and skipped
        return {"Rr-Seq": str(seq), "Nats-Msg-Id": f"replay-target.r1:{seq}"}

    # Interleave: the target's events are scattered evenly through the stream.
    every = max(others // target_events, 1)
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=8000)
    body = encode_event(codec, step_event(0))
    start = time.perf_counter()
    seq = 0
    published = 0
    for i in range(others):
        run = i % other_runs
        await js.publish_async(
            f"rr.{names.namespace}.ev.other-{run}.r",
            body,
            headers={"Rr-Seq": str(i // other_runs + 1)},
        )
        published += 1
        if i % every == 0 and seq < target_events:
            seq += 1
            await js.publish_async(
                target_subject, encode_event(codec, step_event(seq)), headers=target_headers(seq)
            )
            published += 1
    while seq < target_events:
        seq += 1
        await js.publish_async(
            target_subject, encode_event(codec, step_event(seq)), headers=target_headers(seq)
        )
        published += 1
    await js.publish_async_completed()
    fill_rate = published / (time.perf_counter() - start)
    info = await js.stream_info(names.events_stream)
    print(
        f"    filled {info.state.messages:,} messages ({info.state.bytes / 1e6:,.0f} MB) at "
        f"{fill_rate:,.0f} msg/s pipelined (js.publish_async)"
    )

    # Cold: a fresh backend (empty caches) reading the whole run.
    async with open_jetstream_backend(url, namespace=names.namespace) as fresh:
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            events = await fresh.events.read(key)
            timings.append(time.perf_counter() - start)
        assert len(events) == target_events, len(events)
        best = min(timings)
        print(
            f"    read() by batch direct get : {target_events / best:,.0f} events/s "
            f"({best * 1e3:.0f} ms for {target_events:,}; decoded + upcast StoredEvents)"
        )
        start = time.perf_counter()
        streamed = 0
        async for _ in fresh.events.stream(key):
            streamed += 1
        took = time.perf_counter() - start
        print(f"    stream()                   : {streamed / took:,.0f} events/s")

    # Reference: an ordered consumer filtered on the run's subject, raw messages only.
    got = 0
    done = asyncio.Event()

    async def count(msg: object) -> None:
        nonlocal got
        got += 1
        if got >= target_events:
            done.set()

    start = time.perf_counter()
    sub = await js.subscribe(
        target_subject,
        stream=names.events_stream,
        cb=count,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    await asyncio.wait_for(done.wait(), 60)
    took = time.perf_counter() - start
    await sub.unsubscribe()
    print(f"    ordered consumer (raw msgs, no decoding, for reference): {got / took:,.0f} msgs/s")
    await nc.close()


async def bench_truncate(backend: Backend, url: str, runs: int, per_run: int) -> None:
    names = Names(backend.name.removeprefix("jetstream:"))
    codec = Codec()
    keys = [RunKey(workflow_id=f"trunc-{i}", run_id="r") for i in range(runs)]
    subjects: list[str] = []
    bodies: list[bytes] = []
    for n in range(per_run):
        for key in keys:
            subjects.append(names.events_subject(key.workflow_id, key.run_id))
            bodies.append(encode_event(codec, step_event(n)))
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=8000)
    for subject, body, i in zip(subjects, bodies, range(len(bodies)), strict=True):
        await js.publish_async(subject, body, headers={"Rr-Seq": str(i // runs + 1)})
    await js.publish_async_completed()
    before = await js.stream_info(names.events_stream)
    start = time.perf_counter()
    for key in keys:
        await backend.events.truncate(key, keep_last=1)
    took = time.perf_counter() - start
    after = await js.stream_info(names.events_stream)
    await nc.close()
    print(f"(c) {runs:,} runs x {per_run} events, truncated to their last event")
    print(
        f"    stream bytes: {before.state.bytes:,} before -> {after.state.bytes:,} after "
        f"({before.state.bytes / max(after.state.bytes, 1):.1f}x smaller); messages "
        f"{before.state.messages:,} -> {after.state.messages:,}; "
        f"{runs / took:,.0f} truncations/s"
    )


@dataclasses.dataclass
class Shipment:
    """The typical step result of (d)."""

    order_id: str
    carrier: str
    weight_grams: int
    shipped_at: datetime
    parcels: list[str]


def bench_converters(n: int) -> None:
    import cattrs.preconf.msgpack
    import msgpack
    import msgspec

    from riverrun import DataConverter
    from riverrun.persistence._envelope import decode_event

    shipment = Shipment(
        order_id="o-17",
        carrier="ups",
        weight_grams=1_250,
        shipped_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        parcels=["p-1", "p-2", "p-3"],
    )
    key = RunKey(workflow_id="wf-1", run_id="r-1")

    # today's codec with the DataConverter: result by its hint, then the event envelope
    converter = DataConverter()
    codec = converter.codec

    def ours() -> Shipment:
        data = {"position": 3, "name": "ship", "result": converter.to_data(shipment, Shipment)}
        raw = encode_event(codec, NewEvent(type="step.completed", timestamp=T0, data=data))
        stored = decode_event(codec, raw, key=key, sequence=4)
        decoded: Shipment = converter.from_data(stored.data["result"], Shipment)
        return decoded

    # msgspec: the same envelope as typed Structs, msgpack on the wire
    data_struct = msgspec.defstruct(
        "Data", [("position", int), ("name", str), ("result", Shipment)]
    )
    envelope_struct = msgspec.defstruct(
        "Envelope",
        [("type", str), ("schema_version", int), ("timestamp", datetime), ("data", data_struct)],
        array_like=True,
    )

    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(envelope_struct)

    def with_msgspec() -> Shipment:
        raw = encoder.encode(envelope_struct("step.completed", 1, T0, data_struct(3, "ship", shipment)))
        return decoder.decode(raw).data.result

    # cattrs: unstructure to msgpack-friendly data, msgpack, structure back
    cattrs_converter = cattrs.preconf.msgpack.make_converter()

    def with_cattrs() -> Shipment:
        envelope = ["step.completed", 1, T0, {"position": 3, "name": "ship", "result": shipment}]
        raw = cattrs_converter.dumps(envelope)
        _type, _version, _timestamp, data = msgpack.unpackb(raw)
        decoded: Shipment = cattrs_converter.structure(data["result"], Shipment)
        return decoded

    for fn in (ours, with_msgspec, with_cattrs):
        assert fn() == shipment, fn.__name__
    sizes = {
        "ours": len(
            encode_event(
                codec,
                NewEvent(
                    type="step.completed",
                    timestamp=T0,
                    data={"position": 3, "name": "ship", "result": converter.to_data(shipment, Shipment)},
                ),
            )
        ),
        "msgspec": len(encoder.encode(envelope_struct("step.completed", 1, T0, data_struct(3, "ship", shipment)))),
        "cattrs": len(
            cattrs_converter.dumps(
                ["step.completed", 1, T0, {"position": 3, "name": "ship", "result": shipment}]
            )
        ),
    }
    timings = {}
    for name, fn in (("ours", ours), ("msgspec", with_msgspec), ("cattrs", with_cattrs)):
        best = min(timeit.repeat(fn, number=n, repeat=5))
        timings[name] = best / n * 1e6
    print(f"(d) encode + decode of one step.completed event (dataclass result), best of 5 x {n:,}")
    for name, micros in timings.items():
        print(
            f"    {name:8s} {micros:7.2f} us/event  {sizes[name]:4d} bytes  "
            f"ratio to ours {micros / timings['ours']:.2f}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="scale everything down")
    parser.add_argument(
        "--sync",
        choices=["always", "default"],
        default="always",
        help="nats-server sync_interval for (a): always (the embedded default) or default",
    )
    parser.add_argument(
        "--converters", action="store_true", help="run only (d): codec vs msgspec and cattrs"
    )
    args = parser.parse_args()
    if args.converters:
        bench_converters(20_000 if args.quick else 100_000)
        return
    appends = 1_000 if args.quick else 5_000
    others = 100_000 if args.quick else 1_000_000
    target = 2_000 if args.quick else 10_000
    trunc_runs = 200 if args.quick else 1_000
    began = time.perf_counter()

    sync = "always" if args.sync == "always" else None
    async with EmbeddedNatsServer(sync_interval=sync) as server:
        print(
            f"nats-server {'.'.join(map(str, server.version or ()))} at {server.url}, "
            f"sync_interval={args.sync}"
        )
        async with open_jetstream_backend(server.url, namespace="bench-a") as backend:
            await bench_appends(backend, server.url, appends, rounds=50)
    # (b) and (c) only read and purge; their fill is pipelined, so the default fsync interval
    # keeps the 1M-message fill within the time budget without changing what is measured.
    async with EmbeddedNatsServer(sync_interval=None) as server:
        async with open_jetstream_backend(server.url, namespace="bench-b") as backend:
            await bench_replay(backend, server.url, target, others)
        async with open_jetstream_backend(server.url, namespace="bench-c") as backend:
            await bench_truncate(backend, server.url, trunc_runs, 20)
    print(f"total bench time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
