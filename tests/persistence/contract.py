"""Contract test suites: what every backend of each persistence protocol must do.

Each class is abstract: a backend's test module subclasses it and overrides the store fixture
(an async generator fixture is fine)::

    class TestMemoryEventLog(EventLogContract):
        @pytest.fixture
        async def event_log(self, codec: Codec) -> AsyncIterator[EventLog]:
            yield MemoryEventLog(codec)

Fixtures to provide: ``event_log`` (built with the ``codec`` fixture defined here, which
registers a versioned event type), ``run_store``, ``inbox`` (its schedules must fire in real
time), ``payload_store``, ``snapshot_store``. Each test uses fresh, random ids, so a backend
may hand out one store shared by several tests. Nothing here assumes memory internals:
timers fire after a short real delay and are awaited through ``watch()``/``read()``, never by
sleeping a fixed time.
"""


from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import attrs
import pytest

from riverrun.persistence import (
    Append,
    ChainEnds,
    ChainHead,
    CodecError,
    ConcurrencyConflict,
    EventLog,
    Inbox,
    InboxMessage,
    IncompatibleStoreConfig,
    Member,
    NewEvent,
    NotFoundInStore,
    OwnershipStore,
    PayloadStore,
    RunKey,
    RunStatus,
    RunStore,
    SnapshotStore,
    WorkflowRun,
)
from riverrun.persistence._codec import Codec

pytestmark = pytest.mark.anyio

#: upper bound for anything awaited in a contract test; only reached when a test fails
WAIT = 10.0


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_key() -> RunKey:
    return RunKey(workflow_id=new_id("wf"), run_id=new_id("run"))


def event(type_: str = "test.happened", **data: Any) -> NewEvent:
    return NewEvent(type=type_, timestamp=datetime.now(UTC), data=data)


class _Unencodable:
    pass


_MISSING = "a backend's contract test class must override the {!r} fixture"


# -- event log ---------------------------------------------------------------------------------


