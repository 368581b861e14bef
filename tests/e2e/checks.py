"""What the kill tests check once the dust settles: linked chains, truncated links, results
that used exactly one recorded execution of every step."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from riverrun import Client, Event, EventType, RunStatus, WorkflowHandle, WorkflowRun
from riverrun.persistence import Backend, StoreUnavailable

from . import kill_workflows as kw

if TYPE_CHECKING:
    from riverrun.runtime._worker import Worker


#: how long the kill tests' workload may show no progress at all before it counts as stuck:
#: longer than any pause a fault causes (a restart backoff of at most 5 s, an inbox watch that
#: resumes ~2 s after a server restart, a replacement worker's start), even on a loaded
#: machine where all of these take several times as long
#: (``RIVERRUN_E2E_STALL`` overrides it)
STALL_SECONDS = float(os.environ.get("RIVERRUN_E2E_STALL", "60"))


@attrs.frozen(kw_only=True)
class StepCounts:
    executions: int  # RUN lines in the log: how often steps ran (at least once each)
    recorded: int  # tokens the results used: one recorded execution per step
    rerun_keys: int  # steps that ran more than once (killed before their completion was recorded)
    max_runs: int  # the most executions of one step


class Stalled(AssertionError):
    """Nothing moved for the whole stall period."""


@attrs.frozen(kw_only=True)
class Waited:
    seconds: float  # until done
    longest_stall: float  # the longest time without progress


async def wait_for_progress(
    done: Callable[[], Awaitable[bool]],
    progress: Callable[[], Awaitable[Hashable]],
    *,
    stall: float = STALL_SECONDS,
    interval: float = 0.1,
) -> Waited:
    """Await ``done()``, for as long as ``progress()`` keeps changing.

    A loaded machine makes the workload slow, not stuck: what fails the wait is ``stall``
    seconds in which ``progress()`` (steps that ran, runs that moved on) stayed the same,
    never the total time taken (``Stalled`` then)."""
    started = last_change = time.monotonic()
    last = await progress()
    longest = 0.0
    while not await done():
        await anyio.sleep(interval)
        now = time.monotonic()
        current = await progress()
        if current != last:
            last, last_change = current, now
        longest = max(longest, now - last_change)
        if now - last_change > stall:
            raise Stalled(f"no progress for {stall:g} s (at {last!r})")
    return Waited(seconds=time.monotonic() - started, longest_stall=longest)


def progress_of(
    handles: Iterable[WorkflowHandle], tail: kw.LogTail
) -> Callable[[], Awaitable[Any]]:
    """Steps run so far and the chains' current runs: what changes while the workload moves
    (for ``wait_for_progress``)."""
    handles = list(handles)
    runs: tuple[tuple[str, RunStatus], ...] = ()

    async def check() -> Any:
        nonlocal runs
        tail.new_lines()
        with contextlib.suppress(StoreUnavailable):  # then only the steps tell
            runs = tuple((r.run_id, r.status) for r in [await h.describe() for h in handles])
        return tail.steps, runs

    return check


def runs_by_key(log_path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Step key -> the nonces of its executions, from the step log."""
    runs: dict[str, list[str]] = defaultdict(list)
    for words in kw.read_log(log_path):
        if words[0] == "RUN":
            runs[words[1]].append(words[2])
    return runs


def check_results(
    results: Mapping[str, Any],
    *,
    units: int,
    signals: Mapping[str, list[Any]],
    runs: Mapping[str, list[str]],
) -> StepCounts:
    """Each chain's result lists one token per expected step, in order, each from an execution
    that really ran; and the signals it consumed are exactly those sent, in order."""
    recorded = 0
    expected_all: set[str] = set()
    for label, result in results.items():
        keys = kw.expected_keys(label, units)
        expected_all.update(keys)
        tokens = result["tokens"]
        assert keys == [token.split("#")[0] for token in tokens], label
        for token in tokens:
            key, nonce = token.split("#")
            assert nonce in runs.get(key, ()), f"{label}: {token} never ran"
        assert signals[label] == list(result["signals"]), label
        recorded += len(tokens)
    stray = set(runs) - expected_all
    assert set() == stray, f"steps that ran but belong to no chain: {sorted(stray)[:10]}"
    counts = Counter({key: len(nonces) for key, nonces in runs.items()})
    return StepCounts(
        executions=sum(counts.values()),
        recorded=recorded,
        rerun_keys=sum(1 for n in counts.values() if n > 1),
        max_runs=max(counts.values(), default=0),
    )


