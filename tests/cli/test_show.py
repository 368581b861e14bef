"""``riverrun runs show``: what a run waits on and why it is stuck, against a real worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from riverrun import EventType, Runtime
from riverrun.persistence import NewEvent, OperatorNote, RunKey, add_note

from .conftest import Cli

#: bounds each wait below (each round is one `riverrun` process): not a timing assertion
ROUNDS = 60


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def show_until(cli: Cli, workflow_id: str, reached: Any, *, each: Any = None) -> dict[str, Any]:
    """``runs show --json`` until ``reached(shown)``; ``each()`` between tries."""
    for _ in range(ROUNDS):
        shown: dict[str, Any] = cli("runs", "show", workflow_id, "--json").json()
        if reached(shown):
            return shown
        if each is not None:
            each()
    raise AssertionError(f"runs show {workflow_id} never got there: {shown}")


def test_show_says_a_sleeping_run_waits_on_its_timer_and_is_not_stuck(cli: Cli) -> None:
    workflow_id = new_id("sleep")
    assert cli("start", "sleeper", "--id", workflow_id).code == 0
    shown = show_until(cli, workflow_id, lambda s: s["waiting_on"][0]["kind"] == "timer")
    [timer] = shown["waiting_on"]
    assert timer["timer_id"].startswith(shown["run_id"]) and timer["due"] and timer["since"]
    assert timer["summary"].startswith(f"timer {timer['timer_id']} due ")
    assert shown["stuck"] is None
    text = cli("runs", "show", workflow_id).stdout
    assert "Waiting on:" in text and f"timer {timer['timer_id']} due" in text
    assert "Stuck: no" in text

    assert cli("runs", "terminate", workflow_id).code == 0
    ended = cli("runs", "show", workflow_id, "--json").json()
    assert ended["waiting_on"] == [] and ended["stuck"] is None
    assert "Stuck: no: the run has ended (cancelled)" in cli("runs", "show", workflow_id).stdout


async def _corrupt(cli: Cli, workflow_id: str) -> None:
    """Append to the run's history a step the waiter's code never runs."""
    async with Runtime.connect(cli.url, namespace=cli.namespace, worker=False) as rt:
        run = await rt.client.get_handle(workflow_id).describe()
        key = RunKey(workflow_id=workflow_id, run_id=run.run_id)
        await rt.backend.events.append(
            key,
            NewEvent(
                type=EventType.STEP_COMPLETED.value,
                timestamp=datetime.now(UTC),
                data={"position": 0, "name": "removed_step", "result": None},
            ),
            expected_last=await rt.backend.events.last_sequence(key),
            idempotency_id=f"corrupt-{workflow_id}",
        )


def test_show_says_a_parked_run_is_stuck_and_why(cli: Cli) -> None:
    workflow_id = new_id("park")
    assert cli("start", "waiter", "--id", workflow_id).code == 0
    show_until(cli, workflow_id, lambda s: s["waiting_on"][0]["kind"] == "idle")
    anyio.run(_corrupt, cli, workflow_id)

    def nudge() -> None:
        # the hosting actor loses its fence on the first signal; a later one hosts the
        # workflow again, which replays the history and parks it
        assert cli("runs", "signal", workflow_id, "go", "1").code == 0

    nudge()
    shown = show_until(cli, workflow_id, lambda s: s["stuck"] is not None, each=nudge)
    assert shown["status"] == "running"
    assert shown["stuck"]["kind"] == "parked"
    assert "removed_step" in shown["stuck"]["reason"]
    assert any(note["kind"] == "parked" for note in shown["notes"])
    text = cli("runs", "show", workflow_id).stdout
    assert "Stuck: parked: " in text and "removed_step" in text

    # the way out: terminate (the worker lets the parked workflow go)
    assert cli("runs", "terminate", workflow_id, "--reason", "cannot replay").code == 0
    assert "Stuck: no: the run has ended" in cli("runs", "show", workflow_id).stdout


async def _note_loop(cli: Cli, workflow_id: str, run_id: str) -> None:
    async with Runtime.connect(cli.url, namespace=cli.namespace, worker=False) as rt:
        await add_note(
            rt.backend.snapshots,
            OperatorNote(
                workflow_id=workflow_id,
                kind="restart_loop",
                message="StoreUnavailable: the store is down (restarted 3 times in a row)",
                at=datetime.now(UTC) + timedelta(seconds=1),
                run_id=run_id,
                worker_id="w-test",
            ),
        )


def test_show_summarises_a_restart_loop_note(cli: Cli) -> None:
    workflow_id = new_id("loop")
    assert cli("start", "waiter", "--id", workflow_id).code == 0
    shown = show_until(cli, workflow_id, lambda s: s["waiting_on"][0]["kind"] == "idle")
    anyio.run(_note_loop, cli, workflow_id, shown["run_id"])
    shown = cli("runs", "show", workflow_id, "--json").json()
    assert shown["stuck"]["kind"] == "restart_loop" and shown["stuck"]["worker_id"] == "w-test"
    text = cli("runs", "show", workflow_id).stdout
    assert "Stuck: restart loop: StoreUnavailable: the store is down" in text
    assert cli("runs", "terminate", workflow_id).code == 0