class EventLogContract:
    """Fixture to provide: ``event_log`` (an ``EventLog`` using the ``codec`` fixture)."""

    @pytest.fixture
    def codec(self) -> Codec:
        codec = Codec()
        codec.register_event("test.versioned", 2)
        codec.register_upcaster("test.versioned", 1, lambda d: {**d, "added": d["n"] * 10})
        return codec

    @pytest.fixture
    async def event_log(self, codec: Codec) -> AsyncIterator[EventLog]:
        raise NotImplementedError(_MISSING.format("event_log"))

    async def append_n(self, log: EventLog, key: RunKey, n: int, start: int = 0) -> None:
        for i in range(start, start + n):
            assert i + 1 == await log.append(
                key, event(n=i), expected_last=i, idempotency_id=f"{key.run_id}-{i}"
            )

    async def test_append_then_read_in_order(self, event_log: EventLog) -> None:
        key = new_key()
        now = datetime.now(UTC)
        first = NewEvent(type="workflow.started", timestamp=now, data={"args": (1, "x")})
        second = NewEvent(type="step.completed", timestamp=now, data={"result": [1, 2]})
        assert 1 == await event_log.append(key, first, expected_last=0, idempotency_id="a")
        assert 2 == await event_log.append(key, second, expected_last=1, idempotency_id="b")

        events = await event_log.read(key)

        assert [(1, "workflow.started"), (2, "step.completed")] == [
            (e.sequence, e.type) for e in events
        ]
        assert [{"args": (1, "x")}, {"result": [1, 2]}] == [dict(e.data) for e in events]
        assert [key, key] == [e.key for e in events]
        assert [now, now] == [e.timestamp for e in events]
        assert all(e.size > 0 for e in events)

    async def test_read_of_an_unknown_run_is_empty(self, event_log: EventLog) -> None:
        key = new_key()
        assert [] == await event_log.read(key)
        assert 0 == await event_log.last_sequence(key)

    async def test_last_sequence(self, event_log: EventLog) -> None:
        key = new_key()
        await self.append_n(event_log, key, 3)
        assert 3 == await event_log.last_sequence(key)

    async def test_read_after_and_limit(self, event_log: EventLog) -> None:
        key = new_key()
        await self.append_n(event_log, key, 6)

        assert [4, 5, 6] == [e.sequence for e in await event_log.read(key, after=3)]
        assert [3, 4] == [e.sequence for e in await event_log.read(key, after=2, limit=2)]
        assert [] == await event_log.read(key, after=6)

    async def test_stream_yields_every_event_lazily(self, event_log: EventLog) -> None:
        key = new_key()
        await self.append_n(event_log, key, 5)

        streamed = [e.sequence async for e in event_log.stream(key, after=1)]

        assert [2, 3, 4, 5] == streamed
        assert [] == [e async for e in event_log.stream(new_key())]

    async def test_size_is_the_encoded_size(self, event_log: EventLog) -> None:
        key = new_key()
        await event_log.append(key, event(blob=b""), expected_last=0, idempotency_id="s1")
        await event_log.append(key, event(blob=b"x" * 1000), expected_last=1, idempotency_id="s2")

        small, big = await event_log.read(key)

        assert 1000 <= big.size - small.size

    async def test_stale_expected_last_is_a_conflict(self, event_log: EventLog) -> None:
        key = new_key()
        await self.append_n(event_log, key, 2)

        with pytest.raises(ConcurrencyConflict):
            await event_log.append(key, event(), expected_last=1, idempotency_id="late")
        with pytest.raises(ConcurrencyConflict):
            await event_log.append(key, event(), expected_last=5, idempotency_id="ahead")
        assert 2 == await event_log.last_sequence(key)

    async def test_racing_writers_exactly_one_wins(self, event_log: EventLog) -> None:
        key = new_key()
        await self.append_n(event_log, key, 1)
        outcomes: list[str] = []

        async def write(name: str) -> None:
            try:
                await event_log.append(key, event(by=name), expected_last=1, idempotency_id=name)
                outcomes.append("won")
            except ConcurrencyConflict:
                outcomes.append("lost")

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for name in ("w1", "w2", "w3", "w4"):
                    tg.start_soon(write, name)

        assert ["lost", "lost", "lost", "won"] == sorted(outcomes)
        assert 2 == await event_log.last_sequence(key)

    async def test_retried_append_stores_one_event(self, event_log: EventLog) -> None:
        key = new_key()
        await self.append_n(event_log, key, 1)

        first = await event_log.append(key, event(x=1), expected_last=1, idempotency_id="once")
        retry = await event_log.append(key, event(x=1), expected_last=1, idempotency_id="once")

        assert (2, 2) == (first, retry)
        assert [1, 2] == [e.sequence for e in await event_log.read(key)]

    async def test_non_encodable_data_fails_at_the_call_site(self, event_log: EventLog) -> None:
        key = new_key()
        bad = NewEvent(
            type="t", timestamp=datetime.now(UTC), data={"args": [1, {"x": _Unencodable()}]}
        )

        with pytest.raises(CodecError, match=r"\['args'\]\[1\]\['x'\]"):
            await event_log.append(key, bad, expected_last=0, idempotency_id="bad")
        assert 0 == await event_log.last_sequence(key)

    async def test_old_schema_versions_are_upcast_on_read(self, event_log: EventLog) -> None:
        key = new_key()
        old = NewEvent(
            type="test.versioned", timestamp=datetime.now(UTC), data={"n": 4}, schema_version=1
        )
        await event_log.append(key, old, expected_last=0, idempotency_id="v1")

        (stored,) = await event_log.read(key)

        assert (2, {"n": 4, "added": 40}) == (stored.schema_version, dict(stored.data))

    async def test_append_atomic_writes_every_run(self, event_log: EventLog) -> None:
        old, new = new_key(), new_key()
        await self.append_n(event_log, old, 2)

        sequences = await event_log.append_atomic(
            [
                Append(key=old, event=event("end"), expected_last=2, idempotency_id="h-old"),
                Append(key=new, event=event("start"), expected_last=0, idempotency_id="h-new"),
            ]
        )

        assert [3, 1] == sequences
        assert "end" == (await event_log.read(old, after=2))[0].type
        assert ["start"] == [e.type for e in await event_log.read(new)]

    async def test_append_atomic_with_one_stale_check_writes_nothing(
        self, event_log: EventLog
    ) -> None:
        old, new = new_key(), new_key()
        await self.append_n(event_log, old, 2)

        with pytest.raises(ConcurrencyConflict):
            await event_log.append_atomic(
                [
                    Append(key=new, event=event("start"), expected_last=0, idempotency_id="n"),
                    Append(key=old, event=event("end"), expected_last=1, idempotency_id="o"),
                ]
            )

        assert (2, 0) == (await event_log.last_sequence(old), await event_log.last_sequence(new))
        assert [] == await event_log.read(new)

    async def test_append_atomic_retry_stores_nothing_twice(self, event_log: EventLog) -> None:
        old, new = new_key(), new_key()
        await self.append_n(event_log, old, 1)
        batch = [
            Append(key=old, event=event("end"), expected_last=1, idempotency_id="r-old"),
            Append(key=new, event=event("start"), expected_last=0, idempotency_id="r-new"),
        ]

        first = await event_log.append_atomic(batch)
        retry = await event_log.append_atomic(batch)

        assert ([2, 1], [2, 1]) == (first, retry)
        assert (2, 1) == (await event_log.last_sequence(old), await event_log.last_sequence(new))

    async def test_truncate_keeps_the_last_events_and_their_sequences(
        self, event_log: EventLog
    ) -> None:
        key = new_key()
        await self.append_n(event_log, key, 5)

        await event_log.truncate(key, keep_last=2)

        assert [4, 5] == [e.sequence for e in await event_log.read(key)]
        assert [5] == [e.sequence for e in await event_log.read(key, after=4)]
        assert 5 == await event_log.last_sequence(key)
        assert 6 == await event_log.append(key, event(), expected_last=5, idempotency_id="next")

    async def test_truncate_to_nothing(self, event_log: EventLog) -> None:
        key = new_key()
        await self.append_n(event_log, key, 3)

        await event_log.truncate(key, keep_last=0)

        assert [] == await event_log.read(key)

    async def test_delete_removes_the_run_only(self, event_log: EventLog) -> None:
        key, other = new_key(), new_key()
        await self.append_n(event_log, key, 3)
        await self.append_n(event_log, other, 1)

        await event_log.delete(key)

        assert ([], 0) == (await event_log.read(key), await event_log.last_sequence(key))
        assert [1] == [e.sequence for e in await event_log.read(other)]


