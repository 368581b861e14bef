"""CAN-fuzz: continue-as-new forced at every command boundary gives the same result, and no
signal, timer or step is lost or duplicated."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from riverrun import continue_as_new, info, sleep, step, wait_for_signal, workflow
from riverrun.testing import ContinueAsNewForcer, open_test_runtime

STEP_CALLS: Counter[tuple[str, int]] = Counter()


@step()
async def record(tag: str, i: int) -> int:
    STEP_CALLS[(tag, i)] += 1
    return i


@workflow()
async def accumulator(state: dict[str, Any]) -> dict[str, Any]:
    while state["i"] < 6:
        if info().continue_as_new_suggested:
            continue_as_new(state)
        if state["i"] % 2 == 0:
            state["got"].append(await wait_for_signal("v"))
        else:
            await sleep("1h")
            state["slept"] += 1
        await record(state["tag"], state["i"])
        state["i"] += 1
    return state


# six loop iterations of two commands each (a signal wait or a sleep, then the step)
COMMANDS = 12


async def run_forced(positions: set[int], tag: str) -> tuple[dict[str, Any], int]:
    forcer = ContinueAsNewForcer(positions)
    async with open_test_runtime([accumulator], force_continue=forcer) as rt:
        handle = await rt.client.start(
            accumulator, {"i": 0, "got": [], "slept": 0, "tag": tag}, workflow_id=f"acc-{tag}"
        )
        for value in ("a", "b", "c"):
            await handle.signal("v", value)
        result = await handle.result(timeout=20)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
    # each run continues at most once, at its first safe point after being forced
    assert len(chain) - 1 <= len(forcer.forced)
    assert all(r.status == "continued_as_new" for r in chain[:-1])
    return result, len(chain)


def test_every_single_boundary() -> None:
    for position in range(1, COMMANDS + 2):
        tag = f"single-{position}"
        result, runs = anyio.run(run_forced, {position}, tag)
        assert {"i": 6, "got": ["a", "b", "c"], "slept": 3, "tag": tag} == result
        assert {(tag, i): 1 for i in range(6)} == {k: v for k, v in STEP_CALLS.items() if k[0] == tag}
        # forced before the last iteration's loop-top check: exactly one continuation
        assert (2 if position <= COMMANDS - 2 else 1) == runs, position


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(positions=st.sets(st.integers(min_value=1, max_value=COMMANDS + 1), max_size=6))
def test_any_set_of_boundaries(positions: set[int]) -> None:
    tag = "set-" + "-".join(str(p) for p in sorted(positions))
    STEP_CALLS.clear()
    result, runs = anyio.run(run_forced, positions, tag)
    assert {"i": 6, "got": ["a", "b", "c"], "slept": 3, "tag": tag} == result
    assert {(tag, i): 1 for i in range(6)} == dict(STEP_CALLS)
    if any(p <= COMMANDS - 2 for p in positions):
        assert runs >= 2


# -- the same with concurrent operations ------------------------------------------------------


@workflow()
async def concurrent_accumulator(state: dict[str, Any]) -> dict[str, Any]:
    """Each iteration runs a signal wait or a sleep together with two steps (asyncio.gather)."""
    while state["i"] < 4:
        if info().continue_as_new_suggested:
            continue_as_new(state)
        i, tag = state["i"], state["tag"]
        steps = (record(tag, 2 * i), record(tag, 2 * i + 1))
        if i % 2 == 0:
            got, *_ = await asyncio.gather(wait_for_signal("v"), *steps)
            state["got"].append(got)
        else:
            await asyncio.gather(sleep("1h"), *steps)
            state["slept"] += 1
        state["i"] += 1
    return state


# four iterations of three commands each
CONCURRENT_COMMANDS = 12


async def run_concurrent_forced(positions: set[int], tag: str) -> tuple[dict[str, Any], int]:
    forcer = ContinueAsNewForcer(positions)
    async with open_test_runtime([concurrent_accumulator], force_continue=forcer) as rt:
        handle = await rt.client.start(
            concurrent_accumulator,
            {"i": 0, "got": [], "slept": 0, "tag": tag},
            workflow_id=f"cacc-{tag}",
        )
        for value in ("a", "b"):
            await handle.signal("v", value)
        result = await handle.result(timeout=20)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
    assert len(chain) - 1 <= len(forcer.forced)
    assert all(r.status == "continued_as_new" for r in chain[:-1])
    return result, len(chain)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(positions=st.sets(st.integers(min_value=1, max_value=CONCURRENT_COMMANDS + 1), max_size=5))
def test_any_set_of_boundaries_with_concurrent_operations(positions: set[int]) -> None:
    tag = "conc-" + "-".join(str(p) for p in sorted(positions))
    STEP_CALLS.clear()
    result, runs = anyio.run(run_concurrent_forced, positions, tag)
    assert {"i": 4, "got": ["a", "b"], "slept": 2, "tag": tag} == result
    # every step recorded once, wherever the chain continued
    assert {(tag, i): 1 for i in range(8)} == dict(STEP_CALLS)
    if any(p <= CONCURRENT_COMMANDS - 3 for p in positions):
        assert runs >= 2


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
