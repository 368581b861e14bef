"""Fuzz: random bytes and headers on every subject a worker reads, while a healthy workflow runs.

Each example publishes garbage on the namespace's inbox subjects (the healthy workflow's own,
and random tokens with odd escapes) and on the healthy run's event subject, between two of the
workflow's signals. The worker must keep serving the workflow to its exact result, lose
nothing it had recorded, and quarantine every bad message (once each) that reaches it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio
import msgpack
import nats
from hypothesis import HealthCheck, given, settings, strategies as st

from riverrun import EventType, Runtime, step, wait_for_signal, workflow
from riverrun.persistence import Codec, EmbeddedNatsServer, partition_of
from riverrun.persistence._jetstream_names import Names
from riverrun.testing import wait_until
from riverrun.testing._nats import unique_namespace


@step()
async def add(total: int, value: int) -> int:
    return total + value


@workflow()
async def healthy(count: int) -> int:
    total = 0
    for _ in range(count):
        total = await add(total, await wait_for_signal("v"))
    return total


# header names riverrun reads, and others; never Nats-* (those steer the server itself: a
# rollup would remove history, which only the stream's permissions can prevent)
HEADER_NAMES = st.sampled_from(
    [
        *("Rr-Kind", "Rr-Ts", "Rr-Seq", "Rr-Type", "Rr-Marker", "Rr-Last-Id", "X-Other"),
        *("Status", "Description"),  # what nats-py also reads a server's status into
    ]
)
HEADER_VALUES = st.one_of(
    st.sampled_from(["signal", "timer", "child", "start", "bogus", "1", "0", "-3", "99", ""]),
    st.sampled_from(["100", "404", "408", "Idle Heartbeat", "FlowControl Request"]),
    st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00", "not a time"]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=12),
)
HEADERS = st.one_of(st.none(), st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4))
# bodies: random bytes, and msgpack maps of the shapes riverrun expects with wrong values
# (never a usable cancel or signal: that would be a valid message, not a bad one)
INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
WRONG_VALUES = st.one_of(st.none(), INTS, st.lists(INTS, max_size=2))
SHAPED = st.dictionaries(
    st.sampled_from(["name", "payload", "timer_id", "run_id", "child_workflow_id", "status"]),
    WRONG_VALUES,
    max_size=4,
).map(lambda data: msgpack.packb(data))
BODIES = st.one_of(st.binary(max_size=64), SHAPED)
TOKENS = st.one_of(
    st.sampled_from(["=ZZ", "=", "=4", "=41", "=FF", "a.b", "=C3", "ok=2E", "healthy-x"]),
    st.text(st.sampled_from("=AZaz09-_.F"), min_size=1, max_size=8).filter(
        lambda t: not t.startswith(".") and not t.endswith(".") and ".." not in t
    ),
)


@st.composite
def messages(draw: st.DrawFn) -> list[tuple[str, str, bytes, dict[str, str] | None]]:
    """(where, token, body, headers): where is 'own' inbox, 'other' inbox token, or 'event'."""
    out = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        where = draw(st.sampled_from(["own", "other", "event"]))
        token = draw(TOKENS) if where == "other" else ""
        headers = draw(HEADERS)
        if headers and where == "own" and headers.get("Rr-Kind") in ("cancel", "terminate"):
            headers["Rr-Kind"] = "bogus"
        out.append((where, token, draw(BODIES), headers))
    return out


def well_formed(body: bytes, headers: dict[str, str] | None) -> bool:
    """Would the inbox decode this message? (then it is for its workflow to judge)"""
    if not headers or "Rr-Kind" not in headers:
        return False
    try:
        if "Rr-Ts" in headers and datetime.fromisoformat(headers["Rr-Ts"]).tzinfo is None:
            return False
        return isinstance(Codec().loads(body, what="fuzz"), dict)
    except Exception:
        return False


async def scenario(server: EmbeddedNatsServer, batch: list[Any]) -> None:
    namespace = unique_namespace()
    names = Names(namespace)
    async with Runtime.connect(server.url, namespace=namespace, workflows=[healthy]) as rt:
        assert rt.worker is not None
        worker = rt.worker
        handle = await rt.client.start(healthy, 3, workflow_id="healthy")
        await handle.signal("v", 1)

        async def first_step() -> bool:
            return any(e.type == EventType.STEP_COMPLETED for e in await handle.events())

        await wait_until(first_step, timeout=20)

        async def owns_every_partition() -> bool:
            # a partition's consumer reads what arrives after its claim: garbage sent to a
            # partition nobody owns yet is read by nobody, so there is nothing to quarantine
            owned = worker.partitions().get("default", [])
            return len(owned) == rt.backend.partitions

        await wait_until(owns_every_partition, timeout=20)
        before = await handle.events()
        own = names.inbox_subject("healthy", "default", partition_of("healthy", rt.backend.partitions))
        run_subject = names.events_subject("healthy", handle.first_run_id)
        must: set[tuple[str, int]] = set()  # what must end in the quarantine
        may: set[tuple[str, int]] = set()  # what may (well-formed, for a workflow to judge)
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            for where, token, body, headers in batch:
                subject = {"own": own, "event": run_subject}.get(
                    where, f"{names.inbox_filter[:-1]}default.0.{token}"
                )
                ack = await js.publish(subject, body, headers=headers)
                sent = (subject, ack.seq)
                if where == "event":
                    must.add(sent)
                elif where == "own":
                    # the instance judges the well-formed ones: none of ours is usable, but a
                    # "start" needs nothing, so it is noise, skipped like a stale timer
                    kind = (headers or {}).get("Rr-Kind")
                    start = well_formed(body, headers) and kind == "start"
                    (may if start else must).add(sent)
                elif "." in token:
                    pass  # outside every partition's subjects: no worker reads it
                else:
                    try:
                        _, partition, workflow_id = names.parse_inbox_subject(subject)
                        canonical = partition == partition_of(workflow_id, rt.backend.partitions)
                    except ValueError:
                        canonical = False
                    (may if canonical and well_formed(body, headers) else must).add(sent)
        finally:
            await nc.close()
        await handle.signal("v", 2)
        await handle.signal("v", 3)
        assert 6 == await handle.result(timeout=30)
        after = await handle.events()
        assert before == after[: len(before)]
        # (signals 2 and 3 may both be recorded before the second step: the order varies)
        types = [e.type for e in after]
        assert [EventType.WORKFLOW_STARTED, EventType.WORKFLOW_COMPLETED] == [types[0], types[-1]]
        assert sorted([EventType.SIGNAL_RECEIVED, EventType.STEP_COMPLETED] * 3) == sorted(
            types[1:-1]
        )
        assert [1, 2, 3] == [
            e.data["payload"] for e in after if e.type == EventType.SIGNAL_RECEIVED
        ]

        def reported() -> set[tuple[str, int]]:
            return {(r.subject, r.sequence) for r in worker.quarantine}

        async def all_quarantined() -> bool:
            return must <= reported()

        await wait_until(all_quarantined, timeout=20)
        assert reported() <= must | may
        assert len(worker.quarantine) == worker.statistics().quarantined
        # and the worker still serves new work
        again = await rt.client.start(healthy, 1, workflow_id="after")
        await again.signal("v", 5)
        assert 5 == await again.result(timeout=30)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=messages())
def test_garbage_on_every_subject_a_worker_reads(
    nats_server: EmbeddedNatsServer, batch: list[Any]
) -> None:
    anyio.run(scenario, nats_server, batch)
