"""Every example runs as its own process and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> list[str]:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == completed.returncode, completed.stderr
    return completed.stdout.splitlines()


def test_every_example_is_tested() -> None:
    tested = {
        "batch.py",
        "polling.py",
        "recurring.py",
        "queue_consumer.py",
        "long_running_sync.py",
        "fan_out.py",
    }
    assert tested == {p.name for p in EXAMPLES.glob("*.py")}


def test_batch() -> None:
    lines = run_example("batch.py")
    assert "result: Processed 1000 items, total amount 2997" == lines[0]
    assert "runs: 5" == lines[-1]
    # earlier runs are truncated to their link; the last run keeps its whole history
    runs = lines[1:-1]
    assert 4 == sum(
        "continued_as_new 1 event(s) kept: workflow.continued_as_new" in r for r in runs
    )
    assert runs[-1].endswith(
        "completed        3 event(s) kept: workflow.started, step.completed, workflow.completed"
    )


def test_polling() -> None:
    lines = run_example("polling.py")
    assert "result: 10 polls, 9 updates applied" == lines[0]
    assert ["run 1: continued_as_new", "run 2: continued_as_new", "run 3: continued_as_new"] == (
        lines[1:4]
    )
    assert "run 4: completed" == lines[4]
    assert "runs: 4" == lines[5]
    assert "applied in order: True" == lines[6]


def test_recurring() -> None:
    lines = run_example("recurring.py")
    assert "result: sent 7 daily reports" == lines[0]
    assert [f"day {d} report at 2026-01-0{d} 00:00" for d in range(1, 8)] == lines[1:8]
    assert "runs: 7 statuses: " + "continued_as_new " * 6 + "completed" == lines[8]
    assert lines[9].startswith("virtual time now 2026-01-07 00:00, real time ")


def test_queue_consumer() -> None:
    lines = run_example("queue_consumer.py")
    assert "result: handled 25 messages, checksum 325" == lines[0]
    assert lines[1].startswith("run 1: continued_as_new")
    assert lines[2].startswith("run 2: continued_as_new")
    assert lines[3].startswith("run 3: completed")
    assert ["runs: 3", "handled in order: True"] == lines[4:]


def test_long_running_sync() -> None:
    lines = run_example("long_running_sync.py")
    assert "result: synced 115 records, cursor 115" == lines[0]
    assert lines[1].startswith("run 1: automatic: history has 10 events (limit 10), carried ")
    assert "'cursor': 40, 'synced': 40" in lines[1]
    assert lines[2].startswith("run 2: automatic: history has 10 events (limit 10), carried ")
    assert "'cursor': 80, 'synced': 80" in lines[2]
    assert ["run 3: completed", "runs: 3", "target matches source: True"] == lines[3:]


def test_fan_out() -> None:
    lines = run_example("fan_out.py")
    assert "result: {'status': 'shipped', 'total': 390, 'shipped': 20}" == lines[0]
    assert [
        "steps completed: 40",
        "prices in flight together: True",
        "shipments at once at most 3: True",
    ] == lines[1:]
