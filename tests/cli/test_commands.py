"""Every ``riverrun`` subcommand, run as a subprocess against a real nats-server and worker."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import datetime

from .conftest import Cli, WorkerProcess


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def start_countdown(cli: Cli, n: int) -> tuple[str, dict[str, object]]:
    workflow_id = new_id("countdown")
    report = cli("start", "countdown", f'{{"n": {n}}}', "--id", workflow_id, "--wait", "--json")
    return workflow_id, report.json()


# -- start --------------------------------------------------------------------------------


def test_start_with_positional_args_and_wait(cli: Cli) -> None:
    workflow_id = new_id("greet")
    report = cli("start", "greeter", '["world"]', "--id", workflow_id, "--wait", "--json").json()
    assert report["result"] == "hello world!"
    assert report["status"] == "completed"
    assert report["workflow_id"] == workflow_id
    assert report["executions"] == 1


def test_start_with_kwargs(cli: Cli) -> None:
    report = cli(
        "start", "greeter", '["you"]', "--kwargs", '{"punctuation": "?"}', "--wait", "--json"
    ).json()
    assert report["result"] == "hello you?"


def test_start_without_wait_prints_the_ids(cli: Cli) -> None:
    workflow_id = new_id("greet")
    started = cli("start", "greeter", '"there"', "--id", workflow_id)
    assert started.code == 0, started.describe()
    assert workflow_id in started.stdout
    result = cli("runs", "result", workflow_id)
    assert result.code == 0, result.describe()
    assert result.stdout.strip() == "hello there!"


def test_start_json_without_wait(cli: Cli) -> None:
    workflow_id = new_id("greet")
    report = cli("start", "greeter", '["json"]', "--id", workflow_id, "--json").json()
    assert report["workflow_id"] == workflow_id
    assert report["run_id"]
    assert cli("runs", "result", workflow_id, "--json").json()["result"] == "hello json!"


def test_start_follows_continue_as_new_to_the_final_result(cli: Cli) -> None:
    _, report = start_countdown(cli, 3)
    assert report["result"] == {"total": 6}
    assert report["executions"] == 4


def test_a_failing_workflow_exits_1(cli: Cli) -> None:
    result = cli("start", "failing", '["kaput"]', "--wait")
    assert result.code == 1, result.describe()
    assert "failed" in result.stderr and "kaput" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_workflow_with_json_still_prints_the_report(cli: Cli) -> None:
    result = cli("start", "failing", "--wait", "--json")
    assert result.code == 1
    report = json.loads(result.stdout)
    assert report["status"] == "failed"
    assert "boom" in report["error"]


def test_starting_a_running_workflow_id_again_fails(cli: Cli) -> None:
    workflow_id = new_id("sleep")
    assert cli("start", "sleeper", "--id", workflow_id).code == 0
    again = cli("start", "sleeper", "--id", workflow_id)
    assert again.code == 1, again.describe()
    assert workflow_id in again.stderr
    assert cli("runs", "cancel", workflow_id).code == 0


def test_start_on_a_queue_is_served_by_that_queues_worker(cli: Cli) -> None:
    workflow_id = new_id("greet-side")
    # the module's worker serves `default` only; a second one serves `side`
    side = WorkerProcess("tests.cli.workflows", cli.env(), "--queue", "side")
    try:
        side.wait_ready()
        report = cli(
            "start", "greeter", '["side"]', "--id", workflow_id, "--queue", "side", "--wait", "--json"
        ).json()
        assert "hello side!" == report["result"]
        shown = cli("runs", "show", workflow_id, "--json").json()
        assert "side" == shown["queue"]
    finally:
        assert 0 == side.stop(), side.output


def test_start_options_given_wrong_exit_2(cli: Cli) -> None:
    bad = cli("start", "greeter", '["x"]', "--queue", "no.dots")
    assert bad.code == 2, bad.describe()
    assert "--queue: queue must be 1-64 characters" in bad.stderr
    for option, flag in (("queue", "--queue"), ("workflow_id", "--id")):
        clash = cli("start", "greeter", '["x"]', "--kwargs", f'{{"{option}": "q"}}')
        assert clash.code == 2, clash.describe()
        assert f"keyword argument {option!r} is a start option" in clash.stderr
        assert flag in clash.stderr


def test_malformed_json_args_say_where_and_exit_2(cli: Cli) -> None:
    result = cli("start", "greeter", '{"name": "x",\n "punctuation": }')
    assert result.code == 2
    assert "line 2, column 17" in result.stderr
    assert 1 == len(result.stderr.strip().splitlines())


def test_malformed_kwargs_and_payload_exit_2(cli: Cli) -> None:
    assert cli("start", "greeter", "--kwargs", "{oops}").code == 2
    assert cli("runs", "signal", "anything", "go", "[1,").code == 2


def test_an_invalid_workflow_id_exits_2(cli: Cli) -> None:
    result = cli("start", "greeter", '["x"]', "--id", "has space")
    assert result.code == 2, result.describe()
    assert "workflow_id" in result.stderr


# -- runs list / show / chain / logs ------------------------------------------------------


def test_runs_chain_of_a_continued_workflow(cli: Cli) -> None:
    workflow_id, report = start_countdown(cli, 3)
    chain = cli("runs", "chain", workflow_id, "--json").json()
    assert [run["status"] for run in chain] == ["continued_as_new"] * 3 + ["completed"]
    assert [run["execution"] for run in chain] == [1, 2, 3, 4]
    assert chain[0]["run_id"] == report["run_id"]
    for earlier, later in itertools.pairwise(chain):
        assert earlier["continued_to_run_id"] == later["run_id"]
        assert later["continued_from_run_id"] == earlier["run_id"]
    for run in chain:
        datetime.fromisoformat(run["created_at"])  # ISO 8601
        assert run["duration_seconds"] >= 0

    # any run of the chain gives the whole chain
    from_middle = cli("runs", "chain", chain[2]["run_id"], "--json").json()
    assert [r["run_id"] for r in chain] == [r["run_id"] for r in from_middle]

    text = cli("runs", "chain", chain[0]["run_id"])
    assert text.code == 0
    lines = [line.strip() for line in text.stdout.splitlines()]
    assert "Continue-As-New Chain" == lines[0]
    assert "Chain length: 4 run(s)" in lines
    assert ["START", "#2", "#3", "CURRENT"] == [
        line for line in lines if line in {"START", "#2", "#3", "CURRENT"}
    ]
    assert [line for line in lines if line.startswith("Status:")][-1] == "Status:   completed"
    assert 3 == lines.count("↓ continued as new")


def test_runs_list_filters(cli: Cli) -> None:
    workflow_id, _ = start_countdown(cli, 2)
    mine = cli("runs", "list", "--workflow-id", workflow_id, "--json").json()
    assert 3 == len(mine)
    assert {run["workflow_id"] for run in mine} == {workflow_id}
    # newest first
    assert [run["execution"] for run in mine] == [3, 2, 1]

    completed = cli("runs", "list", "--workflow-id", workflow_id, "--status", "completed", "--json")
    assert [run["execution"] for run in completed.json()] == [3]

    by_name = cli("runs", "list", "--workflow", "countdown", "--json").json()
    assert {run["run_id"] for run in mine} <= {run["run_id"] for run in by_name}
    assert {run["workflow_name"] for run in by_name} == {"countdown"}

    limited = cli("runs", "list", "--workflow-id", workflow_id, "--limit", "1", "--json").json()
    assert [run["run_id"] for run in limited] == [mine[0]["run_id"]]

    table = cli("runs", "list", "--workflow-id", workflow_id)
    assert table.code == 0
    assert all(run["run_id"] in table.stdout for run in mine)
    assert "3 run(s)" in table.stdout


def test_runs_list_in_an_empty_namespace(cli: Cli) -> None:
    empty = Cli(url=cli.url, namespace=new_id("empty"))
    assert [] == empty("runs", "list", "--json").json()
    assert "No runs found." in empty("runs", "list").stdout


def test_global_json_flag_before_the_command(cli: Cli) -> None:
    workflow_id, _ = start_countdown(cli, 0)
    runs = cli("--json", "runs", "list", "--workflow-id", workflow_id).json()
    assert 1 == len(runs)


def test_runs_show_by_run_id_and_by_workflow_id(cli: Cli) -> None:
    workflow_id, report = start_countdown(cli, 1)
    first = cli("runs", "show", str(report["run_id"]), "--json").json()
    assert first["status"] == "continued_as_new"
    assert first["execution"] == 1
    current = cli("runs", "show", workflow_id, "--json").json()
    assert current["status"] == "completed"
    assert current["result"] == {"total": 1}
    assert current["continued_from_run_id"] == first["run_id"]

    text = cli("runs", "show", workflow_id).stdout
    assert "Status:" in text and "completed" in text and '{"total": 1}' in text


def test_runs_logs_filters_as_users_type_them(cli: Cli) -> None:
    workflow_id, report = start_countdown(cli, 1)
    chain = cli("runs", "chain", workflow_id, "--json").json()
    first_run = str(report["run_id"])

    for spelling in ("continued", "continued_as_new", "workflow.continued_as_new"):
        events = cli("runs", "logs", first_run, "--filter", spelling, "--json").json()
        assert ["workflow.continued_as_new"] == [e["type"] for e in events]
        assert events[0]["data"]["new_run_id"] == chain[1]["run_id"]
        datetime.fromisoformat(events[0]["timestamp"])

    current = chain[-1]["run_id"]
    everything = cli("runs", "logs", current, "--json").json()
    types = [e["type"] for e in everything]
    assert types[0] == "workflow.started"
    assert types[-1] == "workflow.completed"
    assert [e["sequence"] for e in everything] == sorted(e["sequence"] for e in everything)
    for spelling in ("step.completed", "step_completed", "STEP_COMPLETED"):
        steps = cli("runs", "logs", current, "--filter", spelling, "--json").json()
        assert ["step.completed"] == [e["type"] for e in steps]
    both = cli("runs", "logs", current, "--filter", "step", "--filter", "workflow", "--json")
    assert len(both.json()) == len(everything)

    text = cli("runs", "logs", first_run, "--filter", "continued")
    assert text.code == 0
    assert "workflow.continued_as_new" in text.stdout
    assert chain[1]["run_id"] in text.stdout


def test_runs_logs_rejects_a_filter_that_matches_nothing(cli: Cli) -> None:
    result = cli("runs", "logs", "whatever", "--filter", "contnued")
    assert result.code == 2
    assert "contnued" in result.stderr and "workflow.continued_as_new" in result.stderr


def test_unknown_ids_exit_3(cli: Cli) -> None:
    for command in (
        ("runs", "show", "no-such-run"),
        ("runs", "chain", "no-such-run"),
        ("runs", "logs", "no-such-run"),
        ("runs", "result", "no-such-run"),
        ("runs", "cancel", "no-such-run"),
        ("runs", "signal", "no-such-run", "go"),
        ("runs", "prune", "no-such-run", "--keep-last", "1"),
    ):
        result = cli(*command)
        assert result.code == 3, result.describe()
        assert "no-such-run" in result.stderr
        assert 1 == len(result.stderr.strip().splitlines())


# -- signal / cancel / result -------------------------------------------------------------


def test_signal_with_a_json_payload(cli: Cli) -> None:
    workflow_id = new_id("wait")
    assert cli("start", "waiter", "--id", workflow_id).code == 0
    sent = cli("runs", "signal", workflow_id, "go", '{"answer": 42}')
    assert sent.code == 0, sent.describe()
    assert cli("runs", "result", workflow_id, "--json").json()["result"] == {"answer": 42}


def test_signal_to_an_ended_chain_fails_naming_its_status(cli: Cli) -> None:
    workflow_id, report = start_countdown(cli, 1)
    for ident in (workflow_id, str(report["run_id"])):
        result = cli("runs", "signal", ident, "go", "1")
        assert result.code == 1, result.describe()
        assert "completed" in result.stderr
        assert "sent" not in result.stdout


def test_cancel_then_cancel_again(cli: Cli) -> None:
    workflow_id = new_id("sleep")
    assert cli("start", "sleeper", "--id", workflow_id).code == 0
    cancelled = cli("runs", "cancel", workflow_id, "--json").json()
    assert cancelled["cancelled"] is True

    result = cli("runs", "result", workflow_id)
    assert result.code == 1
    assert "cancelled" in result.stderr
    assert "cancelled" == cli("runs", "show", workflow_id, "--json").json()["status"]

    again = cli("runs", "cancel", workflow_id)
    assert again.code == 1
    assert "already ended" in again.stderr


def test_cancel_by_an_old_run_id_reaches_the_current_run(cli: Cli) -> None:
    workflow_id = new_id("chain")
    started = cli("start", "continue_then_sleep", "--id", workflow_id, "--json").json()
    first_run = started["run_id"]
    cancelled = cli("runs", "cancel", first_run, "--json").json()
    assert cancelled["cancelled"] is True
    assert cli("runs", "result", workflow_id).code == 1
    # whether the cancel arrived before or after the hand-over, it reached the current run
    statuses = [run["status"] for run in cli("runs", "chain", workflow_id, "--json").json()]
    assert "cancelled" == statuses[-1]
    assert {"continued_as_new"} >= set(statuses[:-1])


def test_cancel_of_a_finished_chain_says_how_it_ended(cli: Cli) -> None:
    _, report = start_countdown(cli, 1)
    result = cli("runs", "cancel", str(report["run_id"]))
    assert result.code == 1
    assert "completed" in result.stderr


def test_result_timeout(cli: Cli) -> None:
    workflow_id = new_id("sleep")
    assert cli("start", "sleeper", "--id", workflow_id).code == 0
    result = cli("runs", "result", workflow_id, "--timeout", "0.2")
    assert result.code == 1
    assert "still running" in result.stderr
    assert cli("runs", "cancel", workflow_id).code == 0


# -- prune --------------------------------------------------------------------------------


def test_prune_keep_last_removes_exactly_what_it_reports(cli: Cli) -> None:
    workflow_id, _ = start_countdown(cli, 5)
    before = {
        r["run_id"] for r in cli("runs", "list", "--workflow-id", workflow_id, "--json").json()
    }
    assert 6 == len(before)
    current = cli("runs", "show", workflow_id, "--json").json()["run_id"]

    pruned = cli("runs", "prune", workflow_id, "--keep-last", "2", "--json").json()
    assert pruned["workflow_id"] == workflow_id
    assert 4 == len(pruned["pruned"])
    assert current not in pruned["pruned"]

    after = {
        r["run_id"] for r in cli("runs", "list", "--workflow-id", workflow_id, "--json").json()
    }
    assert before - set(pruned["pruned"]) == after
    assert current in after

    chain = cli("runs", "chain", workflow_id, "--json").json()
    assert [5, 6] == [run["execution"] for run in chain]
    assert "(runs 1-4 were pruned)" in cli("runs", "chain", workflow_id).stdout


def test_prune_completed_before(cli: Cli) -> None:
    workflow_id, _ = start_countdown(cli, 2)
    before = {
        r["run_id"] for r in cli("runs", "list", "--workflow-id", workflow_id, "--json").json()
    }

    nothing = cli("runs", "prune", workflow_id, "--completed-before", "2000-01-01", "--json")
    assert [] == nothing.json()["pruned"]

    text = cli("runs", "prune", workflow_id, "--completed-before", "2999-01-01T00:00:00Z")
    assert text.code == 0, text.describe()
    assert "Pruned 2 run(s)" in text.stdout
    after = {
        r["run_id"] for r in cli("runs", "list", "--workflow-id", workflow_id, "--json").json()
    }
    assert 1 == len(after)
    assert after < before


def test_prune_needs_a_criterion_and_a_valid_date(cli: Cli) -> None:
    assert cli("runs", "prune", "any").code == 2
    bad = cli("runs", "prune", "any", "--completed-before", "yesterday-ish")
    assert bad.code == 2
    assert "ISO 8601" in bad.stderr
    assert cli("runs", "prune", "any", "--keep-last", "0").code == 2


# -- a type no worker registers ------------------------------------------------------------


def test_start_wait_of_a_type_no_worker_registers_says_so(cli: Cli) -> None:
    workflow_id = new_id("typo")
    # (the timeout only bounds the wait: the worker notes the start at once)
    result = cli("start", "greeterr", '["x"]', "--id", workflow_id, "--wait", "--timeout", "5")
    assert result.code == 1, result.describe()
    assert "no worker registers workflow type 'greeterr'" in result.stderr
    assert "still running" not in result.stderr
    shown = cli("runs", "show", workflow_id, "--json").json()
    assert "running" == shown["status"]  # another worker may register it: not failed
    [note] = shown["notes"]
    assert "unregistered_type" == note["kind"] and "greeterr" in note["message"]
    text = cli("runs", "show", workflow_id).stdout
    assert "Notes:" in text and "unregistered_type" in text and "greeterr" in text
    assert shown["stuck"]["kind"] == "unregistered_type"
    assert "Stuck: no worker registers its workflow type: " in text
    assert cli("runs", "cancel", workflow_id).code == 0


def test_runs_show_says_which_worker_hosts_a_running_workflow(cli: Cli) -> None:
    import os
    import socket

    workflow_id = new_id("hosted")
    assert cli("start", "waiter", "--id", workflow_id).code == 0
    shown = cli("runs", "show", workflow_id, "--json").json()
    assert "running" == shown["status"] and "default" == shown["queue"]
    hosting = shown["hosting"]
    assert hosting.startswith("queue 'default', partition ")
    # the module's one worker process, on this machine (not this test's pid)
    assert f"on {socket.gethostname()} (pid " in hosting and f"(pid {os.getpid()})" not in hosting
    assert "Hosting:" in cli("runs", "show", workflow_id).stdout
    assert cli("runs", "signal", workflow_id, "go", '"x"').code == 0
    assert cli("runs", "result", workflow_id).code == 0
    done = cli("runs", "show", workflow_id, "--json").json()
    assert "completed" == done["status"] and "hosting" not in done
