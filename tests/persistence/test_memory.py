"""The memory backend: every contract suite, plus what only a virtual clock can show."""


from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from riverrun.persistence import (
    Backend,
    ChainEnds,
    Clock,
    CodecError,
    EventLog,
    Inbox,
    NewEvent,
    OwnershipStore,
    PayloadStore,
    RunKey,
    RunStore,
    SnapshotStore,
)
from riverrun.persistence._codec import Codec
from riverrun.persistence._memory import (
    MemoryPayloadStore,
    MemorySnapshotStore,
    open_memory_backend,
)
from riverrun.persistence._memory_inbox import MemoryInbox
from riverrun.persistence._memory_log import MemoryEventLog
from riverrun.persistence._memory_owners import MemoryOwnershipStore
from riverrun.persistence._memory_runs import MemoryRunStore

from .contract import (
    ChainEndsContract,
    EventLogContract,
    InboxContract,
    OwnershipStoreContract,
    PayloadStoreContract,
    RunStoreContract,
    SnapshotStoreContract,
)

pytestmark = pytest.mark.anyio


class TestMemoryEventLog(EventLogContract):
    @pytest.fixture
    async def event_log(self, codec: Codec) -> AsyncIterator[EventLog]:
        yield MemoryEventLog(codec)


class TestMemoryRunStore(RunStoreContract):
    @pytest.fixture
    async def run_store(self) -> AsyncIterator[RunStore]:
        yield MemoryRunStore(codec=Codec())


class TestMemoryOwnershipStore(OwnershipStoreContract):
    @pytest.fixture
    async def owners(self) -> AsyncIterator[OwnershipStore]:
        yield MemoryOwnershipStore()


class TestMemoryInbox(InboxContract):
    @pytest.fixture
    async def inbox(self) -> AsyncIterator[Inbox]:
        async with open_memory_backend() as backend:
            yield backend.inbox


class TestMemoryPayloadStore(PayloadStoreContract):
    @pytest.fixture
    async def payload_store(self) -> AsyncIterator[PayloadStore]:
        yield MemoryPayloadStore()


class TestMemorySnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    async def snapshot_store(self) -> AsyncIterator[SnapshotStore]:
        yield MemorySnapshotStore()


class TestMemoryChainEnds(ChainEndsContract):
    @pytest.fixture
    async def chain_ends(self) -> AsyncIterator[tuple[ChainEnds, ChainEnds]]:
        async with open_memory_backend() as backend:
            yield backend.ends, backend.ends  # runtimes sharing it share its announcements


# -- a virtual clock ---------------------------------------------------------------------------


