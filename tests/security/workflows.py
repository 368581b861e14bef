"""Workflows for the security tests: small, but each touches events, the inbox and records."""

from __future__ import annotations

from riverrun import step, wait_for_signal, workflow


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
