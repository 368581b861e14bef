"""A result waited on in a process that does not host the chain: the chain's worker announces
its end, so the waiter reads the store when it ends instead of polling it meanwhile."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from riverrun import wait_for_signal, workflow
from riverrun.runtime._services import Services

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@workflow()
async def waits_for_go(name: str) -> str:
    return f"{name}: {await wait_for_signal('go')}"


def count_reads(monkeypatch: pytest.MonkeyPatch, services: Services) -> dict[str, int]:
    """Count the run-record reads ``services`` makes (the waiting handles' reads)."""
    reads = {"n": 0}
    original = Services.read_run

    async def read_run(self: Services, *args: Any, **kwargs: Any) -> Any:
        if self is services:
            reads["n"] += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Services, "read_run", read_run)
    return reads


async def wait_then_signal(client_rt: Any, count: int, reads: dict[str, int]) -> tuple[list[str], int]:
    """Start ``count`` chains that wait for a signal, wait on their results for 0.6 s, then
    signal them: the results, and the run reads the waiters made before the signals."""
    handles = [
        await client_rt.client.start(waits_for_go, f"w{i}", workflow_id=f"ends-{i}")
        for i in range(count)
    ]
    results: dict[int, str] = {}

    async def wait(i: int) -> None:
        results[i] = await handles[i].result(timeout=30)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(wait, i)
        await anyio.sleep(0.6)  # a poller (every 20 ms, doubling) reads 5 times meanwhile
        waiting_reads = reads["n"]
        for i, handle in enumerate(handles):
            await handle.signal("go", i)
    return [results[i] for i in range(count)], waiting_reads


async def test_a_waiter_elsewhere_is_told_of_the_end_instead_of_polling(
    shared_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with shared_runtime(workflows=[waits_for_go]), shared_runtime() as client_rt:
        reads = count_reads(monkeypatch, client_rt._services)
        results, waiting_reads = await wait_then_signal(client_rt, 5, reads)
        assert [f"w{i}: {i}" for i in range(5)] == results
        # one read each as it starts waiting; the backstop polls only after 1 s
        assert 5 == waiting_reads


async def test_a_waiter_that_cannot_listen_polls_and_gets_the_result_all_the_same(
    shared_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def cannot_listen(self: Services) -> bool:
        return False

    monkeypatch.setattr(Services, "watch_ends", cannot_listen)
    async with shared_runtime(workflows=[waits_for_go]), shared_runtime() as client_rt:
        reads = count_reads(monkeypatch, client_rt._services)
        results, waiting_reads = await wait_then_signal(client_rt, 5, reads)
        assert [f"w{i}: {i}" for i in range(5)] == results
        assert waiting_reads >= 5 * 4  # what the announcements save
