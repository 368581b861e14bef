"""Kill the nats-server (SIGKILL) again and again under a live worker.

The worker runs in this process and is never restarted: while the server is down every store
call fails fast with ``StoreUnavailable``, the workflow instances crash on it and the worker's
supervisor restarts each from its history (with backoff) once the server is back. The
workload is ``kill_chain`` (steps, durable timers, signals, children, continue-as-new every
few units). In the end every chain has its exact result and is linked without gaps, and every
step was recorded once.

``RIVERRUN_E2E_NATS_KILLS`` (default 15) sets the number of server kills,
``RIVERRUN_E2E_SEED`` the seed of the kill schedule.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import pytest

from riverrun import RunStatus, Runtime, WorkflowHandle
from riverrun.persistence import EmbeddedNatsServer, StoreUnavailable
from riverrun.testing import wait_until

from . import checks, kill_workflows as kw

if TYPE_CHECKING:
    from riverrun.runtime._worker import Worker

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KILLS = int(os.environ.get("RIVERRUN_E2E_NATS_KILLS", "15"))
SEED = int(os.environ.get("RIVERRUN_E2E_SEED", "20260515"))
N_WORKFLOWS = 5
#: each chain waits for this many signals per server kill (sent while the server is up)
SIGNALS_PER_KILL = 2

T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], *, timeout: float = 60) -> T:
    """``call()`` until the store answers (the server may still be coming back)."""
    with anyio.fail_after(timeout):
        while True:
            try:
                return await call()
            except StoreUnavailable:
                await anyio.sleep(0.05)


async def test_workflows_survive_nats_server_kills(
    nats_server_factory: Callable[..., EmbeddedNatsServer], namespace: str, tmp_path: Path
) -> None:
    server = nats_server_factory()
    rng = random.Random(SEED)
    log = tmp_path / "steps.log"
    kw.configure(log)
    signals_each = max(KILLS, 1) * SIGNALS_PER_KILL
    units = signals_each * kw.UNITS_PER_SIGNAL
    labels = [f"kn-{i}" for i in range(N_WORKFLOWS)]
    sent: dict[str, list[Any]] = {label: [] for label in labels}
    downtime = 0.0
    gated_kills = 0
    tail = kw.LogTail(log)
    started_at = time.monotonic()
    async with Runtime.connect(
        server.url, workflows=kw.WORKFLOWS, namespace=namespace, worker=True
    ) as rt:
        handles = [
            await rt.client.start(kw.kill_chain, label, units, workflow_id=label)
            for label in labels
        ]

        async def send_signals(upto: int) -> None:
            # Sent only while the server is up, and never while a kill can land: a send whose
            # ack was lost would be retried and delivered twice.
            for handle in handles:
                got = sent[handle.workflow_id]
                while len(got) < min(upto, signals_each):
                    payload = len(got)
                    await retrying(lambda h=handle, p=payload: h.signal("go", p))
                    got.append(payload)

        for cycle in range(KILLS):
            up, down, gated = rng.uniform(0.05, 0.5), rng.uniform(0.0, 0.5), rng.random() < 0.25
            await send_signals((cycle + 1) * SIGNALS_PER_KILL)
            if gated:
                # let the worker get busy again, so the kill lands amid live instances
                tail.new_lines()
                await wait_until(_steps_ran(tail, 5), timeout=60, interval=0.02)
                gated_kills += 1
            await anyio.sleep(up)
            server.kill()
            killed_at = time.monotonic()
            kw.log_line(f"SERVER-KILLED {time.time():.3f}")
            await anyio.sleep(down)
            await server.arestart()
            kw.log_line(f"SERVER-UP {time.time():.3f}")
            downtime += time.monotonic() - killed_at
        await send_signals(signals_each)
        kill_phase = time.monotonic() - started_at

        worker = rt.worker
        assert worker is not None
        try:
            waited = await checks.wait_for_progress(
                _done_or_parked(handles, worker), checks.progress_of(handles, kw.LogTail(log))
            )
        except checks.Stalled as stalled:
            pytest.fail(f"no results: {stalled}: {await _diagnosis(rt)}")
        assert {} == worker.parked, await _diagnosis(rt)
        results = {h.workflow_id: await h.result(timeout=10) for h in handles}
        statistics = worker.statistics()
        print(
            f"\nnats-server kills: {KILLS} (seed {SEED}), {gated_kills} of them once steps ran "
            f"again; down {downtime:.1f} s in total; kill phase {kill_phase:.1f} s, total "
            f"{time.monotonic() - started_at:.1f} s, of which {waited.seconds:.1f} s waiting "
            f"for the results (longest pause in progress {waited.longest_stall:.1f} s)"
        )
        print(
            "longest pause in step executions while the server was up: "
            f"{_longest_pause_while_up(log):.1f} s"
        )
        print(
            f"worker: survived all kills; instances started {statistics.started}, restarted "
            f"from history after a store fault {statistics.restarts}, parked {statistics.parked}"
        )
        counts = checks.check_results(
            results, units=units, signals=sent, runs=checks.runs_by_key(log)
        )
        print(
            f"steps: {counts.executions} executions, {counts.recorded} recorded; "
            f"{counts.rerun_keys} steps ran more than once, at most {counts.max_runs} times"
        )
        running = await rt.client.list_runs(status=RunStatus.RUNNING)
        assert [] == running, await _diagnosis(rt)
        all_runs = await rt.client.list_runs()
        print(
            f"chains: {N_WORKFLOWS} x {kw.expected_runs(units)} runs, "
            f"{len({r.workflow_id for r in all_runs}) - N_WORKFLOWS} child chains x 2 runs; "
            f"{len(all_runs)} runs in all"
        )
        await checks.check_chains(
            rt.client, checks.expected_chains(labels, units), all_runs=all_runs
        )


def _done_or_parked(handles: list[WorkflowHandle], worker: Worker) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        if worker.parked:
            return True
        try:
            runs = [await handle.describe() for handle in handles]
        except StoreUnavailable:
            return False
        return all(run.status == RunStatus.COMPLETED for run in runs)

    return check


def _steps_ran(tail: kw.LogTail, n: int) -> Callable[[], Awaitable[bool]]:
    seen = 0

    async def check() -> bool:
        nonlocal seen
        seen += sum(1 for words in tail.new_lines() if words[0] == "RUN")
        return seen >= n

    return check


def _longest_pause_while_up(log: Path) -> float:
    """The longest time without any step execution while the server was up (it includes
    the wait for the inbox watch to deliver again after a restart)."""
    longest = 0.0
    last: float | None = None
    for words in kw.read_log(log):
        if words[0] == "SERVER-KILLED":
            last = None
        elif words[0] == "SERVER-UP":
            last = float(words[1])
        elif words[0] == "RUN":
            now = float(words[3])
            if last is not None:
                longest = max(longest, now - last)
            last = now
    return longest


async def _diagnosis(rt: Runtime) -> str:
    return await retrying(lambda: checks.diagnose(rt.client, rt.backend, rt.worker))
