"""Workflows shared by the runtime tests."""

from __future__ import annotations

from typing import Any

from riverrun import (
    continue_as_new,
    continue_as_new_versioned,
    info,
    step,
    wait_for_signal,
    workflow,
)


@step()
async def fetch_batch(offset: int, size: int, total: int = 1_000) -> list[int]:
    return list(range(offset, min(offset + size, total)))


@step()
async def process_item(item: int) -> int:
    return item * 2


@workflow()
async def batch_processor(offset: int = 0, batch_size: int = 100, total: int = 1_000) -> str:
    items = await fetch_batch(offset, batch_size, total)
    if not items:
        return f"Processed {offset} total items"
    continue_as_new(offset=offset + batch_size, batch_size=batch_size, total=total)


@workflow()
async def carries_args(n: int, *, label: str, nested: dict[str, Any]) -> dict[str, Any]:
    if n < 3:
        nested = {**nested, "seen": [*nested.get("seen", []), n]}
        continue_as_new(n + 1, label=f"{label}+", nested=nested)
    return {"n": n, "label": label, "nested": nested}


@workflow()
async def swallower(n: int) -> int:
    try:
        if n < 2:
            continue_as_new(n + 1)
    except Exception:  # must not catch the continuation
        return -1
    return n


@workflow()
async def signal_collector(target: int, got: list[Any]) -> list[Any]:
    while len(got) < target:
        got.append(await wait_for_signal("item"))
        if len(got) % 3 == 0 and len(got) < target:
            continue_as_new(target, got)
    return got


@workflow()
async def big_carrier(blob: bytes, rounds: int) -> int:
    if rounds > 0:
        continue_as_new(blob, rounds - 1)
    return len(blob)


@workflow()
async def info_reporter(n: int) -> dict[str, Any]:
    await process_item(n)
    i = info()
    if n < 1:
        continue_as_new(n + 1)
    return {
        "workflow_id": i.workflow_id,
        "run_id": i.run_id,
        "execution": i.execution,
        "history_length": i.history_length,
        "continued_from_run_id": i.continued_from_run_id,
        "suggested": i.continue_as_new_suggested,
    }


@workflow(name="versioned", version="1")
async def versioned_v1(n: int) -> str:
    continue_as_new_versioned("2", n + 1)


@workflow(name="versioned", version="2")
async def versioned_v2(n: int) -> str:
    return f"v2 got {n}"


@workflow()
async def stepper(steps: int, per_run: int, done: int = 0) -> int:
    for _ in range(per_run):
        if done >= steps:
            return done
        await process_item(done)
        done += 1
    if done >= steps:
        return done
    continue_as_new(steps, per_run, done)