# -- run store ---------------------------------------------------------------------------------


def make_run(
    workflow_id: str,
    *,
    run_id: str | None = None,
    status: RunStatus = RunStatus.RUNNING,
    execution: int = 1,
    created_at: datetime | None = None,
    **fields: Any,
) -> WorkflowRun:
    return WorkflowRun(
        run_id=run_id or new_id("run"),
        workflow_id=workflow_id,
        workflow_name="wf.test",
        status=status,
        execution=execution,
        created_at=created_at or datetime.now(UTC),
        **fields,
    )


class RunStoreContract:
    """Fixture to provide: ``run_store`` (a ``RunStore`` on the system clock)."""

    @pytest.fixture
    async def run_store(self) -> AsyncIterator[RunStore]:
        raise NotImplementedError(_MISSING.format("run_store"))

    async def test_create_then_get(self, run_store: RunStore) -> None:
        run = make_run(new_id("wf"), result={"items": (1, 2)})

        revision = await run_store.put_run(run, expected_revision=None)
        got = await run_store.get_run(run.run_id)

        assert got is not None
        assert (run, revision) == (got.value, got.revision)
        assert None is await run_store.get_run(new_id("run"))

    async def test_create_twice_is_a_conflict(self, run_store: RunStore) -> None:
        run = make_run(new_id("wf"))
        await run_store.put_run(run, expected_revision=None)

        with pytest.raises(ConcurrencyConflict):
            await run_store.put_run(run, expected_revision=None)

    async def test_update_with_revision_then_stale_revision_conflicts(
        self, run_store: RunStore
    ) -> None:
        run = make_run(new_id("wf"))
        first = await run_store.put_run(run, expected_revision=None)
        done = make_run(
            run.workflow_id,
            run_id=run.run_id,
            status=RunStatus.COMPLETED,
            created_at=run.created_at,
            completed_at=datetime.now(UTC),
            result="ok",
        )

        second = await run_store.put_run(done, expected_revision=first)
        with pytest.raises(ConcurrencyConflict):
            await run_store.put_run(run, expected_revision=first)

        got = await run_store.get_run(run.run_id)
        assert got is not None
        assert (done, second) == (got.value, got.revision)
        assert second != first

    async def test_update_of_a_missing_record_conflicts(self, run_store: RunStore) -> None:
        with pytest.raises(ConcurrencyConflict):
            await run_store.put_run(make_run(new_id("wf")), expected_revision=1)

    async def test_delete_run(self, run_store: RunStore) -> None:
        run = make_run(new_id("wf"))
        await run_store.put_run(run, expected_revision=None)

        await run_store.delete_run(run.run_id)
        await run_store.delete_run(run.run_id)  # deleting nothing is fine

        assert None is await run_store.get_run(run.run_id)

    async def test_a_deleted_record_or_head_can_be_created_again(self, run_store: RunStore) -> None:
        run = make_run(new_id("wf"))
        head = ChainHead(
            workflow_id=run.workflow_id, workflow_name="n", first_run_id="r1", current_run_id="r1"
        )
        await run_store.put_run(run, expected_revision=None)
        await run_store.put_head(head, expected_revision=None)
        await run_store.delete_run(run.run_id)
        await run_store.delete_head(run.workflow_id)

        revision = await run_store.put_run(run, expected_revision=None)
        head_revision = await run_store.put_head(head, expected_revision=None)
        got, got_head = await run_store.get_run(run.run_id), await run_store.get_head(
            run.workflow_id
        )
        assert got is not None and (run, revision) == (got.value, got.revision)
        assert got_head is not None and (head, head_revision) == (got_head.value, got_head.revision)
        with pytest.raises(ConcurrencyConflict):  # and it exists again
            await run_store.put_run(run, expected_revision=None)
        with pytest.raises(ConcurrencyConflict):
            await run_store.put_head(head, expected_revision=None)

    async def test_list_runs_filters_and_orders_by_creation(self, run_store: RunStore) -> None:
        wf, other = new_id("wf"), new_id("wf")
        t0 = datetime.now(UTC)
        third = make_run(wf, execution=3, created_at=t0 + timedelta(seconds=2))
        first = make_run(
            wf, execution=1, status=RunStatus.CONTINUED_AS_NEW, created_at=t0 - timedelta(days=1)
        )
        second = make_run(
            wf, execution=2, status=RunStatus.CONTINUED_AS_NEW, created_at=t0 + timedelta(seconds=1)
        )
        foreign = make_run(other, created_at=t0)
        for run in (third, first, foreign, second):
            await run_store.put_run(run, expected_revision=None)

        assert [first, second, third] == await run_store.list_runs(workflow_id=wf)
        assert [first, second] == await run_store.list_runs(
            workflow_id=wf, status=RunStatus.CONTINUED_AS_NEW
        )
        everything = await run_store.list_runs()
        assert {first.run_id, second.run_id, third.run_id, foreign.run_id} <= {
            r.run_id for r in everything
        }
        created = [r.created_at for r in everything]
        assert sorted(created) == created
        running = await run_store.list_runs(status=RunStatus.RUNNING)
        assert {third.run_id, foreign.run_id} <= {r.run_id for r in running}
        assert {RunStatus.RUNNING} == {r.status for r in running}

    async def test_heads_create_update_conflict_delete(self, run_store: RunStore) -> None:
        wf = new_id("wf")
        head = ChainHead(workflow_id=wf, workflow_name="n", first_run_id="r1", current_run_id="r1")
        moved = ChainHead(workflow_id=wf, workflow_name="n", first_run_id="r1", current_run_id="r2")

        assert None is await run_store.get_head(wf)
        first = await run_store.put_head(head, expected_revision=None)
        with pytest.raises(ConcurrencyConflict):
            await run_store.put_head(head, expected_revision=None)
        second = await run_store.put_head(moved, expected_revision=first)
        with pytest.raises(ConcurrencyConflict):
            await run_store.put_head(head, expected_revision=first)

        got = await run_store.get_head(wf)
        assert got is not None
        assert (moved, second) == (got.value, got.revision)

        await run_store.delete_head(wf)
        assert None is await run_store.get_head(wf)


