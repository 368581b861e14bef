"""Operator commands: ``runs terminate``, ``runs list`` filters and flags, ``runs describe``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from riverrun.persistence import EmbeddedNatsServer
from riverrun.testing._nats import unique_namespace

from .conftest import Cli, WorkerProcess


@pytest.fixture(scope="module")
def cli(nats_server: EmbeddedNatsServer) -> Iterator[Cli]:
    """A namespace of this module's own, served by a worker of tests/cli/ops_workflows.py."""
    runner = Cli(url=nats_server.url, namespace=unique_namespace("ops"))
    worker = WorkerProcess("tests.cli.ops_workflows", runner.env())
    try:
        worker.wait_ready()
        yield runner
    finally:
        code = worker.stop()
        assert code == 0, worker.output


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- terminate ----------------------------------------------------------------------------


def test_terminate_a_zombie_run_of_a_type_no_worker_hosts(cli: Cli) -> None:
    workflow_id = new_id("zombie")
    started = cli("start", "greeterr", '["typo"]', "--id", workflow_id)
    assert started.code == 0, started.describe()
    assert cli("runs", "show", workflow_id, "--json").json()["status"] == "running"

    result = cli("runs", "terminate", workflow_id, "--reason", "misspelled name")
    assert result.code == 0, result.describe()
    assert f"Terminated {workflow_id}" in result.stdout
    assert "terminated: misspelled name" in result.stdout

    shown = cli("runs", "show", workflow_id, "--json").json()
    assert shown["status"] == "cancelled"
    assert shown["error"] == "terminated: misspelled name"
    events = cli("runs", "logs", workflow_id, "--json").json()
    assert [e["type"] for e in events] == ["workflow.started", "workflow.cancelled"]
    assert events[-1]["data"]["terminated"] is True
    waited = cli("runs", "result", workflow_id)
    assert waited.code == 1
    assert "cancelled" in waited.stderr


def test_terminate_a_hosted_run_json(cli: Cli) -> None:
    workflow_id = new_id("wait")
    assert cli("start", "waiter", "--id", workflow_id).code == 0
    report = cli("runs", "terminate", workflow_id, "--json").json()
    assert report["terminated"] is True
    assert report["run"]["status"] == "cancelled"
    assert report["run"]["workflow_id"] == workflow_id
    events = cli("runs", "logs", workflow_id, "--json").json()
    assert [e["type"] for e in events if e["type"].startswith("workflow.")][-1] == (
        "workflow.cancelled"
    )
    assert sum(e["type"] == "workflow.cancelled" for e in events) == 1


def test_terminate_an_ended_chain_fails_naming_its_status(cli: Cli) -> None:
    workflow_id = new_id("greet")
    assert cli("start", "greeter", '["x"]', "--id", workflow_id).code == 0
    assert cli("runs", "result", workflow_id).code == 0
    result = cli("runs", "terminate", workflow_id)
    assert result.code == 1, result.describe()
    assert "'completed'" in result.stderr
    assert "not terminated" in result.stderr
    assert cli("runs", "show", workflow_id, "--json").json()["status"] == "completed"


def test_terminate_an_unknown_id_exits_3(cli: Cli) -> None:
    result = cli("runs", "terminate", new_id("nobody"))
    assert result.code == 3, result.describe()


# -- list: filters, pages, red flags --------------------------------------------------------


def _finished(cli: Cli, *args: str) -> str:
    workflow_id = new_id(args[0])
    started = cli("start", *args, "--id", workflow_id)
    assert started.code == 0, started.describe()
    done = cli("runs", "result", workflow_id)
    assert done.code == 0, done.describe()
    return workflow_id


def test_list_by_type_and_time_range(cli: Cli) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    workflow_id = _finished(cli, "greeter", '["time"]')
    after = datetime.now(UTC) + timedelta(seconds=1)
    window = ("--since", before.isoformat(), "--until", after.isoformat())
    found = cli("runs", "list", "--type", "greeter", *window, "--json").json()
    assert workflow_id in {run["workflow_id"] for run in found}
    assert {run["workflow_name"] for run in found} == {"greeter"}
    assert all(before <= datetime.fromisoformat(run["created_at"]) < after for run in found)
    # a window that ends before the run, or starts after it, leaves it out
    early = cli("runs", "list", "--until", before.isoformat(), "--json").json()
    assert workflow_id not in {run["workflow_id"] for run in early}
    late = cli("runs", "list", "--since", after.isoformat(), "--json").json()
    assert workflow_id not in {run["workflow_id"] for run in late}
    # an age works too; a bad date is a usage error
    recent = cli("runs", "list", "--since", "1h", "--type", "greeter", "--json").json()
    assert workflow_id in {run["workflow_id"] for run in recent}
    assert cli("runs", "list", "--since", "yesterday-ish").code == 2
    assert cli("runs", "list", "--type", "no_such_type", "--json").json() == []


