"""The workflow bench/cluster.py runs on ``riverrun worker`` processes.

``five(n, delay)`` runs five steps; each returns its value plus one, the pid of the worker that
ran it and the wall-clock time it ran at, so the bench can tell which worker ran which step and
when (failover: the first step the survivor ran for a workflow the killed worker had hosted).
The result is ``{"value": n + 5, "marks": [[pid, time], ...]}``.

Run by hand: ``riverrun worker bench/cluster_workflows.py`` from the repository root.
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from riverrun import step, workflow

STEPS = 5


@step()
async def mark(value: int, delay: float) -> list[Any]:
    if delay:
        await anyio.sleep(delay)
    return [value + 1, os.getpid(), time.time()]


@workflow()
async def five(n: int, delay: float = 0.0) -> dict[str, Any]:
    value = n
    marks: list[list[Any]] = []
    for _ in range(STEPS):
        value, pid, at = await mark(value, delay)
        marks.append([pid, at])
    return {"value": value, "marks": marks}
