"""Storage per workflow stays flat however often it continues as new (DESIGN, continue-as-new 3).

A chain of ``RUNS`` runs x ``STEPS`` steps (a continue-as-new every ``STEPS`` steps): once it
has ended, the log holds the last run's whole history plus exactly one event per earlier run,
its ``workflow.continued_as_new`` link. On JetStream that is checked on the events stream
itself (its message count), and the bytes per link are compared with a chain of ``SMALL``
runs: each link costs the same. The memory backend is measured the same way.

``RIVERRUN_E2E_FLAT_RUNS`` (default 1000) sets the long chain's length.
"""

from __future__ import annotations

import os
import time

import nats
import pytest

from riverrun import EventType, Runtime, continue_as_new, step, workflow
from riverrun.persistence import EmbeddedNatsServer, RunKey
from riverrun.persistence._jetstream_names import Names
from riverrun.testing import unique_namespace

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RUNS = int(os.environ.get("RIVERRUN_E2E_FLAT_RUNS", "1000"))
SMALL = 100
STEPS = 20
#: the last run keeps everything: workflow.started, STEPS x step.completed, workflow.completed
LAST_RUN_EVENTS = STEPS + 2


@step()
async def tick(run: int, i: int) -> int:
    return run * STEPS + i


@workflow()
async def flat_chain(runs: int, steps: int, run: int = 0, total: int = 0) -> int:
    for i in range(steps):
        total += await tick(run, i)
    if run + 1 < runs:
        continue_as_new(runs, steps, run + 1, total)
    return total


def expected_total(runs: int) -> int:
    n = runs * STEPS
    return n * (n - 1) // 2


async def run_chain(rt: Runtime, runs: int) -> tuple[float, int]:
    """Run a chain of ``runs`` runs; check it and each run's history.

    Returns (seconds the chain took, sum of the stored events' sizes).
    """
    started = time.monotonic()
    handle = await rt.client.start(flat_chain, runs, STEPS, workflow_id=f"flat-{runs}")
    assert expected_total(runs) == await handle.result(timeout=600)
    elapsed = time.monotonic() - started
    chain = await rt.client.get_workflow_chain(handle.first_run_id)
    assert list(range(1, runs + 1)) == [r.execution for r in chain]
    stored = 0
    for run in chain:
        events = await rt.backend.events.read(
            RunKey(workflow_id=run.workflow_id, run_id=run.run_id)
        )
        stored += sum(e.size for e in events)
        if run is chain[-1]:
            assert LAST_RUN_EVENTS == len(events)
        else:
            assert [EventType.WORKFLOW_CONTINUED_AS_NEW] == [e.type for e in events]
    return elapsed, stored


async def stream_state(url: str, namespace: str) -> tuple[int, int]:
    """(messages, bytes) of the namespace's events stream, as the server reports them."""
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(Names(namespace).events_stream)
    finally:
        await nc.close()
    return info.state.messages, info.state.bytes


async def test_storage_stays_flat_on_jetstream(nats_server: EmbeddedNatsServer) -> None:
    figures: dict[int, tuple[int, int, int, float]] = {}
    for runs in (SMALL, RUNS):
        namespace = unique_namespace()
        async with Runtime.connect(
            nats_server.url, workflows=[flat_chain], namespace=namespace, worker=True
        ) as rt:
            elapsed, stored = await run_chain(rt, runs)
        messages, size = await stream_state(nats_server.url, namespace)
        assert runs - 1 + LAST_RUN_EVENTS == messages
        figures[runs] = (messages, size, stored, elapsed)

    print(f"\nJetStream events stream, chains of N runs x {STEPS} steps:")
    for runs, (messages, size, stored, elapsed) in figures.items():
        print(
            f"  N={runs:>5}: {messages} messages, {size} bytes on the server "
            f"({stored} bytes of events), chain ran in {elapsed:.1f} s "
            f"({elapsed / runs * 1000:.1f} ms/run)"
        )
    (_, small_size, small_stored, _), (_, big_size, big_stored, _) = figures.values()
    per_link = (big_size - small_size) / (RUNS - SMALL)
    print(
        f"  bytes per earlier run (link): {per_link:.1f} on the server, "
        f"{(big_stored - small_stored) / (RUNS - SMALL):.1f} of event data; "
        f"{big_size / RUNS:.1f} / {small_size / SMALL:.1f} bytes per run overall (N={RUNS} / {SMALL})"
    )


async def test_storage_stays_flat_in_memory() -> None:
    figures: dict[int, tuple[int, float]] = {}
    for runs in (SMALL, RUNS):
        async with Runtime.in_memory(workflows=[flat_chain]) as rt:
            elapsed, stored = await run_chain(rt, runs)
            figures[runs] = (stored, elapsed)
    print(f"\nmemory backend, chains of N runs x {STEPS} steps:")
    for runs, (stored, elapsed) in figures.items():
        print(
            f"  N={runs:>5}: {runs - 1 + LAST_RUN_EVENTS} events, {stored} bytes of events, "
            f"chain ran in {elapsed:.1f} s ({elapsed / runs * 1000:.2f} ms/run)"
        )
    (small_stored, _), (big_stored, _) = figures.values()
    print(f"  bytes per earlier run (link): {(big_stored - small_stored) / (RUNS - SMALL):.1f}")
