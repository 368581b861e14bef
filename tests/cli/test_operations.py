"""Operator commands: ``runs terminate``, ``runs list`` filters and flags, ``runs describe``."""

from __future__ import annotations

import uuid

from .conftest import Cli


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
