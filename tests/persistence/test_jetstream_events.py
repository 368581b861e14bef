"""The JetStream event log beyond the contract: fences between processes, the 10071 path of a
retry whose ack was lost, truncation markers, subject escaping, corrupt messages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import nats
import pytest
from hypothesis import given, strategies as st

from riverrun.persistence import (
    Append,
    Backend,
    CodecError,
    ConcurrencyConflict,
    EmbeddedNatsServer,
    NewEvent,
    RunKey,
    StoreUnavailable,
    open_jetstream_backend,
)
from riverrun.persistence._jetstream_conn import JetStreamConnection, JsApiError
from riverrun.persistence._jetstream_events import JetStreamEventLog
from riverrun.persistence._jetstream_names import Names, escape_token, unescape_token

pytestmark = pytest.mark.anyio


def ev(**data: Any) -> NewEvent:
    return NewEvent(type="test.happened", timestamp=datetime.now(UTC), data=data)


def new_key(workflow_id: str | None = None) -> RunKey:
    return RunKey(workflow_id=workflow_id or f"wf-{uuid.uuid4().hex[:8]}", run_id="r1")


@pytest.fixture
async def backend(nats_server: EmbeddedNatsServer, namespace: str) -> AsyncIterator[Backend]:
    async with open_jetstream_backend(nats_server.url, namespace=namespace) as backend:
        yield backend


@pytest.fixture
async def other(nats_server: EmbeddedNatsServer, namespace: str) -> AsyncIterator[Backend]:
    """A second process's view of the same namespace: its own connection and caches."""
    async with open_jetstream_backend(nats_server.url, namespace=namespace) as backend:
        yield backend


def _log(backend: Backend) -> JetStreamEventLog:
    assert isinstance(backend.events, JetStreamEventLog)
    return backend.events


class _SpyConnection:
    """Wraps a connection's ``publish``: records 10071 answers and can lose the next ack."""

    def __init__(self, conn: JetStreamConnection) -> None:
        self.conn = conn
        self.original = conn.publish
        self.lose_next_ack = False
        self.wrong_last = 0

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> Any:
        try:
            ack = await self.original(subject, payload, headers)
        except JsApiError as exc:
            if exc.err_code == 10071:
                self.wrong_last += 1
            raise
        if self.lose_next_ack:
            self.lose_next_ack = False
            raise nats.errors.TimeoutError  # the server stored it; the client never heard
        return ack


