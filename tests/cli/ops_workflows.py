"""Workflows for tests/cli/test_operations.py: the CLI test workflows plus chains that show
the ``runs list`` red flags."""

from __future__ import annotations

from riverrun import continue_as_new, info, step, workflow
from tests.cli.workflows import countdown, greeter, waiter

__all__ = ["countdown", "greeter", "growing", "repeating", "waiter"]


@step()
async def work(n: int) -> int:
    return n


@workflow()
async def growing(rounds: int, done: int = 0) -> int:
    """Each run redoes everything the runs before it did, plus one: a growing history."""
    for n in range(done + 1):
        await work(n)
    if done + 1 < rounds:
        continue_as_new(rounds, done=done + 1)
    return done + 1


@workflow()
async def repeating(task: str, runs: int = 3) -> str:
    """Continues with the same arguments: the same task over and over."""
    await work(0)
    if info().execution < runs:
        continue_as_new(task, runs=runs)
    return task