def test_list_paginates_and_says_when_more_exist(cli: Cli) -> None:
    workflow_id = new_id("countdown")
    assert cli("start", "countdown", '{"n": 4}', "--id", workflow_id).code == 0
    assert cli("runs", "result", workflow_id).code == 0
    every = cli("runs", "list", "--workflow-id", workflow_id, "--json").json()
    assert [run["execution"] for run in every] == [5, 4, 3, 2, 1]

    first = cli("runs", "list", "--workflow-id", workflow_id, "--limit", "2", "--json")
    assert [run["execution"] for run in first.json()] == [5, 4]
    assert "3 more run(s): next page with --offset 2" in first.stderr
    second = cli(
        "runs", "list", "--workflow-id", workflow_id, "--limit", "2", "--offset", "2", "--json"
    )
    assert [run["execution"] for run in second.json()] == [3, 2]
    last = cli(
        "runs", "list", "--workflow-id", workflow_id, "--limit", "2", "--offset", "4", "--json"
    )
    assert [run["execution"] for run in last.json()] == [1]
    assert "more run(s)" not in last.stderr

    table = cli("runs", "list", "--workflow-id", workflow_id, "--limit", "2")
    assert "runs 1-2 of 5" in table.stdout
    assert "3 more run(s): next page with --offset 2" in table.stdout


def _flags(cli: Cli, workflow_id: str) -> dict[int, list[str]]:
    runs = cli("runs", "list", "--workflow-id", workflow_id, "--json").json()
    return {run["execution"]: run["flags"] for run in runs}


def test_list_marks_twenty_continuations(cli: Cli) -> None:
    workflow_id = new_id("countdown")
    assert cli("start", "countdown", '{"n": 21}', "--id", workflow_id).code == 0
    assert cli("runs", "result", workflow_id).code == 0
    flags = _flags(cli, workflow_id)
    assert len(flags) == 22
    flagged = sorted(e for e, marks in flags.items() if "continuations>=20" in marks)
    assert flagged == [21, 22]  # 20 and 21 hand-overs came before them
    # countdown hands on new arguments and keeps its history bounded: nothing else
    assert all(set(marks) <= {"continuations>=20"} for marks in flags.values())
    table = cli("runs", "list", "--workflow-id", workflow_id, "--limit", "1").stdout
    assert "FLAGS" in table
    assert "continuations>=20" in table


def test_list_marks_a_growing_history(cli: Cli) -> None:
    workflow_id = _finished(cli, "growing", "[4]")
    flags = _flags(cli, workflow_id)
    # runs 1-3 continued with 3, 4 and 5 events; the third continued run and the current
    # one (whose predecessors grew) are flagged
    assert [e for e, marks in sorted(flags.items()) if "history-growing" in marks] == [3, 4]
    assert not any("same-args" in marks for marks in flags.values())


def test_list_marks_the_same_task_repeating(cli: Cli) -> None:
    workflow_id = _finished(cli, "repeating", '["sync"]')
    flags = _flags(cli, workflow_id)
    assert [e for e, marks in sorted(flags.items()) if "same-args" in marks] == [2, 3]
    assert not any("history-growing" in marks for marks in flags.values())


# -- describe -----------------------------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "cli.md"


def documented_describe_fields() -> set[str]:
    text = DOCS.read_text()
    section = text.split("### `runs describe`", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.M))


def emitted_keys(document: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in document.items():
        keys.add(prefix + key)
        if isinstance(value, dict) and key in ("chain", "history"):
            keys |= emitted_keys(value, f"{prefix}{key}.")
    return keys


def test_describe_json_has_exactly_the_documented_fields(cli: Cli) -> None:
    workflow_id = new_id("countdown")
    assert cli("start", "countdown", '{"n": 2}', "--id", workflow_id).code == 0
    assert cli("runs", "result", workflow_id).code == 0
    chain = cli("runs", "chain", workflow_id, "--json").json()

    current = cli("runs", "describe", workflow_id, "--json").json()
    assert emitted_keys(current) == documented_describe_fields()
    assert current["run_id"] == chain[-1]["run_id"]
    assert current["chain"] == {
        "position": 3,
        "length": 3,
        "is_current": True,
        "first_run_id": chain[0]["run_id"],
        "current_run_id": chain[-1]["run_id"],
        "status": "completed",
        "pruned": 0,
    }
    assert current["history"]["last_event_type"] == "workflow.completed"
    assert current["history"]["length"] == 3  # started, step.completed, completed
    assert current["flags"] == []

    first = cli("runs", "describe", chain[0]["run_id"], "--json").json()
    assert emitted_keys(first) == documented_describe_fields()
    assert first["chain"]["position"] == 1
    assert first["chain"]["is_current"] is False
    assert first["history"]["last_event_type"] == "workflow.continued_as_new"

    text = cli("runs", "describe", chain[0]["run_id"])
    assert text.code == 0, text.describe()
    assert "run 1 of 3" in text.stdout
    assert cli("runs", "describe", new_id("nobody")).code == 3
