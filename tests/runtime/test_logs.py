"""Log records carry the workflow context; the lifecycle and continue-as-new lines are there."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio
import pytest

from riverrun import (
    EventType,
    LogContextFilter,
    RetryPolicy,
    WorkflowFailed,
    continue_as_new,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.persistence import NewEvent, RunKey
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio

user_log = logging.getLogger("tests.user_code")
ATTEMPTS: dict[str, int] = {}


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.001))
async def flaky(token: str) -> str:
    ATTEMPTS[token] = ATTEMPTS.get(token, 0) + 1
    if ATTEMPTS[token] == 1:
        raise ConnectionError("first attempt fails")

    async def background() -> None:
        user_log.info("from a task the step started")

    async with anyio.create_task_group() as tg:
        tg.start_soon(background)
    return token


@workflow()
async def retries_then_continues(token: str, stage: int = 0) -> str:
    if stage == 0:
        await flaky(token)
        continue_as_new(token, stage=1)
    return "done"


@workflow()
async def fails_at_once() -> None:
    raise ValueError("bad input")


@workflow()
async def waits_for_go() -> int:
    return int(await wait_for_signal("go"))


def records(
    caplog: pytest.LogCaptureFixture, text: str, level: int | None = None
) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if text in r.getMessage() and (level is None or r.levelno == level)
    ]


def context(record: logging.LogRecord) -> tuple[object, ...]:
    return tuple(
        getattr(record, name) for name in ("workflow_id", "run_id", "execution", "step", "attempt")
    )


async def test_records_carry_workflow_run_step_and_attempt(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture, namespace_key: str
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(LogContextFilter())  # the user's own records get the context too
    async with make_runtime(workflows=[retries_then_continues]) as rt:
        handle = await rt.client.start(retries_then_continues, namespace_key)
        assert "done" == await handle.result(timeout=30)
        chain = [run.run_id for run in await rt.client.get_workflow_chain(handle.first_run_id)]
    wf = handle.workflow_id
    first, second = chain

    started = records(caplog, "started", logging.INFO)
    assert [(wf, first, 1, None, None)] == [
        context(r) for r in started if r.name == "riverrun.workflow"
    ]

    [retry] = records(caplog, "retrying", logging.WARNING)
    assert (wf, first, 1, "flaky", 1) == context(retry)
    assert "ConnectionError" in retry.getMessage() and wf in retry.getMessage()

    attempts = records(caplog, "step 'flaky' attempt", logging.DEBUG)
    assert [(wf, first, 1, "flaky", 1), (wf, first, 1, "flaky", 2)] == [
        context(r) for r in attempts if "retrying" not in r.getMessage()
    ]
    [user] = [r for r in caplog.records if r.name == "tests.user_code"]
    assert (wf, first, 1, "flaky", 2) == context(user)

    [continuing] = records(caplog, "continuing as new", logging.INFO)
    assert (wf, first, 1, None, None) == context(continuing)
    assert continuing.history_length >= 3  # type: ignore[attr-defined]
    assert continuing.state_size_bytes > 0  # type: ignore[attr-defined]
    assert second == continuing.new_run_id  # type: ignore[attr-defined]

    [resuming] = records(caplog, "resuming", logging.INFO)
    assert (wf, second, 2, None, None) == context(resuming)
    assert first == resuming.previous_run_id  # type: ignore[attr-defined]
    assert 2 == resuming.continuation_depth  # type: ignore[attr-defined]

    [completed] = records(caplog, "completed (execution", logging.INFO)
    assert (wf, second, 2, None, None) == context(completed)


async def test_a_failed_workflow_is_a_warning_with_its_ids(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="riverrun")
    async with make_runtime(workflows=[fails_at_once]) as rt:
        handle = await rt.client.start(fails_at_once)
        with pytest.raises(WorkflowFailed):
            await handle.result(timeout=30)
    [failed] = records(caplog, "failed: ValueError: bad input", logging.WARNING)
    assert (handle.workflow_id, handle.first_run_id, 1, None, None) == context(failed)
    assert handle.workflow_id in failed.getMessage()


async def test_parks_and_supervision_records_carry_the_workflow(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="riverrun")
    async with make_runtime(
        workflows=[waits_for_go], restart_backoff=0.0, park_after_failures=3
    ) as rt:
        worker = rt.worker
        assert worker is not None
        handle = await rt.client.start(waits_for_go)
        key = RunKey(workflow_id=handle.workflow_id, run_id=handle.first_run_id)
        await rt.backend.events.append(  # a corrupt event: replaying it raises KeyError
            key,
            NewEvent(
                type=EventType.SIGNAL_RECEIVED.value,
                timestamp=datetime.now(UTC),
                data={"payload": 1, "inbox_seq": 0},
            ),
            expected_last=1,
            idempotency_id="corrupt",
        )
        await handle.signal("go", 1)

        async def released() -> bool:
            return worker.statistics().active == 0 or handle.workflow_id in worker.parked

        await wait_until(released)
        await worker.deliver(handle.workflow_id, None)

        async def parked() -> bool:
            return handle.workflow_id in worker.parked

        await wait_until(parked)
    ids = (handle.workflow_id, handle.first_run_id)
    [park] = records(caplog, "parked", logging.ERROR)
    assert ids == context(park)[:2]
    supervision = [
        r for r in caplog.records if r.name == "riverrun.actors" and r.levelno == logging.WARNING
    ]
    # the write that met the corrupt event (a conflict: the history is reloaded), then two
    # crashes replaying it; the third parks
    assert 3 == len(supervision)
    assert [ids, ids, ids] == [context(r)[:2] for r in supervision]


def test_records_outside_a_workflow_have_empty_fields_and_extra_wins() -> None:
    record = logging.LogRecord("riverrun.x", logging.INFO, __file__, 1, "m", None, None)
    record.attempt = 7
    assert LogContextFilter().filter(record)
    assert (None, None, None, None, 7) == context(record)


async def test_projection_jobs_log_with_the_workflow_context(
    make_runtime: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    namespace_key: str,
) -> None:
    # the hand-over's run-store projection runs as a background job of the instance
    from riverrun.runtime._services import Services

    original = Services.apply_retention

    async def apply_retention(self: Services, workflow_id: str, previous_run_id: str) -> None:
        logging.getLogger("riverrun.workflow").info("projecting %s", previous_run_id)
        await original(self, workflow_id, previous_run_id)

    monkeypatch.setattr(Services, "apply_retention", apply_retention)
    caplog.set_level(logging.INFO, logger="riverrun")
    async with make_runtime(workflows=[retries_then_continues]) as rt:
        handle = await rt.client.start(retries_then_continues, namespace_key)
        assert "done" == await handle.result(timeout=30)
    jobs = records(caplog, "projecting")
    assert jobs and all(r.workflow_id == handle.workflow_id for r in jobs)  # type: ignore[attr-defined]
    assert all(r.run_id is not None for r in jobs)  # type: ignore[attr-defined]
