"""Task queues and partitioned ownership: workers of different queues never wait for each
other, partitions are handed over on join and leave without losing or repeating work, and a
workflow id always maps to the same partition."""

from __future__ import annotations

import collections
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import pytest

from riverrun import Runtime, step, wait_for_signal, workflow
from riverrun.persistence import (
    DEFAULT_PARTITIONS,
    IncompatibleStoreConfig,
    Member,
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


async def test_a_partition_count_other_than_the_namespaces_is_refused(
    make_runtime: RuntimeMaker,
) -> None:
    async with make_runtime(workflows=[on_alpha]) as rt:
        assert DEFAULT_PARTITIONS == rt.backend.partitions
        with pytest.raises(IncompatibleStoreConfig, match="has 16 partitions per queue"):
            await rt.backend.owners.partitions(8)