class VirtualClock:
    """Time moves only when the test calls ``advance``; sleepers wake when it passes them."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moved = anyio.Event()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, deadline: datetime) -> None:
        while self._now < deadline:
            await self._moved.wait()

    def advance(self, delta: timedelta) -> None:
        self._now += delta
        self._moved.set()
        self._moved = anyio.Event()


async def settle() -> None:
    """Let every task that can run, run (the timer task reacts to a wake-up)."""
    for _ in range(20):
        await anyio.lowlevel.checkpoint()


T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
async def backend(clock: VirtualClock) -> AsyncIterator[Backend]:
    async with open_memory_backend(clock=clock) as backend:
        yield backend


async def test_open_memory_backend_provides_every_store(backend: Backend) -> None:
    assert "memory" == backend.name
    assert isinstance(backend.events, EventLog)
    assert isinstance(backend.runs, RunStore)
    assert isinstance(backend.inbox, Inbox)
    assert isinstance(backend.payloads, PayloadStore)
    assert isinstance(backend.snapshots, SnapshotStore)
    assert isinstance(backend.clock, Clock)


async def test_schedule_fires_when_the_virtual_clock_reaches_it(
    backend: Backend, clock: VirtualClock
) -> None:
    await backend.inbox.schedule("wf", "t1", T0 + timedelta(minutes=5), "timer.fired", {"t": 1})
    await settle()
    assert [] == await backend.inbox.read("wf")

    clock.advance(timedelta(minutes=4, seconds=59))
    await settle()
    assert [] == await backend.inbox.read("wf")

    clock.advance(timedelta(seconds=1))
    await settle()
    fired = await backend.inbox.read("wf")
    assert [("timer.fired", {"t": 1}, T0 + timedelta(minutes=5))] == [
        (m.kind, dict(m.data), m.timestamp) for m in fired
    ]

    clock.advance(timedelta(days=1))
    await settle()
    assert 1 == len(await backend.inbox.read("wf"))


async def test_an_earlier_schedule_added_later_wakes_the_timer(
    backend: Backend, clock: VirtualClock
) -> None:
    await backend.inbox.schedule("wf", "late", T0 + timedelta(hours=1), "timer.fired", {"t": 2})
    await settle()
    await backend.inbox.schedule("wf", "soon", T0 + timedelta(minutes=1), "timer.fired", {"t": 1})
    await settle()

    clock.advance(timedelta(minutes=1))
    await settle()
    assert [{"t": 1}] == [dict(m.data) for m in await backend.inbox.read("wf")]

    clock.advance(timedelta(hours=1))
    await settle()
    assert [{"t": 1}, {"t": 2}] == [dict(m.data) for m in await backend.inbox.read("wf")]


async def test_schedules_due_together_fire_in_time_order(
    backend: Backend, clock: VirtualClock
) -> None:
    for name, minutes in (("c", 3), ("a", 1), ("b", 2)):
        at = T0 + timedelta(minutes=minutes)
        await backend.inbox.schedule("wf", name, at, "timer.fired", {"n": name})

    clock.advance(timedelta(hours=1))
    await settle()

    assert ["a", "b", "c"] == [m.data["n"] for m in await backend.inbox.read("wf")]


async def test_rescheduling_a_timer_replaces_it(backend: Backend, clock: VirtualClock) -> None:
    await backend.inbox.schedule("wf", "t", T0 + timedelta(minutes=1), "timer.fired", {"v": 1})
    await backend.inbox.schedule("wf", "t", T0 + timedelta(minutes=2), "timer.fired", {"v": 2})

    clock.advance(timedelta(minutes=1))
    await settle()
    assert [] == await backend.inbox.read("wf")
    clock.advance(timedelta(minutes=1))
    await settle()
    assert [{"v": 2}] == [dict(m.data) for m in await backend.inbox.read("wf")]


async def test_cancelled_schedule_never_fires(backend: Backend, clock: VirtualClock) -> None:
    await backend.inbox.schedule("wf", "t", T0 + timedelta(minutes=1), "timer.fired", {})
    await backend.inbox.cancel_schedule("wf", "t")

    clock.advance(timedelta(hours=1))
    await settle()

    assert [] == await backend.inbox.read("wf")


async def test_leases_expire_by_the_injected_clock(backend: Backend, clock: VirtualClock) -> None:
    owners = backend.owners
    mine = await owners.acquire("default", 0, "a", timedelta(seconds=30))
    assert mine is not None
    assert T0 + timedelta(seconds=30) == mine.expires_at

    clock.advance(timedelta(seconds=29))
    assert None is await owners.acquire("default", 0, "b", timedelta(seconds=30))
    clock.advance(timedelta(seconds=1))
    theirs = await owners.acquire("default", 0, "b", timedelta(seconds=30))

    assert theirs is not None
    assert ("b", T0 + timedelta(seconds=60)) == (theirs.owner, theirs.expires_at)


async def test_schedule_without_a_timer_task_is_refused() -> None:
    inbox = MemoryInbox(VirtualClock(T0))
    with pytest.raises(RuntimeError, match="open_memory_backend"):
        await inbox.schedule("wf", "t", T0, "timer.fired", {})


async def test_timer_task_stops_with_the_backend(clock: VirtualClock) -> None:
    async with open_memory_backend(clock=clock) as backend:
        await backend.inbox.schedule("wf", "t", T0 + timedelta(minutes=1), "timer.fired", {})
        assert "timers=running" in repr(backend.inbox)
    assert "timers=stopped" in repr(backend.inbox)


async def test_errors_in_the_block_reach_the_caller_unwrapped(clock: VirtualClock) -> None:
    with pytest.raises(KeyError, match="boom"):
        async with open_memory_backend(clock=clock):
            raise KeyError("boom")


async def test_cancelling_the_block_stops_the_backend(clock: VirtualClock) -> None:
    with anyio.CancelScope() as scope:
        async with open_memory_backend(clock=clock) as backend:
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert "timers=stopped" in repr(backend.inbox)


async def test_events_over_the_size_limit_are_refused() -> None:
    log = MemoryEventLog(Codec(), max_event_bytes=1000)
    key = RunKey(workflow_id="wf", run_id="r")
    big = NewEvent(type="step.completed", timestamp=T0, data={"result": b"x" * 2000})

    with pytest.raises(CodecError, match="payload store"):
        await log.append(key, big, expected_last=0, idempotency_id="i")


async def test_corrupt_stored_event_names_run_and_sequence() -> None:
    codec = Codec()
    log = MemoryEventLog(codec)
    key = RunKey(workflow_id="wf-1", run_id="abc")
    for i in range(7):
        event = NewEvent(type="t", timestamp=T0, data={"i": i})
        await log.append(key, event, expected_last=i, idempotency_id=str(i))
    log._runs[key].events[6].raw = b"\xc1 not msgpack"  # simulate a corrupt record

    with pytest.raises(CodecError, match="run wf-1/abc event #7"):
        await log.read(key)


async def test_naive_timestamp_is_refused() -> None:
    log = MemoryEventLog(Codec())
    event = NewEvent(type="t", timestamp=datetime(2030, 1, 1), data={})
    with pytest.raises(CodecError, match="timezone-aware"):
        await log.append(
            RunKey(workflow_id="w", run_id="r"), event, expected_last=0, idempotency_id="i"
        )


@pytest.mark.slow
@pytest.mark.parametrize("size", [3 * 1024 * 1024, 50 * 1024 * 1024], ids=["3MB", "50MB"])
async def test_large_payloads_round_trip(size: int) -> None:
    store = MemoryPayloadStore()
    data = _pattern(size)

    ref = await store.put(data)

    assert data == await store.get(ref)


def _pattern(size: int) -> bytes:
    block = bytes(range(256)) * 4096  # 1 MiB with no repetition at small strides
    return (block * (size // len(block) + 1))[:size]
