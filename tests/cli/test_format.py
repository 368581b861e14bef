"""Output: durations, JSON documents, and the human renderings."""

from __future__ import annotations

import enum
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from rich.console import Console

from riverrun.cli._format import (
    chain_label,
    dumps_json,
    format_duration,
    print_chain,
    print_events,
    print_run,
    print_runs,
    run_to_json,
    to_jsonable,
)
from riverrun.persistence import RunStatus, WorkflowRun

T0 = datetime(2025, 1, 15, 10, 30, tzinfo=UTC)


def make_run(execution: int, status: RunStatus, seconds: float = 1.0, **extra: Any) -> WorkflowRun:
    start = T0 + timedelta(seconds=10 * execution)
    return WorkflowRun(
        run_id=f"run_{execution}",
        workflow_id="batch-1",
        workflow_name="batch_processor",
        status=status,
        execution=execution,
        created_at=start,
        completed_at=None if status is RunStatus.RUNNING else start + timedelta(seconds=seconds),
        **extra,
    )


@attrs.frozen(kw_only=True)
class FakeEvent:
    run_id: str
    sequence: int
    type: str
    timestamp: datetime
    data: Mapping[str, Any]


def render(fn: Any, *args: Any, **kwargs: Any) -> str:
    out = io.StringIO()
    fn(Console(file=out, width=200, color_system=None, highlight=False), *args, **kwargs)
    return out.getvalue()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0, "0ms"),
        (0.045, "45ms"),
        (0.9996, "1.0s"),
        (2.34, "2.3s"),
        (59.96, "1m 00s"),
        (245, "4m 05s"),
        (7380, "2h 03m"),
        (273600, "3d 04h"),
        (-1.0, "0ms"),
        (timedelta(seconds=1.5), "1.5s"),
    ],
)
def test_format_duration(seconds: float | timedelta | None, text: str) -> None:
    assert text == format_duration(seconds)


class Colour(enum.Enum):
    RED = "red"


def test_to_jsonable_round_trips_through_json() -> None:
    value = {
        "when": T0,
        "status": RunStatus.COMPLETED,
        "colour": Colour.RED,
        "raw": b"\x00\x01",
        "items": (1, 2),
        "nested": [{"k": None}],
        "run": make_run(1, RunStatus.COMPLETED),
    }
    decoded = json.loads(json.dumps(to_jsonable(value)))
    assert decoded["when"] == "2025-01-15T10:30:00+00:00"
    assert decoded["status"] == "completed"
    assert decoded["colour"] == "red"
    assert decoded["raw"] == "AAE="
    assert decoded["items"] == [1, 2]
    assert decoded["run"]["run_id"] == "run_1"
    assert decoded["run"]["status"] == "completed"


def test_run_json_has_every_attribute_and_a_duration() -> None:
    run = make_run(2, RunStatus.CONTINUED_AS_NEW, seconds=2.5, continued_from_run_id="run_1")
    data = json.loads(dumps_json(run_to_json(run)))
    assert {f.name for f in attrs.fields(WorkflowRun)} | {"duration_seconds"} == set(data)
    assert data["duration_seconds"] == 2.5
    assert data["status"] == "continued_as_new"
    assert data["continued_from_run_id"] == "run_1"
    assert run.created_at == datetime.fromisoformat(data["created_at"])


def test_a_running_run_lasts_until_now() -> None:
    run = make_run(1, RunStatus.RUNNING)
    data = run_to_json(run, now=run.created_at + timedelta(seconds=4))
    assert data["duration_seconds"] == 4.0


def three_run_chain() -> list[WorkflowRun]:
    return [
        make_run(1, RunStatus.CONTINUED_AS_NEW, 2.3, continued_to_run_id="run_2"),
        make_run(2, RunStatus.CONTINUED_AS_NEW, 1.8, continued_from_run_id="run_1"),
        make_run(3, RunStatus.COMPLETED, 0.5, continued_from_run_id="run_2"),
    ]


def test_chain_follows_pyworkflows_layout() -> None:
    text = render(print_chain, three_run_chain())
    lines = [line.rstrip() for line in text.splitlines()]
    assert lines[0] == "Continue-As-New Chain"
    assert "Chain length: 3 run(s)" in lines
    labels = [line for line in lines if line in {"START", "#2", "CURRENT"}]
    assert labels == ["START", "#2", "CURRENT"]
    assert sum("↓ continued as new" in line for line in lines) == 2
    assert [line.split("Duration:")[1].strip() for line in lines if "Duration:" in line] == [
        "2.3s",
        "1.8s",
        "500ms",
    ]
    statuses = [line.split("Status:")[1].strip() for line in lines if "Status:" in line]
    assert statuses == ["continued_as_new", "continued_as_new", "completed"]


def test_chain_labels() -> None:
    only = make_run(1, RunStatus.RUNNING)
    assert chain_label(only, 0, 1) == "START (CURRENT)"
    pruned_first = make_run(4, RunStatus.CONTINUED_AS_NEW)
    assert chain_label(pruned_first, 0, 3) == "#4"
    assert chain_label(make_run(6, RunStatus.RUNNING), 2, 3) == "CURRENT"


def test_chain_says_when_earlier_runs_were_pruned() -> None:
    runs = three_run_chain()[1:]
    assert "(runs 1-1 were pruned)" in render(print_chain, runs)


def test_runs_table_lists_every_run() -> None:
    text = render(print_runs, three_run_chain())
    for run_id in ("run_1", "run_2", "run_3"):
        assert run_id in text
    assert "3 run(s)" in text
    assert render(print_runs, []).strip() == "No runs found."


def test_show_prints_result_and_error() -> None:
    ok = render(print_run, make_run(3, RunStatus.COMPLETED, result={"processed": 300}))
    assert "Result:" in ok and '{"processed": 300}' in ok
    failed = render(print_run, make_run(1, RunStatus.FAILED, error="ValueError: boom"))
    assert "Error:" in failed and "ValueError: boom" in failed


def test_events_one_line_each_with_data() -> None:
    events = [
        FakeEvent(
            run_id="run_1",
            sequence=1,
            type="workflow.started",
            timestamp=T0,
            data={"args": [0, 100]},
        ),
        FakeEvent(
            run_id="run_1",
            sequence=2,
            type="workflow.continued_as_new",
            timestamp=T0,
            data={"new_run_id": "run_2", "reason": None, "x": "[markup]"},
        ),
    ]
    lines = render(print_events, events).splitlines()
    assert len(lines) == 2
    assert "workflow.continued_as_new" in lines[1]
    assert '"new_run_id": "run_2"' in lines[1]
    assert "[markup]" in lines[1]  # user data is escaped, not interpreted as rich markup


def test_long_event_data_is_cut_in_text_only() -> None:
    event = FakeEvent(
        run_id="r", sequence=1, type="step.completed", timestamp=T0, data={"result": "x" * 1000}
    )
    line = render(print_events, [event]).strip()
    assert line.endswith("…")
    assert len(dumps_json([event])) > 1000