async def check_chains(
    client: Client, expected: Mapping[str, int], *, all_runs: Iterable[WorkflowRun]
) -> dict[str, list[WorkflowRun]]:
    """Every workflow id in ``expected`` has one chain of exactly that many runs, linked both
    ways without gaps or duplicates; earlier runs are ``continued_as_new`` and truncated to
    their link event, the last is ``completed``; no other run exists for that id.

    Runs left untruncated are reported together (``UNTRUNCATED_LINK``), once everything
    else has been checked."""
    by_workflow: dict[str, list[WorkflowRun]] = defaultdict(list)
    for run in all_runs:
        by_workflow[run.workflow_id].append(run)
    assert set(expected) == set(by_workflow)
    chains: dict[str, list[WorkflowRun]] = {}
    untruncated: list[str] = []
    for workflow_id, n_runs in expected.items():
        firsts = [r for r in by_workflow[workflow_id] if r.execution == 1]
        assert 1 == len(firsts), workflow_id
        chain = await client.get_workflow_chain(firsts[0].run_id)
        chains[workflow_id] = chain
        assert list(range(1, n_runs + 1)) == [r.execution for r in chain], workflow_id
        ids = [r.run_id for r in chain]
        assert sorted(ids) == sorted(r.run_id for r in by_workflow[workflow_id]), workflow_id
        assert len(set(ids)) == n_runs
        assert chain[0].continued_from_run_id is None
        assert chain[-1].continued_to_run_id is None
        expected_statuses = [RunStatus.CONTINUED_AS_NEW] * (n_runs - 1) + [RunStatus.COMPLETED]
        assert expected_statuses == [r.status for r in chain], workflow_id
        for earlier, later in itertools.pairwise(chain):
            assert later.run_id == earlier.continued_to_run_id, workflow_id
            assert earlier.run_id == later.continued_from_run_id, workflow_id
            events = await client.events(earlier.run_id)
            assert EventType.WORKFLOW_CONTINUED_AS_NEW == events[-1].type
            assert later.run_id == events[-1].data["new_run_id"]
            if len(events) != 1:
                untruncated.append(f"{workflow_id}#{earlier.execution} ({len(events)} events)")
    assert [] == untruncated, UNTRUNCATED_LINK
    return chains


def expected_chains(labels: Iterable[str], units: int) -> dict[str, int]:
    """Workflow id -> number of runs, for ``kill_chain`` chains and their children."""
    out: dict[str, int] = {}
    for label in labels:
        out[label] = kw.expected_runs(units)
        for unit in kw.child_units(units):
            out[kw.child_id(label, unit)] = 2
    return out


# -- signatures of runtime bugs these tests found (fixed), to diagnose a failure --------------------------------------------------------------------

LOST_CHILD_RESULT = (
    "a child's chain ended (its run record says so) but its parent never "
    "got the child message: the worker died between the record update and the inbox send in "
    "WorkflowInstance._complete_chain, and a restarted worker only recovers running runs"
)
CHILD_END_SKIPPED = (
    "a child's end message sits in its parent's inbox before the parent's cursor, but the "
    "parent never recorded it: it arrived before the parent recorded child.started (the parent "
    "failed between starting the child's chain and recording it) and was skipped as noise"
)
UNTRUNCATED_LINK = (
    "an earlier run kept its whole history: the hand-over projection "
    "(WorkflowInstance._complete_hand_over) was cut after move_head but before "
    "apply_retention, and nothing redoes it for the chain's last hand-over"
)
STRANDED_ON_TRUNCATED_RUN = (
    "the chain head still points at a run whose history was already cut "
    "to its continued_as_new link, so every instance parks it (no workflow.started): the "
    "hand-over projection (WorkflowInstance._complete_hand_over) truncated the old run "
    "concurrently with link_records and was cut before move_head"
)


