"""Kill the worker process (SIGKILL) again and again while chains of workflows run.

The worker is a separate process (``tests/e2e/kill_workflows.py``); this test is a client
only. It starts ``kill_chain`` workflows (steps, durable timers, signals, children, a
continue-as-new every few units), feeds them signals, and kills the worker at moments drawn
from a seeded RNG, restarting it each time. A third of the kills are aimed at the
continue-as-new hand-over: right after a run is seen to have continued (its record says
``continued_as_new`` while the rest of the projection may still be in flight), or by the worker
itself inside the step right before ``continue_as_new``, just before the hand-over's one
append (the link), just after it (committed, the new run not written yet: recovery rolls it
forward from the link), or just after the new run's first event. In the end every chain has its exact result, is linked without gaps, and every step
was recorded once (it may have *run* more than once: at-least-once execution).

``RIVERRUN_E2E_KILLS`` (default 100) sets the number of kills, ``RIVERRUN_E2E_SEED`` the seed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from riverrun import EventType, RunStatus, Runtime, WorkflowHandle
from riverrun.persistence import EmbeddedNatsServer
from riverrun.testing import wait_until

from . import checks, kill_workflows as kw

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KILLS = int(os.environ.get("RIVERRUN_E2E_KILLS", "100"))
SEED = int(os.environ.get("RIVERRUN_E2E_SEED", "20260515"))
N_WORKFLOWS = 5
#: after this many worker lifetimes in a row without a step execution, check that a worker
#: left alone makes progress (on a loaded machine a short lifetime may well run no step)
IDLE_LIFETIMES = 8
REPO_ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One ``python -m tests.e2e.kill_workflows`` process."""

    def __init__(
        self,
        url: str,
        namespace: str,
        log: Path,
        *,
        kill: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ)
        for name in (kw.KILL_ENV, kw.LEASE_TTL_ENV, kw.WAIT_LEASES_ENV):
            env.pop(name, None)
        env.update(settings or {})
        if kill is not None:
            env[kw.KILL_ENV] = kill
        self.stderr_path = log.with_suffix(".stderr")
        with self.stderr_path.open("ab") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.kill_workflows", url, namespace, str(log)],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.pid = self.proc.pid

    def __repr__(self) -> str:
        return f"<WorkerProcess pid={self.pid} exit={self.proc.poll()}>"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> bool:
        """SIGKILL it; False if it had already died."""
        alive = self.alive
        if alive:
            self.proc.kill()
        self.proc.wait()
        return alive


#: a short lease, waited out by each new worker: a killed worker's leases expire before its
#: replacement starts (see test_a_replacement_worker_takes_over_once_the_lease_expires)
REPLACEMENT = {kw.LEASE_TTL_ENV: "0.3", kw.WAIT_LEASES_ENV: "1"}


async def _start_worker(
    url: str,
    namespace: str,
    log: Path,
    tail: kw.LogTail,
    kill: str | None = None,
    settings: dict[str, str] = REPLACEMENT,
) -> WorkerProcess:
    """Start a worker; return once it is serving (or has already killed itself)."""
    worker = WorkerProcess(url, namespace, log, kill=kill, settings=settings)
    ready = False

    async def serving() -> bool:
        nonlocal ready
        for words in tail.new_lines():
            if words[:2] == ["READY", str(worker.pid)]:
                ready = True
        return ready or not worker.alive

    await wait_until(serving, timeout=checks.STALL_SECONDS)
    return worker


def _handed_over(rt: Runtime, current: dict[str, str]) -> Callable[[], Awaitable[bool]]:
    """Has any of these runs (workflow id -> run id) continued as new?"""

    async def check() -> bool:
        for run_id in current.values():
            run = await rt.client.get_run(run_id)
            if run.status == RunStatus.CONTINUED_AS_NEW:
                return True
        return False

    return check


