"""Workflows hosted by the worker subprocess of the CLI tests (``riverrun worker
tests.cli.workflows``)."""

from __future__ import annotations

from typing import Any

from riverrun import continue_as_new, sleep, step, wait_for_signal, workflow


@step()
async def count(n: int) -> int:
    return n


@workflow()
async def greeter(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@workflow()
async def countdown(n: int, total: int = 0) -> dict[str, int]:
    """Continues as new ``n`` times, one step per run: a chain of ``n + 1`` runs."""
    total += await count(n)
    if n > 0:
        continue_as_new(n - 1, total=total)
    return {"total": total}


@workflow()
async def waiter(signal_name: str = "go") -> Any:
    return await wait_for_signal(signal_name)


@workflow()
async def sleeper(seconds: float = 3600) -> str:
    await sleep(seconds)
    return "woke up"


@workflow()
async def failing(message: str = "boom") -> None:
    raise ValueError(message)


@workflow()
async def continue_then_sleep(stage: int = 0) -> str:
    """Continues as new once, then sleeps: a running chain with an old run id."""
    if stage == 0:
        continue_as_new(stage=1)
    await sleep(3600)
    return "woke up"