# -- ownership ---------------------------------------------------------------------------------


class OwnershipStoreContract:
    """Fixture to provide: ``owners`` (an ``OwnershipStore``, in a fresh namespace)."""

    @pytest.fixture
    async def owners(self) -> AsyncIterator[OwnershipStore]:
        raise NotImplementedError(_MISSING.format("owners"))
        yield  # pragma: no cover

    async def test_the_partition_count_is_stored_once(self, owners: OwnershipStore) -> None:
        stored = await owners.partitions(None)
        assert stored == await owners.partitions(stored)
        assert stored == await owners.partitions(None)
        with pytest.raises(IncompatibleStoreConfig, match=f"has {stored} partitions"):
            await owners.partitions(stored + 1)

    async def test_lease_is_refused_to_a_second_owner(self, owners: OwnershipStore) -> None:
        mine = await owners.acquire("q", 3, "worker-a", timedelta(seconds=30))
        theirs = await owners.acquire("q", 3, "worker-b", timedelta(seconds=30))
        other = await owners.acquire("q", 4, "worker-b", timedelta(seconds=30))

        assert mine is not None and other is not None
        assert ("q", 3, "worker-a") == (mine.queue, mine.partition, mine.owner)
        assert mine.expires_at > datetime.now(UTC)
        assert None is theirs
        assert mine == await owners.get_lease("q", 3)

    async def test_renewal_is_a_compare_and_set_on_the_revision(
        self, owners: OwnershipStore
    ) -> None:
        first = await owners.acquire("q", 0, "worker-a", timedelta(seconds=30))
        assert first is not None
        renewed = await owners.renew(first, timedelta(seconds=60))
        assert renewed is not None
        assert renewed.expires_at > first.expires_at
        assert renewed.revision != first.revision
        # a stale copy (an older revision) is refused: the fencing token moved on
        assert None is await owners.renew(first, timedelta(seconds=60))

    async def test_released_lease_can_be_taken(self, owners: OwnershipStore) -> None:
        mine = await owners.acquire("q", 1, "worker-a", timedelta(seconds=30))
        assert mine is not None
        await owners.release(mine)
        theirs = await owners.acquire("q", 1, "worker-b", timedelta(seconds=30))
        assert theirs is not None
        assert "worker-b" == theirs.owner
        # the old owner's late release must not drop the new owner's lease
        await owners.release(mine)
        assert None is await owners.acquire("q", 1, "worker-a", timedelta(seconds=30))

    async def test_expired_lease_can_be_taken_over(self, owners: OwnershipStore) -> None:
        mine = await owners.acquire("q", 2, "worker-a", timedelta(seconds=0.3))
        assert mine is not None
        theirs = None
        with anyio.fail_after(WAIT):
            while theirs is None:  # refused until the lease expires, then granted
                theirs = await owners.acquire("q", 2, "worker-b", timedelta(seconds=30))
                if theirs is None:
                    await anyio.sleep(0.05)
        assert "worker-b" == theirs.owner
        assert theirs.revision != mine.revision
        assert None is await owners.renew(mine, timedelta(seconds=30))

    async def test_members_heartbeat_and_leave(self, owners: OwnershipStore) -> None:
        until = datetime.now(UTC) + timedelta(seconds=30)
        a = Member(worker_id="a", host="h", pid=1, queues=("q",), workflows=("w",), expires_at=until)
        b = Member(worker_id="b/2", host="h", queues=("q", "r"), expires_at=until)
        await owners.heartbeat(a)
        await owners.heartbeat(b)
        later = attrs.evolve(a, expires_at=until + timedelta(seconds=1))
        await owners.heartbeat(later)
        assert {"a": later, "b/2": b} == {m.worker_id: m for m in await owners.members()}
        await owners.leave("b/2")
        assert [later] == await owners.members()

    async def test_the_index_lists_one_partition(self, owners: OwnershipStore) -> None:
        await owners.index_add("q", 5, "wf/1", "run-1")
        await owners.index_add("q", 5, "wf.2", "run-2")
        await owners.index_add("q", 6, "wf-3", "run-3")
        await owners.index_add("r", 5, "wf-4", "run-4")
        assert {("wf/1", "run-1"), ("wf.2", "run-2")} == set(await owners.index_list("q", 5))
        await owners.index_remove("q", 5, "wf/1", "run-1")
        await owners.index_remove("q", 5, "wf/1", "run-1")  # idempotent
        assert [("wf.2", "run-2")] == await owners.index_list("q", 5)
        assert [] == await owners.index_list("q", 7)


