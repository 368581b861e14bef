"""Bad messages are quarantined: skipped, logged once, counted; never fatal, never wedging."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import nats
import pytest

from riverrun import EventType, Runtime, continue_as_new, wait_for_signal, workflow
from riverrun.persistence import (
    DEFAULT_PARTITIONS,
    EmbeddedNatsServer,
    OperatorNote,
    RunKey,
    partition_of,
    read_notes,
)
from riverrun.persistence._jetstream_names import Names
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@workflow()
async def waits_for_go() -> Any:
    return await wait_for_signal("go")


@workflow()
async def two_signals() -> list[Any]:
    return [await wait_for_signal("a"), await wait_for_signal("b")]


@workflow()
async def continues_once(first: bool = True) -> Any:
    value = await wait_for_signal("go")
    if first:
        continue_as_new(first=False)
    return value


@asynccontextmanager
async def raw_nats(server: EmbeddedNatsServer) -> AsyncIterator[Any]:
    nc = await nats.connect(server.url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()



def inbox_subject(namespace: str, workflow_id: str) -> str:
    return Names(namespace).inbox_subject(
        workflow_id, "default", partition_of(workflow_id, DEFAULT_PARTITIONS)
    )

async def publish(js: Any, subject: str, body: bytes, headers: Mapping[str, str] | None) -> None:
    await js.publish(subject, body, headers=dict(headers) if headers else None)


async def notes_of(rt: Runtime, workflow_id: str, kind: str, count: int = 1) -> list[OperatorNote]:
    found: list[OperatorNote] = []

    async def written() -> bool:
        nonlocal found
        notes = await read_notes(rt.backend.snapshots, workflow_id)
        found = [n for n in notes if n.kind == kind]
        return len(found) >= count

    await wait_until(written, timeout=20)
    return found


async def quarantined(rt: Runtime, count: int) -> None:
    assert rt.worker is not None
    worker = rt.worker

    async def reached() -> bool:
        return worker.statistics().quarantined >= count

    await wait_until(reached, timeout=20)


async def test_garbage_on_the_inbox_subjects_does_not_end_the_worker(
    nats_server: EmbeddedNatsServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="riverrun.quarantine")
    async with (
        Runtime.connect(nats_server.url, namespace=namespace, workflows=[waits_for_go]) as rt,
        raw_nats(nats_server) as js,
    ):
        prefix = f"rr.{namespace}.in.default"
        home = partition_of("someone", DEFAULT_PARTITIONS)
        someone = f"{prefix}.{home}.someone"
        bad = [
            (f"{prefix}.0.=ZZ", b"\x81\xa4name\xa2go", {"Rr-Kind": "signal"}),  # bad escape
            (f"{prefix}.0.=41", b"\x80", {"Rr-Kind": "signal"}),  # not riverrun's escape of "A"
            # (a partition the id does not belong to)
            (f"{prefix}.{(home + 1) % DEFAULT_PARTITIONS}.someone", b"\x80", {"Rr-Kind": "signal"}),
            (someone, b"raw bytes, no headers", None),
            (someone, msgpack.packb({"name": "go"})[:-2], {"Rr-Kind": "signal"}),
            # stored messages that look like a server's heartbeat and flow control to nats-py
            (someone, b"", {"Status": "100", "Description": "Idle Heartbeat"}),
            (someone, b"", {"Status": "100", "Description": "FlowControl Request"}),
            (someone, b"", {"Status": "404"}),
        ]
        for subject, body, headers in bad:
            await publish(js, subject, body, headers)
        await quarantined(rt, len(bad))
        # the worker still serves its workflows
        handle = await rt.client.start(waits_for_go, workflow_id="healthy")
        await handle.signal("go", 7)
        assert 7 == await handle.result(timeout=20)
        assert rt.worker is not None
        assert len(bad) == rt.worker.statistics().quarantined
        reports = rt.worker.quarantine
        assert [s for s, _, _ in bad] == [r.subject for r in reports]
        assert all(r.sequence > 0 and r.reason for r in reports)
    lines = [r for r in caplog.records if r.name == "riverrun.quarantine"]
    assert len(bad) == len(lines)
    assert all(r.levelno == logging.ERROR for r in lines)
    assert f"{prefix}.0.=ZZ" in lines[0].getMessage()


async def test_a_signal_without_a_name_is_quarantined_and_the_next_one_delivered(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="riverrun.quarantine")
    async with make_runtime(workflows=[two_signals]) as rt:
        handle = await rt.client.start(two_signals, workflow_id="wedge")
        inbox = rt.backend.inbox
        await inbox.send("wedge", "signal", {"payload": "no name"})
        await inbox.send("wedge", "signal", {"name": ["not", "a", "str"], "payload": 1})
        await inbox.send("wedge", "timer", {"timer_id": ["unhashable"], "run_id": "x"})
        await inbox.send("wedge", "child", {"child_workflow_id": {"a": 1}})
        await inbox.send("wedge", "bogus-kind", {})
        await handle.signal("a", 1)
        await handle.signal("b", 2)
        assert [1, 2] == await handle.result(timeout=20)
        assert rt.worker is not None
        assert 5 == rt.worker.statistics().quarantined
        reports = rt.worker.quarantine
        assert {"wedge"} == {r.workflow_id for r in reports}
        assert {handle.first_run_id} == {r.run_id for r in reports}
        assert "without a name" in reports[0].reason
        events = await handle.events()
        received = [e.data["name"] for e in events if e.type == EventType.SIGNAL_RECEIVED]
        assert ["a", "b"] == received
        # what `riverrun runs show` prints: one note per message, naming it and why
        notes = await notes_of(rt, "wedge", "quarantined", 5)
        assert [r.sequence for r in reports] == [n.sequence for n in notes]
        assert {handle.first_run_id} == {n.run_id for n in notes}
        assert "without a name" in notes[0].message
    assert 5 == len([r for r in caplog.records if r.name == "riverrun.quarantine"])


async def test_garbage_left_in_a_workflow_inbox_across_a_restart(
    nats_server: EmbeddedNatsServer, namespace: str
) -> None:
    async with Runtime.connect(
        nats_server.url, namespace=namespace, workflows=[two_signals], worker=False
    ) as client_rt:
        handle = await client_rt.client.start(two_signals, workflow_id="left-over")
        async with raw_nats(nats_server) as js:
            subject = inbox_subject(namespace, "left-over")
            await publish(js, subject, b"\xc1 never valid msgpack", {"Rr-Kind": "signal"})
            await publish(js, subject, b"no headers at all", None)
            await publish(js, subject, msgpack.packb([1, 2]), {"Rr-Kind": "signal"})
            await publish(js, subject, msgpack.packb({}), {"Rr-Kind": "signal", "Rr-Ts": "x"})
        await handle.signal("a", "first")
    async with Runtime.connect(nats_server.url, namespace=namespace, workflows=[two_signals]) as rt:
        handle = rt.client.get_handle("left-over")
        await handle.signal("b", "second")
        assert ["first", "second"] == await handle.result(timeout=20)
        assert rt.worker is not None
        assert 4 == rt.worker.statistics().quarantined
        run_id = (await handle.describe()).run_id
        assert {run_id} == {r.run_id for r in rt.worker.quarantine}


async def test_a_foreign_message_on_a_run_event_subject(
    nats_server: EmbeddedNatsServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="riverrun.quarantine")
    async with Runtime.connect(
        nats_server.url, namespace=namespace, workflows=[two_signals]
    ) as rt:
        handle = await rt.client.start(two_signals, workflow_id="foreign")
        await handle.signal("a", 1)

        async def got_a() -> bool:
            events = await handle.events()
            return any(e.type == EventType.SIGNAL_RECEIVED for e in events)

        await wait_until(got_a, timeout=20)
        before = await handle.events()
        subject = f"rr.{namespace}.ev.foreign.{handle.first_run_id}"
        async with raw_nats(nats_server) as js:
            await publish(js, subject, b"not an event", None)
            await publish(js, subject, b"\x80", {"Rr-Seq": "99", "Rr-Type": "x"})
        # the next append is fenced after the foreign messages: it must still go through
        await handle.signal("b", 2)
        assert [1, 2] == await handle.result(timeout=20)
        after = await handle.events()
        assert before == after[: len(before)]
        assert [e.sequence for e in after] == list(range(1, len(after) + 1))
        # replay skips them too
        key = RunKey(workflow_id="foreign", run_id=handle.first_run_id)
        assert [e.sequence for e in after] == [e.sequence for e in await rt.backend.events.read(key)]
        assert rt.worker is not None
        assert 2 == rt.worker.statistics().quarantined
        assert {subject} == {r.subject for r in rt.worker.quarantine}
        assert {"foreign"} == {r.workflow_id for r in rt.worker.quarantine}
        notes = await notes_of(rt, "foreign", "quarantined", 2)
        assert {subject} == {n.subject for n in notes}
    assert 2 == len([r for r in caplog.records if r.name == "riverrun.quarantine"])


async def test_a_start_of_a_type_no_worker_registers_is_said_once_and_noted(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="riverrun.worker")
    async with make_runtime(workflows=[waits_for_go, two_signals]) as rt:
        handle = await rt.client.start("wait_for_go", workflow_id="typo")  # sic
        [note] = await notes_of(rt, "typo", "unregistered_type")
        assert handle.first_run_id == note.run_id
        assert "'wait_for_go'" in note.message and "two_signals, waits_for_go" in note.message
        # more messages for it: the worker tries again, but says it once
        assert rt.worker is not None
        worker = rt.worker
        started = worker.statistics().started
        await handle.signal("go", 1)

        async def tried_again() -> bool:
            return worker.statistics().started > started and not worker.statistics().active

        await wait_until(tried_again, timeout=20)
        assert "running" == (await handle.describe()).status  # not failed: others may run it
        assert [note] == await notes_of(rt, "typo", "unregistered_type")
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "riverrun.worker"
    ]
    said = [m for m in warnings if "typo" in m and "wait_for_go" in m]
    assert 1 == len(said), warnings
    assert handle.first_run_id in said[0] and "two_signals, waits_for_go" in said[0]
    # the client that started it said so too, at once
    [told] = [r.getMessage() for r in caplog.records if r.name == "riverrun.client"]
    assert "typo" in told and "registers workflow 'wait_for_go'" in told


async def test_a_start_on_a_queue_no_worker_serves_is_said_and_runs_once_one_starts(
    nats_server: EmbeddedNatsServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="riverrun.client")
    async with Runtime.connect(
        nats_server.url, namespace=namespace, workflows=[two_signals], queues=["other"]
    ) as a:
        handle = await a.client.start("waits_for_go", workflow_id="elsewhere")
        [told] = [r.getMessage() for r in caplog.records if r.name == "riverrun.client"]
        assert "elsewhere" in told and "no live worker serves queue 'default'" in told
        # a worker of the queue starts later: claiming its partitions resumes the chain
        async with Runtime.connect(
            nats_server.url, namespace=namespace, workflows=[waits_for_go]
        ) as b:
            await b.client.get_handle("elsewhere").signal("go", "ran")
            assert "ran" == await b.client.get_handle("elsewhere").result(timeout=30)
        assert "ran" == await handle.result(timeout=30)


async def test_garbage_sent_to_a_hosted_workflow_is_reported_with_its_run(
    nats_server: EmbeddedNatsServer, namespace: str
) -> None:
    async with Runtime.connect(
        nats_server.url, namespace=namespace, workflows=[two_signals], passivate_after=None
    ) as rt:
        handle = await rt.client.start(two_signals, workflow_id="hosted")
        await handle.signal("a", 1)

        async def got_a() -> bool:
            events = await handle.events()
            return any(e.type == EventType.SIGNAL_RECEIVED for e in events)

        await wait_until(got_a, timeout=20)
        async with raw_nats(nats_server) as js:
            await publish(js, inbox_subject(namespace, "hosted"), b"garbage", {"Rr-Kind": "signal"})
        await quarantined(rt, 1)
        await handle.signal("b", 2)
        assert [1, 2] == await handle.result(timeout=20)
        assert rt.worker is not None
        [report] = rt.worker.quarantine
        assert ("hosted", handle.first_run_id) == (report.workflow_id, report.run_id)


async def test_a_foreign_write_to_the_run_records_does_not_stop_recovery(
    nats_server: EmbeddedNatsServer, namespace: str
) -> None:
    async with Runtime.connect(nats_server.url, namespace=namespace, worker=False) as client_rt:
        handle = await client_rt.client.start("waits_for_go", workflow_id="recovered")
    bucket = f"RIVERRUN_{namespace.upper().replace('-', '_')}_RUNS"
    index = f"RIVERRUN_{namespace.upper().replace('-', '_')}_INDEX"
    home = partition_of("recovered", DEFAULT_PARTITIONS)
    async with raw_nats(nats_server) as js:
        await publish(js, f"$KV.{bucket}.garbage", b"not a record", None)
        await publish(js, f"$KV.{bucket}.other", msgpack.packb({"a": 1}), None)
        # keys of the partition's index that are not riverrun's
        await publish(js, f"$KV.{index}.default.{home}.=ZZ.x", b"", None)
        await publish(js, f"$KV.{index}.default.{home}.a.b.c", b"", None)
    # a worker claiming the partition resumes its running workflows: garbage must not stop it
    async with Runtime.connect(nats_server.url, namespace=namespace, workflows=[waits_for_go]) as rt:
        await rt.client.get_handle("recovered").signal("go", "back")
        assert "back" == await rt.client.get_handle("recovered").result(timeout=20)
        assert rt.worker is not None
    assert handle.first_run_id


async def test_a_foreign_message_before_a_hand_over_neither_blocks_it_nor_costs_the_link(
    nats_server: EmbeddedNatsServer, namespace: str
) -> None:
    async with Runtime.connect(
        nats_server.url, namespace=namespace, workflows=[continues_once]
    ) as rt:
        handle = await rt.client.start(continues_once, workflow_id="linked")
        subject = f"rr.{namespace}.ev.linked.{handle.first_run_id}"
        async with raw_nats(nats_server) as js:
            await publish(js, subject, b"foreign", None)
        await handle.signal("go", 1)  # continues as new: the first run is cut to its link

        async def second_run() -> bool:
            return 2 == (await handle.describe()).execution

        await wait_until(second_run, timeout=20)
        async with raw_nats(nats_server) as js:
            await publish(js, subject, b"foreign, after the link", None)
        await handle.signal("go", 2)
        assert 2 == await handle.result(timeout=20)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        assert 2 == len(chain)
        [link] = await rt.client.events(handle.first_run_id)
        assert EventType.WORKFLOW_CONTINUED_AS_NEW == link.type