@pytest.fixture
def spy(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> _SpyConnection:
    conn = _log(backend)._conn
    spy = _SpyConnection(conn)
    monkeypatch.setattr(conn, "publish", spy.publish)
    return spy


async def test_two_writers_with_the_same_expected_sequence_one_wins(
    backend: Backend, other: Backend
) -> None:
    key = new_key()
    await backend.events.append(key, ev(n=0), expected_last=0, idempotency_id="first")
    assert 1 == await other.events.last_sequence(key)  # both caches are warm and agree
    outcomes: dict[str, str] = {}

    async def write(name: str, log: Backend) -> None:
        try:
            await log.events.append(key, ev(by=name), expected_last=1, idempotency_id=name)
            outcomes[name] = "won"
        except ConcurrencyConflict:
            outcomes[name] = "lost"

    async with anyio.create_task_group() as tg:
        tg.start_soon(write, "a", backend)
        tg.start_soon(write, "b", other)

    assert ["lost", "won"] == sorted(outcomes.values())
    events = await backend.events.read(key)
    winner = next(name for name, outcome in outcomes.items() if outcome == "won")
    assert [(1, None), (2, winner)] == [(e.sequence, e.data.get("by")) for e in events]
    # the loser's cache learned the truth: it appends after the winner's event
    loser = backend if outcomes["a"] == "lost" else other
    assert 3 == await loser.events.append(key, ev(), expected_last=2, idempotency_id="next")


async def test_stale_cache_in_another_process_is_a_conflict_not_an_overwrite(
    backend: Backend, other: Backend
) -> None:
    key = new_key()
    await backend.events.append(key, ev(), expected_last=0, idempotency_id="1")
    assert 1 == await other.events.last_sequence(key)
    await backend.events.append(key, ev(), expected_last=1, idempotency_id="2")

    with pytest.raises(ConcurrencyConflict, match="expected last sequence 1 but it is 2"):
        await other.events.append(key, ev(), expected_last=1, idempotency_id="stale")
    assert [1, 2] == [e.sequence for e in await backend.events.read(key)]


async def test_retry_after_a_lost_ack_resolves_10071_and_stores_one_event(
    backend: Backend, spy: _SpyConnection
) -> None:
    key = new_key()
    await backend.events.append(key, ev(n=0), expected_last=0, idempotency_id="e1")

    spy.lose_next_ack = True
    with pytest.raises(StoreUnavailable, match="retry"):
        await backend.events.append(key, ev(n=1), expected_last=1, idempotency_id="e2")
    # The retry carries the old fence: the server refuses it (10071) before any Msg-Id dedup,
    # and the log finds its own Msg-Id at the run's tail.
    retried = await backend.events.append(key, ev(n=1), expected_last=1, idempotency_id="e2")

    assert 1 == spy.wrong_last
    assert 2 == retried
    assert [(1, 0), (2, 1)] == [(e.sequence, e.data["n"]) for e in await backend.events.read(key)]


async def test_10071_with_a_foreign_tail_is_a_conflict(
    backend: Backend, other: Backend, spy: _SpyConnection
) -> None:
    key = new_key()
    await backend.events.append(key, ev(), expected_last=0, idempotency_id="e1")
    await other.events.append(key, ev(), expected_last=1, idempotency_id="theirs")

    with pytest.raises(ConcurrencyConflict):
        await backend.events.append(key, ev(), expected_last=1, idempotency_id="mine")
    assert 1 == spy.wrong_last


async def test_retry_of_a_hand_over_after_a_lost_ack_writes_nothing_twice(
    backend: Backend, spy: _SpyConnection
) -> None:
    old, new = new_key(), RunKey(workflow_id="wf-x", run_id=uuid.uuid4().hex)
    await backend.events.append(old, ev(), expected_last=0, idempotency_id="s")
    batch = [
        Append(key=old, event=ev(end=True), expected_last=1, idempotency_id="can-old"),
        Append(key=new, event=ev(start=True), expected_last=0, idempotency_id="can-new"),
    ]

    spy.lose_next_ack = True
    with pytest.raises(StoreUnavailable):
        await backend.events.append_atomic(batch)
    assert [2, 1] == await backend.events.append_atomic(batch)

    assert (2, 1) == (
        await backend.events.last_sequence(old),
        await backend.events.last_sequence(new),
    )
    assert 1 == len(await backend.events.read(new))


async def test_hand_over_fenced_by_another_writer_writes_nothing(
    backend: Backend, other: Backend
) -> None:
    old, new = new_key(), new_key()
    await backend.events.append(old, ev(), expected_last=0, idempotency_id="s")
    assert 1 == await backend.events.last_sequence(old)
    await other.events.append(old, ev(), expected_last=1, idempotency_id="intruder")

    with pytest.raises(ConcurrencyConflict, match="nothing was written"):
        await backend.events.append_atomic(
            [
                Append(key=old, event=ev(), expected_last=1, idempotency_id="end"),
                Append(key=new, event=ev(), expected_last=0, idempotency_id="start"),
            ]
        )
    assert ([], 2) == (await backend.events.read(new), await backend.events.last_sequence(old))


async def test_several_appends_to_one_run_in_one_batch(backend: Backend) -> None:
    key, other_key = new_key(), new_key()
    sequences = await backend.events.append_atomic(
        [
            Append(key=key, event=ev(i=0), expected_last=0, idempotency_id="a"),
            Append(key=key, event=ev(i=1), expected_last=1, idempotency_id="b"),
            Append(key=other_key, event=ev(i=2), expected_last=0, idempotency_id="c"),
        ]
    )
    assert [1, 2, 1] == sequences
    assert [0, 1] == [e.data["i"] for e in await backend.events.read(key)]


async def test_truncate_to_nothing_keeps_the_numbering_and_the_fence(
    backend: Backend, other: Backend
) -> None:
    key = new_key()
    for i in range(3):
        await backend.events.append(key, ev(), expected_last=i, idempotency_id=str(i))

    await backend.events.truncate(key, keep_last=0)

    assert ([], 3) == (await other.events.read(key), await other.events.last_sequence(key))
    with pytest.raises(ConcurrencyConflict):
        await other.events.append(key, ev(), expected_last=0, idempotency_id="restart")
    assert 4 == await other.events.append(key, ev(), expected_last=3, idempotency_id="3")
    assert [4] == [e.sequence for e in await backend.events.read(key)]


async def test_a_retry_across_a_truncation_is_still_recognised(backend: Backend) -> None:
    key = new_key()
    await backend.events.append(key, ev(), expected_last=0, idempotency_id="only")
    await backend.events.truncate(key, keep_last=0)

    assert 1 == await backend.events.append(key, ev(), expected_last=0, idempotency_id="only")


async def test_truncation_shrinks_the_stream(
    backend: Backend, nats_server: EmbeddedNatsServer
) -> None:
    key = new_key()
    for i in range(50):
        await backend.events.append(key, ev(blob="x" * 500), expected_last=i, idempotency_id=str(i))
    names = Names(backend.name.removeprefix("jetstream:"))
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        before = (await js.stream_info(names.events_stream)).state.bytes
        await backend.events.truncate(key, keep_last=1)
        after = (await js.stream_info(names.events_stream)).state.bytes
    finally:
        await nc.close()
    assert after * 20 < before
    assert [50] == [e.sequence for e in await backend.events.read(key)]


async def test_long_histories_are_read_in_batches(backend: Backend) -> None:
    key = new_key()
    n = 4500  # more than two read batches
    futures = []
    nc = _log(backend)._conn.nc
    js = nc.jetstream()
    subject = _log(backend)._run(key).subject
    from riverrun.persistence._envelope import encode_event

    codec = _log(backend)._codec
    for i in range(n):
        body = encode_event(codec, ev(i=i))
        headers = {"Rr-Seq": str(i + 1), "Nats-Msg-Id": f"{_log(backend)._run(key).id_prefix}{i}"}
        futures.append(await js.publish_async(subject, body, headers=headers))
    await js.publish_async_completed()

    assert list(range(n)) == [e.data["i"] for e in await backend.events.read(key)]
    assert list(range(4000, n)) == [e.data["i"] for e in await backend.events.read(key, after=4000)]
    streamed = [e.sequence async for e in backend.events.stream(key, after=10)]
    assert list(range(11, n + 1)) == streamed
    assert n == await backend.events.last_sequence(key)
    assert n + 1 == await backend.events.append(key, ev(), expected_last=n, idempotency_id="z")


async def test_corrupt_message_names_run_and_sequence(backend: Backend) -> None:
    key = RunKey(workflow_id="wf-corrupt", run_id=uuid.uuid4().hex[:6])
    await backend.events.append(key, ev(), expected_last=0, idempotency_id="ok")
    log = _log(backend)
    run = log._run(key)
    headers = {"Rr-Seq": "2", "Nats-Msg-Id": f"{run.id_prefix}x"}  # claims to be riverrun's
    await log._conn.js.publish(run.subject, b"\xc1 not msgpack", headers=headers)

    with pytest.raises(CodecError, match=f"run wf-corrupt/{key.run_id} event #2"):
        await backend.events.read(key)


async def test_event_over_max_payload_is_refused_with_advice(backend: Backend) -> None:
    big = ev(blob=b"x" * (backend.max_event_bytes + 1))
    with pytest.raises(CodecError, match="payload store"):
        await backend.events.append(new_key(), big, expected_last=0, idempotency_id="big")


@pytest.mark.parametrize(
    "workflow_id", ["a.b", "a b", "a>*", "ümlaut/ß", "=3D", "", "wf.1.r1", "x" * 200]
)
async def test_any_workflow_id_is_its_own_subject(backend: Backend, workflow_id: str) -> None:
    key = RunKey(workflow_id=workflow_id, run_id=f"r.{uuid.uuid4().hex[:6]}")
    neighbour = RunKey(workflow_id=workflow_id + ".1", run_id=key.run_id)
    await backend.events.append(key, ev(who="key"), expected_last=0, idempotency_id="1")
    await backend.events.append(neighbour, ev(who="n"), expected_last=0, idempotency_id="1")

    assert ["key"] == [e.data["who"] for e in await backend.events.read(key)]
    assert ["n"] == [e.data["who"] for e in await backend.events.read(neighbour)]


@given(st.text())
def test_escaping_is_reversible_and_one_token(value: str) -> None:
    token = escape_token(value)
    assert value == unescape_token(token)
    assert token and all(c.isascii() and (c.isalnum() or c in "_-=") for c in token)


FOREIGN: list[tuple[bytes, dict[str, str] | None]] = [
    (b"no headers at all", None),
    (b"\x80", {"Rr-Seq": "7"}),  # a sequence but no Msg-Id of the run
    (b"", {"Rr-Marker": "truncated", "Rr-Seq": "x"}),  # a marker that is not one
    (b"", {"Rr-Marker": "truncated", "Rr-Seq": "9"}),  # nor this one (not a rollup)
    (b"", {"Status": "404"}),  # looks like a direct get status, is a stored message
    (b"x", {"Rr-Seq": "-1", "Nats-Msg-Id": "elsewhere:1"}),
]


async def test_foreign_messages_on_a_run_subject_are_skipped_and_quarantined(
    backend: Backend, other: Backend
) -> None:
    key = new_key()
    log = _log(backend)
    assert 1 == await backend.events.append(key, ev(i=1), expected_last=0, idempotency_id="a")
    for body, headers in FOREIGN:
        await log._conn.js.publish(log._run(key).subject, body, headers=headers)
    # the writer's cached fence is stale now: the append is fenced again after them
    assert 2 == await backend.events.append(key, ev(i=2), expected_last=1, idempotency_id="b")
    for body, headers in FOREIGN[:2]:
        await log._conn.js.publish(log._run(key).subject, body, headers=headers)
    # a cold reader (another process) finds the tail behind the foreign messages
    assert 2 == await other.events.last_sequence(key)
    assert [1, 2] == [e.data["i"] for e in await other.events.read(key)]
    with pytest.raises(ConcurrencyConflict):  # a real conflict is still one
        await other.events.append(key, ev(i=3), expected_last=1, idempotency_id="c")
    # an atomic batch too
    assert [3] == await backend.events.append_atomic(
        [Append(key=key, event=ev(i=3), expected_last=2, idempotency_id="c")]
    )
    assert [1, 2, 3] == [e.data["i"] for e in await backend.events.read(key)]
    reports = backend.quarantine.recent()
    assert len(FOREIGN) + 2 == backend.quarantine.count == len(reports)
    assert {(key.workflow_id, key.run_id)} == {(r.workflow_id, r.run_id) for r in reports}
    assert {log._run(key).subject} == {r.subject for r in reports}
    assert len({r.sequence for r in reports}) == len(reports)


async def test_truncation_keeps_the_last_events_whatever_foreign_messages_follow(
    backend: Backend,
) -> None:
    key = new_key()
    log = _log(backend)
    for i in range(1, 5):
        await backend.events.append(key, ev(i=i), expected_last=i - 1, idempotency_id=str(i))
    await log._conn.js.publish(log._run(key).subject, b"foreign", headers=None)
    await backend.events.truncate(key, keep_last=1)
    assert [4] == [e.data["i"] for e in await backend.events.read(key)]
    await log._conn.js.publish(log._run(key).subject, b"foreign", headers=None)
    await backend.events.append(key, ev(i=5), expected_last=4, idempotency_id="5")
    await backend.events.append(key, ev(i=6), expected_last=5, idempotency_id="6")
    await log._conn.js.publish(log._run(key).subject, b"foreign", headers=None)
    await backend.events.truncate(key, keep_last=2)
    assert [5, 6] == [e.data["i"] for e in await backend.events.read(key)]
    assert 6 == await backend.events.last_sequence(key)


async def test_truncation_keeps_only_the_last_event_whoever_appended_it_since(
    backend: Backend, other: Backend
) -> None:
    """The tail is read at truncation: this connection's cached tail may be behind (another
    process appended since, or an append of ours whose ack never came)."""
    key = new_key()
    log = _log(backend)
    for i in range(1, 4):
        await backend.events.append(key, ev(i=i), expected_last=i - 1, idempotency_id=str(i))
    await other.events.append(key, ev(i=4), expected_last=3, idempotency_id="4")
    await backend.events.truncate(key, keep_last=1)  # its cache says 3 is last
    assert [4] == [e.data["i"] for e in await backend.events.read(key)]
    # a foreign message last is not taken for riverrun's tail either
    await log._conn.js.publish(log._run(key).subject, b"foreign", headers=None)
    await other.events.append(key, ev(i=5), expected_last=4, idempotency_id="5")
    await other.events.truncate(key, keep_last=1)
    assert [5] == [e.data["i"] for e in await backend.events.read(key)]