# -- inbox -------------------------------------------------------------------------------------


async def wait_for_messages(
    inbox: Inbox, workflow_id: str, count: int, *, after: int = 0
) -> list[InboxMessage]:
    """Poll ``read`` until ``count`` messages are there (bounded by ``WAIT``)."""
    with anyio.fail_after(WAIT):
        # polls the store under test, not a flag of ours: there is nothing else to wait on
        while len(messages := await inbox.read(workflow_id, after=after)) < count:  # noqa: ASYNC110
            await anyio.sleep(0.02)
    return messages


class InboxContract:
    """Fixture to provide: ``inbox`` (an ``Inbox`` whose schedules fire in real time)."""

    @pytest.fixture
    async def inbox(self) -> AsyncIterator[Inbox]:
        raise NotImplementedError(_MISSING.format("inbox"))

    async def test_send_then_read(self, inbox: Inbox) -> None:
        wf = new_id("wf")
        first = await inbox.send(wf, "signal", {"name": "go", "payload": (1, 2)})
        second = await inbox.send(wf, "cancel", {})

        messages = await inbox.read(wf)

        assert first < second
        assert [(first, "signal"), (second, "cancel")] == [(m.sequence, m.kind) for m in messages]
        assert {"name": "go", "payload": (1, 2)} == dict(messages[0].data)
        assert {wf} == {m.workflow_id for m in messages}
        assert all(m.timestamp.tzinfo is not None for m in messages)

    async def test_inboxes_are_per_workflow(self, inbox: Inbox) -> None:
        a, b = new_id("wf"), new_id("wf")
        await inbox.send(a, "signal", {"to": "a"})
        await inbox.send(b, "signal", {"to": "b"})

        assert [{"to": "a"}] == [dict(m.data) for m in await inbox.read(a)]
        assert [] == await inbox.read(new_id("wf"))

    async def test_read_after_and_limit(self, inbox: Inbox) -> None:
        wf = new_id("wf")
        sequences = [await inbox.send(wf, "signal", {"i": i}) for i in range(5)]

        assert sequences[2:] == [m.sequence for m in await inbox.read(wf, after=sequences[1])]
        assert sequences[1:3] == [
            m.sequence for m in await inbox.read(wf, after=sequences[0], limit=2)
        ]

    async def test_send_with_idempotency_id_stores_once(self, inbox: Inbox) -> None:
        wf = new_id("wf")
        first = await inbox.send(wf, "signal", {"n": 1}, idempotency_id="sig-1")
        again = await inbox.send(wf, "signal", {"n": 1}, idempotency_id="sig-1")

        assert first == again
        assert [first] == [m.sequence for m in await inbox.read(wf)]

    async def test_non_encodable_data_fails_at_the_call_site(self, inbox: Inbox) -> None:
        with pytest.raises(CodecError):
            await inbox.send(new_id("wf"), "signal", {"payload": _Unencodable()})

    async def test_purge_drops_consumed_messages(self, inbox: Inbox) -> None:
        wf = new_id("wf")
        sequences = [await inbox.send(wf, "signal", {"i": i}) for i in range(4)]

        await inbox.purge(wf, up_to=sequences[1])

        assert sequences[2:] == [m.sequence for m in await inbox.read(wf)]
        later = await inbox.send(wf, "signal", {"i": 4})
        assert later > sequences[-1]

    async def test_last_sequence_is_the_last_message_of_that_workflow(self, inbox: Inbox) -> None:
        wf, other = new_id("wf"), new_id("wf")
        assert 0 == await inbox.last_sequence(wf)
        sequences = [await inbox.send(wf, "signal", {"i": i}) for i in range(3)]
        await inbox.send(other, "signal", {"i": 9})

        assert sequences[-1] == await inbox.last_sequence(wf)
        await inbox.purge(wf, up_to=sequences[-1])
        assert await inbox.last_sequence(wf) in (0, sequences[-1])  # nothing left after it

    async def test_watch_sees_new_messages(self, inbox: Inbox) -> None:
        wf = new_id("wf")
        async with inbox.watch() as messages:
            sent = [await inbox.send(wf, "signal", {"i": i}) for i in range(3)]
            seen: list[int] = []
            with anyio.fail_after(WAIT):
                async for message in messages:
                    if message.workflow_id == wf:  # a shared store may carry other tests' traffic
                        seen.append(message.sequence)
                    if set(sent) <= set(seen):
                        break

        assert sent == sorted(set(seen))

    async def test_schedule_fires_once_at_its_time(self, inbox: Inbox) -> None:
        wf = new_id("wf")
        at = datetime.now(UTC) + timedelta(seconds=0.2)
        async with inbox.watch() as messages:
            await inbox.schedule(wf, "t1", at, "timer.fired", {"timer_id": "t1"})
            with anyio.fail_after(WAIT):
                async for message in messages:
                    if message.workflow_id == wf:
                        break

        assert datetime.now(UTC) >= at
        fired = await inbox.read(wf)
        assert [("timer.fired", {"timer_id": "t1"})] == [(m.kind, dict(m.data)) for m in fired]

    async def test_schedule_in_the_past_fires_at_once(self, inbox: Inbox) -> None:
        wf = new_id("wf")
        past = datetime.now(UTC) - timedelta(hours=1)

        await inbox.schedule(wf, "late", past, "timer.fired", {"timer_id": "late"})

        assert ["timer.fired"] == [m.kind for m in await wait_for_messages(inbox, wf, 1)]

    async def test_cancel_schedule_prevents_delivery(self, inbox: Inbox) -> None:
        wf = new_id("wf")
        now = datetime.now(UTC)
        await inbox.schedule(wf, "cancelled", now + timedelta(seconds=0.2), "timer.fired", {})
        await inbox.schedule(
            wf, "sentinel", now + timedelta(seconds=0.4), "timer.fired", {"timer_id": "sentinel"}
        )

        await inbox.cancel_schedule(wf, "cancelled")

        # once the later sentinel fired, the cancelled (earlier) one would have too
        messages = await wait_for_messages(inbox, wf, 1)
        assert [{"timer_id": "sentinel"}] == [dict(m.data) for m in messages]

    async def test_cancel_of_an_unknown_schedule_is_fine(self, inbox: Inbox) -> None:
        await inbox.cancel_schedule(new_id("wf"), "never-scheduled")


