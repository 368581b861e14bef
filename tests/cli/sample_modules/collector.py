"""A workflow that reports the garbage-collector thresholds of the worker hosting it."""

import gc

from riverrun import step, workflow


@step()
async def thresholds() -> list[int]:
    return list(gc.get_threshold())


@workflow()
async def collector_thresholds() -> list[int]:
    return await thresholds()
