"""Workflows and steps: failures, retries, replay after a restart, non-determinism, starts."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from riverrun import (
    EventType,
    Retention,
    RetryPolicy,
    RunStatus,
    SerializationError,
    StepFailed,
    WorkflowAlreadyRunning,
    WorkflowFailed,
    WorkflowNotFound,
    sleep,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.testing import wait_until

from . import workflows as wf
from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio

CALLS: Counter[str] = Counter()


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
async def flaky(key: str, failures: int) -> str:
    CALLS[key] += 1
    if CALLS[key] <= failures:
        raise ConnectionError(f"attempt {CALLS[key]} failed")
    return f"ok after {CALLS[key]}"


@step(retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
async def always_fails(key: str) -> None:
    CALLS[key] += 1
    raise KeyError(key)


@workflow()
async def retrying(key: str, failures: int) -> str:
    return await flaky(key, failures)


@workflow()
async def failing_step(key: str) -> str:
    try:
        await always_fails(key)
    except KeyError as err:
        return f"caught KeyError {err}"
    return "unreachable"


@workflow()
async def raises(message: str) -> None:
    raise ValueError(message)


@workflow()
async def waits(n: int) -> int:
    got = await wait_for_signal("go")
    return n + got


@workflow()
async def bad_await() -> None:
    # I/O from workflow code (here a thread): its deterministic loop refuses it
    await asyncio.get_running_loop().run_in_executor(None, print)


async def test_step_retries_then_succeeds(make_runtime: RuntimeFactory, namespace_key: str) -> None:
    key = f"retry-{namespace_key}"
    async with make_runtime(workflows=[retrying]) as rt:
        handle = await rt.client.start(retrying, key, 2)
        assert await handle.result(timeout=30) == "ok after 3"
        events = await handle.events()
    assert [e.type for e in events] == [
        EventType.WORKFLOW_STARTED,
        EventType.STEP_RETRYING,
        EventType.STEP_RETRYING,
        EventType.STEP_COMPLETED,
        EventType.WORKFLOW_COMPLETED,
    ]
    assert [e.data["attempt"] for e in events[1:3]] == [1, 2]


async def test_step_failure_reaches_workflow_as_builtin(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = f"fail-{namespace_key}"
    async with make_runtime(workflows=[failing_step]) as rt:
        handle = await rt.client.start(failing_step, key)
        assert "caught KeyError 'fail-" in await handle.result(timeout=30)
    assert CALLS[key] == 2


async def test_workflow_exception_is_a_recorded_failure(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[raises, bad_await]) as rt:
        handle = await rt.client.start(raises, "boom")
        with pytest.raises(WorkflowFailed, match="ValueError: boom"):
            await handle.result(timeout=30)
        run = await handle.describe()
        assert run.status == RunStatus.FAILED
        assert run.error == "ValueError: boom"
        assert (await handle.events())[-1].type == EventType.WORKFLOW_FAILED

        handle = await rt.client.start(bad_await)
        with pytest.raises(WorkflowFailed, match="not a riverrun operation"):
            await handle.result(timeout=30)


async def test_already_running_and_unknown_ids(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[waits]) as rt:
        handle = await rt.client.start(waits, 1, workflow_id="dup")
        with pytest.raises(WorkflowAlreadyRunning):
            await rt.client.start(waits, 2, workflow_id="dup")
        await handle.signal("go", 41)
        assert await handle.result(timeout=30) == 42
        # a finished id may be started again: a new chain
        again = await rt.client.start(waits, 2, workflow_id="dup")
        assert again.first_run_id != handle.first_run_id
        await again.signal("go", 1)
        assert await again.result(timeout=30) == 3
        with pytest.raises(WorkflowNotFound):
            await rt.client.get_run("nope")
        with pytest.raises(WorkflowNotFound):
            await rt.client.signal("nope", "go")


async def test_non_serializable_argument_fails_at_call_site(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[waits]) as rt:
        with pytest.raises(SerializationError, match=r"kwargs.*'x'.*object"):
            await rt.client.start(waits, 1, x={"bad": object()})
        assert await rt.client.list_runs() == []


async def test_retention_keep_last_and_prune(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(
        workflows=[wf.stepper], retention=Retention(keep_last=2)
    ) as rt:
        handle = await rt.client.start(wf.stepper, 12, 2, workflow_id="ret")
        assert await handle.result(timeout=30) == 12
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        sizes = [len(await rt.client.events(r.run_id)) for r in chain]
        assert len(chain) == 6
        # runs 1-3 truncated to their link; runs 4-5 (the last two before the current) kept
        assert sizes == [1, 1, 1, 4, 4, 4]

        pruned = await rt.client.prune_runs("ret", keep_last=2)
        assert [r.run_id for r in chain[:4]] == pruned
        remaining = await rt.client.get_workflow_chain(chain[-1].run_id)
        assert [r.run_id for r in chain[4:]] == [r.run_id for r in remaining]
        with pytest.raises(WorkflowNotFound):
            await rt.client.get_run(chain[0].run_id)


@workflow()
async def sleeper(seconds: float) -> str:
    await sleep(seconds)
    return "woke"


async def test_durable_sleep_fires(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[sleeper]) as rt:
        handle = await rt.client.start(sleeper, 0.2)
        assert await handle.result(timeout=30) == "woke"
        types = [e.type for e in await handle.events()]
    assert types == [
        EventType.WORKFLOW_STARTED,
        EventType.TIMER_STARTED,
        EventType.TIMER_FIRED,
        EventType.WORKFLOW_COMPLETED,
    ]


STEP_RUNS: Counter[str] = Counter()


@step()
async def counted(key: str, i: int) -> int:
    STEP_RUNS[f"{key}:{i}"] += 1
    return i


@workflow()
async def replayed(key: str) -> list[Any]:
    a = await counted(key, 1)
    b = await wait_for_signal("next")
    c = await counted(key, 2)
    return [a, b, c]


async def test_restart_replays_without_rerunning_steps(
    nats_server: Any, namespace: str
) -> None:
    from riverrun import Runtime

    key = namespace
    async with Runtime.connect(nats_server.url, workflows=[replayed], namespace=namespace) as rt:
        handle = await rt.client.start(replayed, key, workflow_id="r1")
        async def two_events() -> bool:
            return len(await handle.events()) >= 2

        await wait_until(two_events)
    # a new runtime (a new worker) picks the workflow up from its history
    async with Runtime.connect(nats_server.url, workflows=[replayed], namespace=namespace) as rt:
        handle = rt.client.get_handle("r1")
        await handle.signal("next", "sig")
        assert await handle.result(timeout=30) == [1, "sig", 2]
    assert {f"{key}:1": 1, f"{key}:2": 1} == dict(STEP_RUNS)


@workflow(name="nondet")
async def nondet_v1(key: str) -> int:
    await counted(key, 1)
    return await wait_for_signal("go")


@step()
async def other_step(i: int) -> int:
    return i


@workflow(name="nondet")
async def nondet_v2(key: str) -> int:
    await other_step(1)  # a different step at position 1
    return await wait_for_signal("go")


async def test_non_determinism_parks_the_run_and_keeps_history(
    nats_server: Any, namespace: str
) -> None:
    from riverrun import Runtime

    async with Runtime.connect(nats_server.url, workflows=[nondet_v1], namespace=namespace) as rt:
        handle = await rt.client.start(nondet_v1, namespace, workflow_id="nd")
        async def two_events() -> bool:
            return len(await handle.events()) >= 2

        await wait_until(two_events)
        before = await handle.events()
    async with Runtime.connect(nats_server.url, workflows=[nondet_v2], namespace=namespace) as rt:
        assert rt.worker is not None
        worker = rt.worker

        async def parked() -> bool:
            return "nd" in worker.parked

        await wait_until(parked)
        message = rt.worker.parked["nd"]
        assert "position 1" in message and "'counted'" in message and "'other_step'" in message
        handle = rt.client.get_handle("nd")
        assert before == await handle.events()
        assert (await handle.describe()).status == RunStatus.RUNNING


def test_step_outside_workflow_runs_directly() -> None:
    assert anyio.run(wf.process_item.__wrapped__, 3) + 1 == 7  # type: ignore[attr-defined]
    assert anyio.run(lambda: wf.process_item(3)) == 6


def test_step_failed_carries_type_and_message() -> None:
    err = StepFailed("s", "MyError", "bad")
    assert str(err) == "step 's' failed: MyError: bad"


async def test_a_worker_leaves_workflows_it_does_not_host(nats_server: Any, namespace: str) -> None:
    from riverrun import Runtime

    async with Runtime.connect(nats_server.url, workflows=[waits], namespace=namespace) as rt:
        # started by name: this worker has no `replayed` workflow registered
        handle = await rt.client.start("replayed", namespace, workflow_id="elsewhere")
        with anyio.move_on_after(0.5):
            await handle.result()
        assert rt.worker is not None
        assert 0 == rt.worker.statistics().restarts
        assert {} == rt.worker.parked
    async with Runtime.connect(nats_server.url, workflows=[replayed], namespace=namespace) as rt:
        handle = rt.client.get_handle("elsewhere")
        await handle.signal("next", "x")
        assert [1, "x", 2] == await handle.result(timeout=30)


SHARED_RUNS: Counter[int] = Counter()


@step()
async def shared_step(i: int) -> int:
    SHARED_RUNS[i] += 1
    await anyio.sleep(0.005)
    return i


@workflow()
async def ten_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await shared_step(i)
    return total


async def test_two_workers_in_one_namespace_run_each_step_once(
    nats_server: Any, namespace: str
) -> None:
    from riverrun import Runtime

    SHARED_RUNS.clear()
    async with (
        Runtime.connect(nats_server.url, workflows=[ten_steps], namespace=namespace) as a,
        Runtime.connect(nats_server.url, workflows=[ten_steps], namespace=namespace) as b,
    ):
        handles = [await a.client.start(ten_steps, 10) for _ in range(4)]
        for handle in handles:
            assert 45 == await b.client.get_handle(handle.workflow_id).result(timeout=30)
    assert {i: 4 for i in range(10)} == dict(SHARED_RUNS)


async def test_a_handle_learns_the_result_of_a_chain_another_worker_hosted(
    nats_server: Any, namespace: str
) -> None:
    """The chain's partition is b's: the starting process's handle gets the result well
    before a lease period (30 s) passes: told the chain is hosted elsewhere, it polls."""
    from datetime import timedelta

    from riverrun import Runtime
    from riverrun.persistence import partition_of
    from riverrun.testing import wait_until

    fast = {"namespace": namespace, "lease_ttl": timedelta(seconds=3)}
    async with (
        Runtime.connect(nats_server.url, workflows=[ten_steps], **fast) as a,
        Runtime.connect(nats_server.url, workflows=[ten_steps], **fast) as b,
    ):
        assert a.worker is not None and b.worker is not None
        b_worker = b.worker

        async def b_owns_some() -> bool:
            return bool(b_worker.partitions()["default"])

        # a claimed every partition first; it hands b its share within a round or two
        await wait_until(b_owns_some, timeout=20)
        owned = b_worker.partitions()["default"]
        workflow_id = next(
            f"hosted-by-b-{i}" for i in range(10_000)
            if partition_of(f"hosted-by-b-{i}", b.backend.partitions) in owned
        )
        handle = await a.client.start(ten_steps, 3, workflow_id=workflow_id)
        assert 3 == await handle.result(timeout=20)
        assert 0 == a.worker.statistics().started
        assert 1 == b.worker.statistics().started


async def test_a_signal_resent_with_its_idempotency_key_arrives_once(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[wf.signal_collector]) as rt:
        handle = await rt.client.start(wf.signal_collector, 4, [])
        for item in ("a", "b", "c"):
            await handle.signal("item", item, idempotency_key=f"msg-{item}")
            # a client retrying after a lost acknowledgement sends the same key again
            await handle.signal("item", item, idempotency_key=f"msg-{item}")
        await rt.client.signal(handle.workflow_id, "item", "d")  # no key: never deduplicated
        assert ["a", "b", "c", "d"] == await handle.result(timeout=30)
        with pytest.raises(ValueError, match="idempotency_key"):
            await handle.signal("item", "e", idempotency_key="")


async def test_a_handle_on_an_ended_chain_ignores_a_newer_chain_of_the_same_id(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[wf.signal_collector]) as rt:
        first = await rt.client.start(wf.signal_collector, 1, [], workflow_id="reused-id")
        await first.signal("item", "x")
        assert ["x"] == await first.result(timeout=30)
        second = await rt.client.start(wf.signal_collector, 1, [], workflow_id="reused-id")
        assert second.first_run_id != first.first_run_id
        # the newer chain is still waiting for its signal; the older handle's answer is its own
        assert ["x"] == await first.result(timeout=10)
        await second.signal("item", "y")
        assert ["y"] == await second.result(timeout=30)


async def test_describe_right_after_result_shows_the_end(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handle's result() returns once the terminal event is on the log; the run record
    follows as a projection. What this process reads of the run meanwhile (describe, get_run,
    the chain, list_runs) says it ended, as result() did."""
    async with make_runtime(workflows=[wf.stepper]) as rt:
        runs = rt.backend.runs
        put_run = runs.put_run
        written = anyio.Event()

        async def slow_put_run(run: Any, **kwargs: Any) -> Any:
            if run.status.is_terminal:
                await anyio.sleep(1.0)  # the record is written well after the result is known
                try:
                    return await put_run(run, **kwargs)
                finally:
                    written.set()
            return await put_run(run, **kwargs)

        monkeypatch.setattr(runs, "put_run", slow_put_run)
        handle = await rt.client.start(wf.stepper, 3, 10)
        assert 3 == await handle.result(timeout=30)
        assert not written.is_set()  # (else this test shows nothing)
        described = await handle.describe()
        assert (RunStatus.COMPLETED, 3) == (described.status, described.result)
        assert RunStatus.COMPLETED == (await rt.client.get_run(described.run_id)).status
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        assert [RunStatus.COMPLETED] == [r.status for r in chain]
        assert [] == await rt.client.list_runs(workflow_id=handle.workflow_id, status="running")
        with anyio.fail_after(10):
            await written.wait()
        stored = await runs.get_run(described.run_id)
        assert stored is not None and RunStatus.COMPLETED == stored.value.status