# -- payloads and snapshots ------------------------------------------------------------------


class PayloadStoreContract:
    """Fixture to provide: ``payload_store``."""

    @pytest.fixture
    async def payload_store(self) -> AsyncIterator[PayloadStore]:
        raise NotImplementedError(_MISSING.format("payload_store"))

    async def test_put_get_exists_delete(self, payload_store: PayloadStore) -> None:
        data = uuid.uuid4().bytes * 100

        ref = await payload_store.put(data)

        assert ref.startswith("sha256:")
        assert 64 + len("sha256:") == len(ref)
        assert data == await payload_store.get(ref)
        assert await payload_store.exists(ref)
        await payload_store.delete(ref)
        assert not await payload_store.exists(ref)
        with pytest.raises(NotFoundInStore):
            await payload_store.get(ref)

    async def test_put_is_idempotent(self, payload_store: PayloadStore) -> None:
        data = uuid.uuid4().bytes

        assert await payload_store.put(data) == await payload_store.put(data)
        assert data == await payload_store.get(await payload_store.put(data))

    async def test_reference_is_the_sha256_of_the_content(
        self, payload_store: PayloadStore
    ) -> None:
        import hashlib

        data = b"claim check " + uuid.uuid4().bytes
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == await payload_store.put(data)

    async def test_empty_payload(self, payload_store: PayloadStore) -> None:
        assert b"" == await payload_store.get(await payload_store.put(b""))

    async def test_unknown_reference_is_not_found(self, payload_store: PayloadStore) -> None:
        unknown = "sha256:" + uuid.uuid4().hex * 2
        assert not await payload_store.exists(unknown)
        with pytest.raises(NotFoundInStore):
            await payload_store.get(unknown)
        await payload_store.delete(unknown)  # deleting nothing is fine