async def diagnose(client: Client, backend: Backend, worker: Worker | None = None) -> str:
    """Which known failure signature the namespace shows, for a failing test's message,
    followed by what each chain that has not ended is waiting for."""
    found = await _signatures(client, backend)
    stuck = await describe_running(client, backend, worker)
    return "; ".join(found or ["no known failure signature"]) + "".join(
        f"\n  {line}" for line in stuck
    )


async def describe_running(
    client: Client, backend: Backend, worker: Worker | None = None
) -> list[str]:
    """One line per running run: its last events, its unread inbox, whether the worker
    (if in this process) hosts it."""
    lines: list[str] = []
    for run in await client.list_runs(status=RunStatus.RUNNING):
        events = await client.events(run.run_id)
        cursor = _cursor(events)
        inbox = await backend.inbox.read(run.workflow_id, after=cursor)
        last = ", ".join(f"#{e.sequence} {e.type.value}" + _detail(e.data) for e in events[-3:])
        hosted = ""
        if worker is not None:
            hosted = " hosted" if run.workflow_id in worker._refs else " NOT hosted"
        lines.append(
            f"{run.workflow_id}/{run.run_id[:8]} (exec {run.execution}){hosted}: "
            f"{len(events)} events, last [{last}]; unread inbox after {cursor}: "
            f"{[(m.sequence, m.kind) for m in inbox]}"
        )
    return lines


def _cursor(events: Iterable[Event]) -> int:
    """The run's recorded inbox cursor (what it consumed; messages it skipped are not known)."""
    events = list(events)
    return max(
        [e.data.get("inbox_cursor") or 0 for e in events if e.type == EventType.WORKFLOW_STARTED]
        + [e.data.get("inbox_seq") or 0 for e in events],
        default=0,
    )


def _detail(data: Mapping[str, Any]) -> str:
    keys = ("timer_id", "child_workflow_id", "name", "inbox_seq", "fire_at")
    shown = {k: data[k] for k in keys if k in data}
    return f" {shown}" if shown else ""


async def _signatures(client: Client, backend: Backend) -> list[str]:
    found: list[str] = []
    for run in await client.list_runs(status=RunStatus.RUNNING):
        events = await client.events(run.run_id)
        head = await backend.runs.get_head(run.workflow_id)
        if head is not None:
            current = await client.events(head.value.current_run_id)
            if current and current[0].type == EventType.WORKFLOW_CONTINUED_AS_NEW:
                found.append(f"{STRANDED_ON_TRUNCATED_RUN} ({run.workflow_id})")
                continue
        started = {e.data["child_workflow_id"] for e in events if e.type == EventType.CHILD_STARTED}
        ended = {
            e.data["child_workflow_id"]
            for e in events
            if e.type
            in (EventType.CHILD_COMPLETED, EventType.CHILD_FAILED, EventType.CHILD_CANCELLED)
        }
        inbox = await backend.inbox.read(run.workflow_id)
        cursor = _cursor(events)
        told = {m.data.get("child_workflow_id") for m in inbox if m.kind == "child"}
        passed = {
            m.data.get("child_workflow_id")
            for m in inbox
            if m.kind == "child" and m.sequence <= cursor
        }
        for child in sorted((started - ended) & passed):
            found.append(f"{CHILD_END_SKIPPED} (parent {run.workflow_id}, child {child})")
        for child in sorted(started - ended - told):
            child_head = await backend.runs.get_head(child)
            if child_head is None:
                continue
            child_run = await client.get_run(child_head.value.current_run_id)
            if child_run.status.is_terminal and child_run.status != RunStatus.CONTINUED_AS_NEW:
                found.append(f"{LOST_CHILD_RESULT} (parent {run.workflow_id}, child {child})")
    return found
