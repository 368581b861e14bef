"""Task queues and partitioned ownership: workers of different queues never wait for each
other, partitions are handed over on join and leave without losing or repeating work, and a
workflow id always maps to the same partition."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import attrs
import pytest

from riverrun import Runtime, RuntimeOptions, step, wait_for_signal, workflow
from riverrun._errors import StoreUnavailable
from riverrun.persistence import (
    DEFAULT_PARTITIONS,
    Backend,
    IncompatibleStoreConfig,
    Member,
    open_memory_backend,
    partition_of,
)
from riverrun.runtime._membership import assign
from riverrun.testing import wait_until

pytestmark = pytest.mark.anyio

#: how often each (workflow id, step) ran, across every worker of a test
RUNS: collections.Counter[tuple[str, str]] = collections.Counter()


@step()
async def mark(workflow_id: str, what: str) -> str:
    RUNS[(workflow_id, what)] += 1
    return what


@workflow(queue="alpha")
async def on_alpha(workflow_id: str, /) -> str:
    return await mark(workflow_id, "alpha")


@workflow(queue="beta")
async def on_beta(workflow_id: str, /) -> str:
    return await mark(workflow_id, "beta")


@workflow()
async def waits_then_steps(workflow_id: str, /) -> str:
    first = await mark(workflow_id, "before")
    got = await wait_for_signal("go")
    second = await mark(workflow_id, "after")
    return f"{first}-{got}-{second}"


RuntimeMaker = Callable[..., AbstractAsyncContextManager[Runtime]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_runtime(shared_runtime: RuntimeMaker) -> RuntimeMaker:
    """``make_runtime(workflows=..., **options)``: runtimes that share one namespace."""
    RUNS.clear()
    return shared_runtime


def test_the_partition_of_an_id_is_stable() -> None:
    # CRC-32 of the id's UTF-8 bytes: the same in every process, Python version and machine
    assert [15, 5, 2, 14] == [
        partition_of(i, DEFAULT_PARTITIONS) for i in ("order-1", "order-2", "batch-1", "é/ü")
    ]
    assert all(0 <= partition_of(f"wf-{i}", 5) < 5 for i in range(100))


def test_partitions_are_assigned_deterministically_and_balanced() -> None:
    members = ["w-c", "w-a", "w-b"]
    first = assign(members, "default", 16)
    assert first == assign(list(reversed(members)), "default", 16)
    assert set(range(16)) == set(first)
    load = collections.Counter(first.values())
    assert max(load.values()) - min(load.values()) <= 1
    # a member joining takes its share from the others; most stay where they were
    joined = assign([*members, "w-d"], "default", 16)
    moved = [p for p in range(16) if first[p] != joined[p]]
    assert [4, 4, 4, 4] == sorted(collections.Counter(joined.values()).values())
    assert len(moved) <= 8
    assert {} == assign([], "default", 16)


async def test_two_workers_of_different_queues_never_delay_each_other(
    make_runtime: RuntimeMaker,
) -> None:
    """The 31-35 s case: two workers registering different workflows in one namespace. With
    per-workflow leases, the worker that cannot host a type could take its lease first and
    hold it for a lease period (30 s here). Each queue's partitions now belong to its own
    worker: every result arrives long before any lease could have expired."""
    ttl = {"lease_ttl": timedelta(seconds=30)}
    async with (
        make_runtime(workflows=[on_alpha], **ttl) as alpha,
        make_runtime(workflows=[on_beta], **ttl) as beta,
    ):
        assert alpha.worker is not None and beta.worker is not None
        assert ["alpha"] == alpha.worker.queues and ["beta"] == beta.worker.queues
        handles = []
        for i in range(8):
            # each client starts both types: the type's queue decides who hosts it
            for client in (alpha.client, beta.client):
                handles.append(await client.start(on_alpha, f"a-{i}-{id(client)}"))
                handles.append(await client.start(on_beta, f"b-{i}-{id(client)}"))
        results = [await h.result(timeout=10) for h in handles]
        assert ["alpha", "beta"] * 16 == results
        assert 16 == alpha.worker.statistics().started == beta.worker.statistics().started
        assert {"alpha": list(range(16))} == alpha.worker.partitions()
        assert {"beta": list(range(16))} == beta.worker.partitions()
    assert all(count == 1 for count in RUNS.values())


async def test_partitions_are_handed_over_on_join_and_leave_losing_and_repeating_nothing(
    make_runtime: RuntimeMaker,
) -> None:
    fast = {"lease_ttl": timedelta(seconds=1.5), "passivate_after": None}
    ids = [f"handoff-{i}" for i in range(12)]
    async with make_runtime(workflows=[waits_then_steps], **fast) as first:
        assert first.worker is not None
        a = first.worker
        handles = [await first.client.start(waits_then_steps, i, workflow_id=i) for i in ids]

        async def all_waiting() -> bool:
            return all(RUNS[(i, "before")] == 1 for i in ids)

        await wait_until(all_waiting, timeout=20)
        assert 16 == len(a.partitions()["default"])
        async with make_runtime(workflows=[waits_then_steps], **fast) as second:
            assert second.worker is not None
            b = second.worker

            async def shared() -> bool:
                mine, theirs = a.partitions()["default"], b.partitions()["default"]
                return len(mine) == len(theirs) == 8 and not set(mine) & set(theirs)

            # the joining worker gets its half; the first hands it over gracefully
            await wait_until(shared, timeout=30)
            for i in ids[:6]:
                await second.client.get_handle(i).signal("go", "joined")
            for handle in handles[:6]:
                assert "before-joined-after" == await handle.result(timeout=20)
        # the second worker stopped: its partitions go back to the first

        async def all_back() -> bool:
            return 16 == len(a.partitions()["default"])

        await wait_until(all_back, timeout=30)
        for i in ids[6:]:
            await first.client.get_handle(i).signal("go", "left")
        for handle in handles[6:]:
            assert "before-left-after" == await handle.result(timeout=20)
        assert 0 < b.statistics().started
    # every step of every workflow ran exactly once, whoever hosted it
    assert {(i, w): 1 for i in ids for w in ("before", "after")} == dict(RUNS)


async def test_a_dead_workers_partitions_are_claimed_when_its_leases_expire_not_a_period_later(
    make_runtime: RuntimeMaker,
) -> None:
    """Failover within the lease TTL: a worker whose member record and leases run out
    between two of the survivor's rounds is taken over as soon as they expire. Rounds used
    to come only every ttl/3 (100 s here), so a kill cost up to ttl + ttl/3 (bench/cluster.py's
    failover target is ttl + 2 s)."""
    slow = {"lease_ttl": timedelta(seconds=300)}
    async with make_runtime(workflows=[waits_then_steps], **slow) as rt:
        assert rt.worker is not None
        survivor = rt.worker
        assert 16 == len(survivor.partitions()["default"])
        owners = rt.backend.owners
        expires = datetime.now(UTC) + timedelta(seconds=5)
        # another worker joins (it will die: its record is never renewed) ...
        await owners.heartbeat(
            Member(
                worker_id="doomed",
                queues=("default",),
                workflows=("waits_then_steps",),
                expires_at=expires,
            )
        )
        survivor.ownership.wake()

        async def handed_over() -> bool:
            return 8 == len(survivor.partitions()["default"])

        await wait_until(handed_over, timeout=30)
        # ... takes the partitions handed to it, with leases that outlive its record by 1 s
        taken = [p for p in range(16) if p not in survivor.partitions()["default"]]
        for partition in taken:
            ttl = expires + timedelta(seconds=1) - datetime.now(UTC)
            assert await owners.acquire("default", partition, "doomed", ttl) is not None

        async def all_back() -> bool:
            return 16 == len(survivor.partitions()["default"])

        # its record expires, then its leases: the survivor claims them then, long before
        # its next regular round (100 s)
        await wait_until(all_back, timeout=60)


def on_backend(backend: Backend) -> Runtime:
    """A runtime (worker included, passivation off) on ``backend``, as it is."""

    @contextlib.asynccontextmanager
    async def factory(_codec: Any) -> AsyncIterator[Backend]:
        yield backend

    return Runtime(
        factory, workflows=[waits_then_steps], options=RuntimeOptions(passivate_after=None)
    )


class GatedIndex:
    """An ownership store whose index listing fails once per partition (the store
    unreachable), then waits for ``gate``."""

    def __init__(self, owners: Any) -> None:
        self._owners = owners
        self.gate = anyio.Event()
        self.failed: set[tuple[str, int]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._owners, name)

    async def index_list(self, queue: str, partition: int) -> list[tuple[str, str]]:
        if (queue, partition) not in self.failed:
            self.failed.add((queue, partition))
            raise StoreUnavailable("the index is out of reach (injected)")
        await self.gate.wait()
        listed: list[tuple[str, str]] = await self._owners.index_list(queue, partition)
        return listed


async def test_claiming_partitions_does_not_wait_for_their_workflows_to_resume() -> None:
    """A worker's first ownership round used to resume every chain of the partitions it
    claimed before going on: with thousands of workflows per partition the round outlasted
    the lease TTL (bench/ownership.py: 27 s for 10,000), and an index listing that failed
    failed the round (the worker did not start, or a claim never resumed its workflows).
    Claims now resume in the background, retrying the listing while the store is out."""
    RUNS.clear()
    ids = [f"resume-{i}" for i in range(6)]
    async with open_memory_backend() as shared:

        async with on_backend(shared) as first:
            for i in ids:
                await first.client.start(waits_then_steps, i, workflow_id=i)

            async def all_waiting() -> bool:
                return all(RUNS[(i, "before")] == 1 for i in ids)

            await wait_until(all_waiting, timeout=20)
        gated = GatedIndex(shared.owners)
        # (fail_after: without the fix the runtime never starts, its round waits for the index)
        with anyio.fail_after(60):
            async with on_backend(attrs.evolve(shared, owners=gated)) as second:
                assert second.worker is not None
                # every partition is claimed, none of its workflows is resumed yet
                assert 16 == len(second.worker.partitions()["default"])
                assert 0 == second.worker.statistics().active
                gated.gate.set()

                async def all_resumed() -> bool:
                    assert second.worker is not None
                    return len(ids) == second.worker.statistics().active

                await wait_until(all_resumed, timeout=20)
                for i in ids:
                    await second.client.get_handle(i).signal("go", "resumed")
                for i in ids:
                    handle = second.client.get_handle(i)
                    assert "before-resumed-after" == await handle.result(timeout=20)
        assert 16 == len(gated.failed)
    assert {(i, w): 1 for i in ids for w in ("before", "after")} == dict(RUNS)


async def test_a_partition_count_other_than_the_namespaces_is_refused(
    make_runtime: RuntimeMaker,
) -> None:
    async with make_runtime(workflows=[on_alpha]) as rt:
        assert DEFAULT_PARTITIONS == rt.backend.partitions
        with pytest.raises(IncompatibleStoreConfig, match="has 16 partitions per queue"):
            await rt.backend.owners.partitions(8)


class CountingHeads:
    """A run store that counts the chain-head reads in flight at once."""

    def __init__(self, runs: Any) -> None:
        self._runs = runs
        self.in_flight = 0
        self.peak = 0
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runs, name)

    async def get_head(self, workflow_id: str) -> Any:
        self.in_flight += 1
        self.reads += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(0.005)  # a store round trip
            return await self._runs.get_head(workflow_id)
        finally:
            self.in_flight -= 1


async def test_a_claimed_partition_is_read_back_a_batch_at_a_time() -> None:
    """Claiming partitions that hold many chains reads them back from the store a bounded
    number at a time: 10,000 head and history reads sent together time out together, and
    every workflow then restarts (bench/ownership.py found it)."""
    RUNS.clear()
    ids = [f"many-{i}" for i in range(200)]
    async with open_memory_backend() as shared:

        async with on_backend(shared) as first:
            for i in ids:
                await first.client.start(waits_then_steps, i, workflow_id=i)

            async def all_waiting() -> bool:
                return all(RUNS[(i, "before")] == 1 for i in ids)

            await wait_until(all_waiting, timeout=30)
        counting = CountingHeads(shared.runs)
        async with on_backend(attrs.evolve(shared, runs=counting)) as second:
            assert second.worker is not None

            async def all_resumed() -> bool:
                assert second.worker is not None
                return len(ids) == second.worker.statistics().active

            await wait_until(all_resumed, timeout=60)
            assert counting.reads > 32  # (so the bound below shows something)
            assert 1 < counting.peak <= 32
            for i in ids[:5]:
                await second.client.get_handle(i).signal("go", "back")
                assert "before-back-after" == await second.client.get_handle(i).result(timeout=20)