def _all_completed(handles: list[WorkflowHandle]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        runs = [await h.describe() for h in handles]
        return all(run.status == RunStatus.COMPLETED for run in runs)

    return check


def _steps_since(tail: kw.LogTail, before: int) -> Callable[[], Awaitable[int]]:
    """Steps run since ``before`` (0 until one ran); as a ``done()``: one has."""

    async def check() -> int:
        tail.new_lines()
        return tail.steps - before

    return check


def _exited(worker: WorkerProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not worker.alive

    return check


async def _current_runs(handles: list[WorkflowHandle]) -> dict[str, str]:
    current: dict[str, str] = {}
    for handle in handles:
        run = await handle.describe()
        if run.status == RunStatus.RUNNING:
            current[handle.workflow_id] = run.run_id
    return current


async def test_workflows_survive_worker_kills(
    nats_server: EmbeddedNatsServer, namespace: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    log = tmp_path / "steps.log"
    tail = kw.LogTail(log)
    signals_each = max(KILLS, 2)
    units = signals_each * kw.UNITS_PER_SIGNAL
    labels = [f"kw-{i}" for i in range(N_WORKFLOWS)]
    sent: dict[str, list[Any]] = {label: [] for label in labels}
    kills: Counter[str] = Counter()
    started_at = time.monotonic()
    worker: WorkerProcess | None = None
    async with Runtime.connect(
        nats_server.url, workflows=kw.WORKFLOWS, namespace=namespace, worker=False
    ) as rt:
        handles = [
            await rt.client.start(kw.kill_chain, label, units, workflow_id=label)
            for label in labels
        ]

        async def send_signals(upto: int) -> None:
            for handle in handles:
                got = sent[handle.workflow_id]
                while len(got) < min(upto, signals_each):
                    await handle.signal("go", len(got))
                    got.append(len(got))

        idle_cycles = progress_checks = 0
        try:
            for cycle in range(KILLS):
                steps_before = tail.steps
                # every draw happens whatever the branch, so the schedule depends on SEED only
                mode_draw, delay, burst = rng.random(), rng.uniform(0.0, 1.0), rng.random()
                point, nth = rng.choice(("step", "before", "after", "successor")), rng.randint(1, 3)
                await send_signals((cycle + 1) * signals_each // KILLS + (burst < 0.2))
                mode = "random" if mode_draw < 0.4 else "observed" if mode_draw < 0.7 else "self"
                spec = f"{point}:{nth}" if mode == "self" else None
                worker = await _start_worker(nats_server.url, namespace, log, tail, spec)
                if mode == "self":
                    try:
                        await wait_until(_exited(worker), timeout=3)
                    except TimeoutError:
                        mode = "random"  # no hand-over reached its kill point in time
                elif mode == "observed":
                    current = await _current_runs(handles)
                    try:
                        await wait_until(_handed_over(rt, current), timeout=2, interval=0.002)
                    except TimeoutError:
                        mode = "random"
                else:
                    await anyio.sleep(delay)
                if worker.kill():
                    kills[mode] += 1
                else:
                    kills[f"self:{point}"] += 1
                worker = None
                tail.new_lines()
                idle_cycles = idle_cycles + 1 if tail.steps == steps_before else 0
                if idle_cycles == IDLE_LIFETIMES:
                    # signals are pending, so a worker left alone must run steps again
                    idle_cycles = 0
                    progress_checks += 1
                    worker = await _start_worker(nats_server.url, namespace, log, tail)
                    try:
                        await checks.wait_for_progress(
                            _steps_since(tail, tail.steps), _steps_since(tail, tail.steps)
                        )
                    except checks.Stalled as stalled:
                        pytest.fail(
                            f"no step ran after {IDLE_LIFETIMES} worker lifetimes without one, "
                            f"nor since, under a worker left alone ({stalled}): "
                            f"{await checks.diagnose(rt.client, rt.backend)}"
                        )
                    worker.kill()
                    worker = None

            await send_signals(signals_each)
            _print_kills(kills, time.monotonic() - started_at)
            print(
                f"{progress_checks} times {IDLE_LIFETIMES} worker lifetimes in a row ran no step, "
                "and a worker left alone then did"
            )
            assert KILLS == sum(kills.values())
            worker = await _start_worker(nats_server.url, namespace, log, tail)
            try:
                waited = await checks.wait_for_progress(
                    _all_completed(handles), checks.progress_of(handles, tail)
                )
            except checks.Stalled as stalled:
                pytest.fail(
                    f"no results: {stalled}: {await checks.diagnose(rt.client, rt.backend)}"
                )
            results = {h.workflow_id: await h.result(timeout=10) for h in handles}
            counts = checks.check_results(
                results, units=units, signals=sent, runs=checks.runs_by_key(log)
            )
            print(
                f"steps: {counts.executions} executions, {counts.recorded} recorded; "
                f"{counts.rerun_keys} steps ran more than once (killed before their completion "
                f"was recorded), at most {counts.max_runs} times"
            )
            running = await rt.client.list_runs(status=RunStatus.RUNNING)
            assert [] == running, await checks.diagnose(rt.client, rt.backend)
            all_runs = await rt.client.list_runs()
            print(
                f"chains: {N_WORKFLOWS} x {kw.expected_runs(units)} runs, "
                f"{len({r.workflow_id for r in all_runs}) - N_WORKFLOWS} child chains x 2 runs; "
                f"{len(all_runs)} runs in all"
            )
            print(
                f"total {time.monotonic() - started_at:.1f} s, of which {waited.seconds:.1f} s "
                f"for the last worker to finish (longest pause in progress "
                f"{waited.longest_stall:.1f} s)"
            )
            await checks.check_chains(
                rt.client, checks.expected_chains(labels, units), all_runs=all_runs
            )
        finally:
            if worker is not None:
                worker.kill()


def _print_kills(kills: Counter[str], elapsed: float) -> None:
    self_kills = sum(n for mode, n in kills.items() if mode.startswith("self:"))
    print(
        f"\nworker kills: {sum(kills.values())} (seed {SEED}) in {elapsed:.1f} s: "
        f"{dict(sorted(kills.items()))}"
    )
    print(
        f"kills aimed at the hand-over: {self_kills + kills['observed']} "
        f"(worker self-kills {self_kills}, right after an observed continuation "
        f"{kills['observed']})"
    )


async def test_child_result_survives_a_kill_before_the_parent_is_told(
    nats_server: EmbeddedNatsServer, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    tail = kw.LogTail(log)
    units = kw.UNITS_PER_SIGNAL  # one signal, one timer, one child (unit 4), two runs
    worker: WorkerProcess | None = None
    async with Runtime.connect(
        nats_server.url, workflows=kw.WORKFLOWS, namespace=namespace, worker=False
    ) as rt:
        try:
            worker = await _start_worker(nats_server.url, namespace, log, tail, "child-end:1")
            handle = await rt.client.start(kw.kill_chain, "ce", units, workflow_id="ce")
            await handle.signal("go", 0)
            await wait_until(_exited(worker), timeout=checks.STALL_SECONDS)
            assert ["KILL", "child-end", str(worker.pid)] in kw.read_log(log)
            worker = await _start_worker(nats_server.url, namespace, log, tail)
            try:
                result = await handle.result(timeout=checks.STALL_SECONDS)
            except TimeoutError:
                pytest.fail(f"no result: {await checks.diagnose(rt.client, rt.backend)}")
        finally:
            if worker is not None:
                worker.kill()
    assert kw.expected_keys("ce", units) == [t.split("#")[0] for t in result["tokens"]]


async def test_a_replacement_worker_takes_over_once_the_lease_expires(
    nats_server: EmbeddedNatsServer, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    tail = kw.LogTail(log)
    units = kw.UNITS_PER_SIGNAL
    # a 10 s lease (renewed every 3.3 s): the replacement starts well before it expires
    settings = {kw.LEASE_TTL_ENV: "10"}
    worker: WorkerProcess | None = None
    async with Runtime.connect(
        nats_server.url, workflows=kw.WORKFLOWS, namespace=namespace, worker=False
    ) as rt:
        try:
            worker = await _start_worker(
                nats_server.url, namespace, log, tail, "step:1", settings=settings
            )
            handle = await rt.client.start(kw.kill_chain, "lt", units, workflow_id="lt")
            await handle.signal("go", 0)
            await wait_until(_exited(worker), timeout=checks.STALL_SECONDS)
            assert ["KILL", "step", str(worker.pid)] in kw.read_log(log)
            worker = await _start_worker(nats_server.url, namespace, log, tail, settings=settings)
            # the lease (10 s) must expire first, and the replacement tries again each period
            result = await handle.result(timeout=2 * 10 + checks.STALL_SECONDS)
        finally:
            if worker is not None:
                worker.kill()
    assert kw.expected_keys("lt", units) == [t.split("#")[0] for t in result["tokens"]]


async def test_a_fan_out_survives_a_kill_with_steps_in_flight(
    nats_server: EmbeddedNatsServer, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    tail = kw.LogTail(log)
    n = 12
    worker: WorkerProcess | None = None
    async with Runtime.connect(
        nats_server.url, workflows=kw.WORKFLOWS, namespace=namespace, worker=False
    ) as rt:
        try:
            # killed in the sixth step to end: some results are recorded, others in flight
            worker = await _start_worker(nats_server.url, namespace, log, tail, "fan:6")
            handle = await rt.client.start(kw.kill_fan_out, "fo", n, workflow_id="fo")
            await wait_until(_exited(worker), timeout=checks.STALL_SECONDS)
            assert ["KILL", "fan", str(worker.pid)] in kw.read_log(log)
            worker = await _start_worker(nats_server.url, namespace, log, tail)
            try:
                result = await handle.result(timeout=checks.STALL_SECONDS)
            except TimeoutError:
                pytest.fail(f"no result: {await checks.diagnose(rt.client, rt.backend)}")
            events = await handle.events()
        finally:
            if worker is not None:
                worker.kill()
    assert [f"fo/{i}" for i in range(n)] == [t.split("#")[0] for t in result]
    completed = [e.data["position"] for e in events if e.type == EventType.STEP_COMPLETED]
    assert sorted(completed) == list(range(1, n + 1))  # each step recorded once
    ran = {words[2] for words in kw.read_log(log) if words[0] == "RUN"}
    assert all(t.split("#")[1] in ran for t in result)
async def test_two_workers_a_killed_ones_partitions_are_claimed_when_their_leases_expire(
    nats_server: EmbeddedNatsServer, namespace: str, tmp_path: Path
) -> None:
    """Two worker processes share the namespace's partitions; one is SIGKILLed with
    workflows in flight in its partitions. The other claims them once their leases expire
    (no message, no restart needed: claiming resumes the partition's index) and every
    workflow completes with each unit recorded once."""
    from riverrun.persistence import partition_of

    log = tmp_path / "steps.log"
    tail = kw.LogTail(log)
    units = kw.UNITS_PER_SIGNAL
    settings = {kw.LEASE_TTL_ENV: "3"}
    workers: list[WorkerProcess] = []
    async with Runtime.connect(
        nats_server.url, workflows=kw.WORKFLOWS, namespace=namespace, worker=False
    ) as rt:
        owners = rt.backend.owners
        try:
            for _ in range(2):
                workers.append(
                    await _start_worker(nats_server.url, namespace, log, tail, settings=settings)
                )
            doomed, survivor = workers

            async def split() -> dict[int, str] | None:
                by_pid = {m.pid: m.worker_id for m in await owners.members()}
                held = {}
                for p in range(rt.backend.partitions):
                    lease = await owners.get_lease("default", p)
                    held[p] = lease.owner if lease is not None else ""
                ids = {by_pid.get(doomed.pid), by_pid.get(survivor.pid)}
                return held if set(held.values()) == ids and None not in ids else None

            await wait_until(split, timeout=checks.STALL_SECONDS)
            held = await split()
            assert held is not None
            doomed_id = {m.pid: m.worker_id for m in await owners.members()}[doomed.pid]
            theirs = {p for p, owner in held.items() if owner == doomed_id}
            labels = [
                label
                for label in (f"sk{i}" for i in range(200))
                if partition_of(label, rt.backend.partitions) in theirs
            ][:3]
            handles = []
            for label in labels:
                handle = await rt.client.start(kw.kill_chain, label, units, workflow_id=label)
                await handle.signal("go", 0)
                handles.append(handle)
            await wait_until(_steps_since(tail, 0), timeout=checks.STALL_SECONDS)
            assert doomed.kill()
            results = [
                await handle.result(timeout=2 * 3 + checks.STALL_SECONDS) for handle in handles
            ]
        finally:
            for worker in workers:
                worker.kill()
    for label, result in zip(labels, results, strict=True):
        assert kw.expected_keys(label, units) == [t.split("#")[0] for t in result["tokens"]]