class SnapshotStoreContract:
    """Fixture to provide: ``snapshot_store``."""

    @pytest.fixture
    async def snapshot_store(self) -> AsyncIterator[SnapshotStore]:
        raise NotImplementedError(_MISSING.format("snapshot_store"))

    async def test_put_get_overwrite_delete(self, snapshot_store: SnapshotStore) -> None:
        key = new_id("snap")

        assert None is await snapshot_store.get(key)
        await snapshot_store.put(key, b"first")
        assert b"first" == await snapshot_store.get(key)
        await snapshot_store.put(key, b"second, longer")
        assert b"second, longer" == await snapshot_store.get(key)
        await snapshot_store.delete(key)
        assert None is await snapshot_store.get(key)
        await snapshot_store.delete(key)  # deleting nothing is fine

    async def test_keys_are_independent(self, snapshot_store: SnapshotStore) -> None:
        a, b = new_id("snap"), new_id("snap")
        await snapshot_store.put(a, b"a")
        await snapshot_store.put(b, b"b")

        assert (b"a", b"b") == (await snapshot_store.get(a), await snapshot_store.get(b))

    async def test_keys_with_slashes_and_dots(self, snapshot_store: SnapshotStore) -> None:
        key = f"{new_id('wf')}/run.{uuid.uuid4().hex}/snapshot"
        await snapshot_store.put(key, b"\x00\xff" * 10)
        assert b"\x00\xff" * 10 == await snapshot_store.get(key)


