"""Workflows for the security tests: small, but each touches events, the inbox and records."""

from __future__ import annotations

from riverrun import continue_as_new, execute_child, sleep, step, wait_for_signal, workflow


@step()
async def double(n: int) -> int:
    return 2 * n


@workflow()
async def doubler(n: int) -> int:
    return await double(n)


@workflow()
async def approval(n: int) -> str:
    decision = await wait_for_signal("decide")
    return f"{n}: {decision}"


@workflow()
async def everything(blob: bytes, rounds: int) -> int:
    """A timer, a child, a claim-checked argument and continue-as-new (truncation): what a
    worker does to the namespace's streams and buckets, in one workflow."""
    await sleep(0.01)
    child = await execute_child(doubler, rounds)
    if rounds > 0:
        continue_as_new(blob, rounds - 1)
    return len(blob) + child


@workflow()
async def big_result(size: int) -> bytes:
    """A result over the claim-check threshold: the client reads it from the object store."""
    return b"r" * size