class ChainEndsContract:
    """``ChainEnds``: fixture ``chain_ends`` yields two of them on one namespace (an announcer
    and a listener: two connections where the backend has them).

    Announcements are best effort (at most once), so these tests announce again until heard,
    and check who hears what.
    """

    async def announce_until_heard(
        self, announcer: ChainEnds, workflow_id: str, heard: _Heard
    ) -> None:
        with anyio.fail_after(WAIT):
            while workflow_id not in heard.ids:
                await announcer.announce(workflow_id)
                with anyio.move_on_after(0.2):
                    await heard.wait_for(workflow_id)

    async def test_a_listener_hears_the_ends_announced(
        self, chain_ends: tuple[ChainEnds, ChainEnds]
    ) -> None:
        announcer, listener = chain_ends
        ids = [new_id("end"), "order.42/é x", new_id("end")]
        heard = _Heard()
        await listener.listen(heard.add)
        for workflow_id in ids:
            await self.announce_until_heard(announcer, workflow_id, heard)
        assert set(ids) == {i for i in heard.ids if i in ids or i.startswith("end-")}

    async def test_a_failing_listener_does_not_keep_the_end_from_the_others(
        self, chain_ends: tuple[ChainEnds, ChainEnds]
    ) -> None:
        announcer, listener = chain_ends
        failed: list[str] = []

        def fails(workflow_id: str) -> None:
            failed.append(workflow_id)
            raise RuntimeError("a listener's own fault")

        heard = _Heard()
        await listener.listen(fails)
        await listener.listen(heard.add)
        workflow_id = new_id("end")
        await self.announce_until_heard(announcer, workflow_id, heard)
        assert workflow_id in failed  # it was called too, and its error went no further


class _Heard:
    """The workflow ids a listener heard, and a way to wait for one."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._news = anyio.Event()

    def add(self, workflow_id: str) -> None:
        self.ids.append(workflow_id)
        self._news.set()
        self._news = anyio.Event()

    async def wait_for(self, workflow_id: str) -> None:
        while workflow_id not in self.ids:
            await self._news.wait()
