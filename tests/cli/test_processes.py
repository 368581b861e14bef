"""The long-running commands (demo, dev, worker) and failure modes, as subprocesses."""

from __future__ import annotations

import gc
import importlib.metadata
import signal
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from riverrun.cli._worker import DEFAULT_GC_THRESHOLD, load_workflows
from riverrun.persistence import EmbeddedNatsServer
from riverrun.testing._nats import unique_namespace

from .conftest import COMMAND_TIMEOUT, ROOT, Cli, WorkerProcess, base_env, run_riverrun


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


# -- README's first command ---------------------------------------------------------------


def test_the_console_script_is_riverrun_cli_main() -> None:
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert "riverrun.cli:main" == scripts["riverrun"].value


def test_demo_prints_a_chain_ending_in_completed() -> None:
    result = run_riverrun("demo", env=base_env())
    assert result.code == 0, result.describe()
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "Continue-As-New Chain" in lines
    assert "Chain length: 10 run(s)" in lines
    labels = [line for line in lines if line == "START" or line == "CURRENT" or line[:1] == "#"]
    assert ["START", *[f"#{n}" for n in range(2, 10)], "CURRENT"] == labels
    statuses = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Status:")]
    assert ["continued_as_new"] * 9 + ["completed"] == statuses
    assert "Result: Processed 1000 items in 10 batches" in lines
    assert "" == result.stderr


def test_the_installed_riverrun_script_runs_the_demo() -> None:
    # README's command is `riverrun demo`: the console script pip installed, not `python -m`
    script = Path(sysconfig.get_path("scripts")) / "riverrun"
    if not script.exists():
        pytest.skip(f"riverrun is not installed as a script in {script.parent}")
    proc = subprocess.run(
        [str(script), "demo", "--batches", "2"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        cwd=ROOT,
        env=base_env(),
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr
    statuses = [
        line.split(":", 1)[1].strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith("Status:")
    ]
    assert ["continued_as_new", "completed"] == statuses


def test_demo_with_other_sizes() -> None:
    result = run_riverrun("demo", "--batches", "3", "--batch-size", "7", env=base_env())
    assert result.code == 0, result.describe()
    assert "Result: Processed 21 items in 3 batches" in result.stdout


# -- unreachable server -------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("runs", "list"),
        ("runs", "show", "x"),
        ("runs", "chain", "x"),
        ("start", "greeter", '["x"]'),
        ("worker", "tests.cli.workflows"),
    ],
)
def test_an_unreachable_server_is_one_line_and_exit_4(command: tuple[str, ...]) -> None:
    url = f"nats://127.0.0.1:{closed_port()}"
    result = run_riverrun(*command, env=base_env(RIVERRUN_SERVERS=url), timeout=30)
    assert result.code == 4, result.describe()
    lines = result.stderr.strip().splitlines()
    assert 1 == len(lines), result.stderr
    assert url in lines[0]
    assert "riverrun dev" in lines[0]  # the hint
    assert "Traceback" not in result.stderr


def test_the_servers_option_wins_over_the_environment(nats_server: EmbeddedNatsServer) -> None:
    env = base_env(RIVERRUN_SERVERS=f"nats://127.0.0.1:{closed_port()}")
    ok = run_riverrun("runs", "list", "--servers", nats_server.url, "--json", env=env)
    assert ok.code == 0, ok.describe()


# -- worker -------------------------------------------------------------------------------


def test_worker_unknown_module_exits_3() -> None:
    result = run_riverrun("worker", "no_such_module_xyz", env=base_env())
    assert result.code == 3
    assert "no module named 'no_such_module_xyz'" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_module_without_workflows_exits_3() -> None:
    result = run_riverrun("worker", "tests.cli.sample_modules.no_workflows", env=base_env())
    assert result.code == 3
    assert "no @workflow" in result.stderr


def test_worker_unknown_attribute_exits_3() -> None:
    result = run_riverrun("worker", "tests.cli.workflows:nope", env=base_env())
    assert result.code == 3
    assert "no attribute 'nope'" in result.stderr


def test_worker_attribute_that_is_not_a_workflow_exits_2() -> None:
    result = run_riverrun("worker", "tests.cli.sample_modules.no_workflows:VALUE", env=base_env())
    assert result.code == 2
    assert "not a @workflow" in result.stderr


def test_worker_module_that_fails_to_import_exits_1() -> None:
    result = run_riverrun("worker", "tests.cli.sample_modules.broken", env=base_env())
    assert result.code == 1
    assert "broken on purpose" in result.stderr


def test_load_workflows_by_module_attribute_and_path() -> None:
    everything = load_workflows("tests.cli.workflows")
    assert {"continue_then_sleep", "countdown", "failing", "greeter", "sleeper", "waiter"} == {
        w.__name__ for w in everything
    }
    listed = load_workflows("tests.cli.sample_modules.registry:WORKFLOWS")
    assert ["greeter", "countdown"] == [w.__name__ for w in listed]
    single = load_workflows("tests.cli.workflows:greeter")
    assert ["greeter"] == [w.__name__ for w in single]
    by_path = load_workflows("tests/cli/workflows.py:greeter")
    assert single == by_path


def test_worker_hosts_named_workflows_and_stops_cleanly_on_sigterm(
    nats_server: EmbeddedNatsServer,
) -> None:
    cli = Cli(url=nats_server.url, namespace=unique_namespace("cli"))
    worker = WorkerProcess("tests.cli.sample_modules.registry:WORKFLOWS", cli.env())
    try:
        worker.wait_ready()
        assert "hosting 2 workflow(s) [countdown, greeter]" in worker.output
        report = cli("start", "greeter", '["worker"]', "--wait", "--json").json()
        assert "hello worker!" == report["result"]
    finally:
        code = worker.stop(signal.SIGTERM)
    assert 0 == code, worker.output
    assert "stopped" in worker.output


def test_worker_stops_cleanly_on_ctrl_c(nats_server: EmbeddedNatsServer) -> None:
    cli = Cli(url=nats_server.url, namespace=unique_namespace("cli"))
    worker = WorkerProcess("tests.cli.workflows", cli.env())
    worker.wait_ready()
    assert 0 == worker.stop(signal.SIGINT), worker.output
    assert "Traceback" not in worker.output


def test_the_worker_sets_the_collectors_youngest_threshold(
    nats_server: EmbeddedNatsServer,
) -> None:
    python_default = list(gc.get_threshold())  # this test process is left as Python set it
    target = "tests.cli.sample_modules.collector"
    cases = [
        ((), {}, [DEFAULT_GC_THRESHOLD, *python_default[1:]]),
        (("--gc-threshold", "0"), {}, python_default),
        ((), {"RIVERRUN_GC_THRESHOLD": "1234"}, [1234, *python_default[1:]]),
    ]
    for extra, env, expected in cases:
        cli = Cli(url=nats_server.url, namespace=unique_namespace("cli"))
        worker = WorkerProcess(target, {**cli.env(), **env}, *extra)
        try:
            worker.wait_ready()
            report = cli("start", "collector_thresholds", "--wait", "--json").json()
            assert expected == report["result"], (extra, env)
        finally:
            assert 0 == worker.stop(), worker.output


def test_a_negative_gc_threshold_is_a_usage_error() -> None:
    result = run_riverrun(
        "worker", "tests.cli.sample_modules.collector", "--gc-threshold", "-1", env=base_env()
    )
    assert result.code == 2, result.describe()
    assert "--gc-threshold" in result.stderr


def test_a_second_worker_takes_over_after_the_first_stops(
    nats_server: EmbeddedNatsServer,
) -> None:
    cli = Cli(url=nats_server.url, namespace=unique_namespace("cli"))
    first = WorkerProcess("tests.cli.workflows", cli.env())
    first.wait_ready()
    assert cli("start", "waiter", "--id", "handover").code == 0
    assert 0 == first.stop(), first.output
    second = WorkerProcess("tests.cli.workflows", cli.env())
    try:
        second.wait_ready()
        assert cli("runs", "signal", "handover", "go", '"after restart"').code == 0
        result = cli("runs", "result", "handover", "--json")
        assert "after restart" == result.json()["result"]
    finally:
        assert 0 == second.stop(), second.output


# -- dev ----------------------------------------------------------------------------------


def test_dev_serves_until_ctrl_c_and_keeps_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "nats"
    env = base_env()

    def serve() -> tuple[subprocess.Popen[str], str, list[str]]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riverrun", "dev", "--port", "0", "--data-dir", str(data_dir)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        export = [line for line in lines if "export RIVERRUN_SERVERS=" in line]
        assert export, "".join(lines)
        url = export[0].split("=", 1)[1].strip()
        assert url.startswith("nats://127.0.0.1:")
        return proc, url, lines

    def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=COMMAND_TIMEOUT)
        return proc.returncode, out

    proc, url, lines = serve()
    try:
        assert any(str(data_dir) in line for line in lines)
        cli = Cli(url=url, namespace="dev")
        assert [] == cli("runs", "list", "--json").json()
        worker = WorkerProcess("tests.cli.workflows", cli.env())
        worker.wait_ready()
        started = cli("start", "greeter", '["dev"]', "--id", "kept", "--wait")
        assert 0 == started.code, started.describe()
        assert 0 == worker.stop()
    finally:
        code, out = stop(proc)
    assert 0 == code, out
    assert "stopped" in out

    # a second `riverrun dev` on the same directory still has the run
    proc, url, _ = serve()
    try:
        run = Cli(url=url, namespace="dev")("runs", "show", "kept", "--json").json()
        assert "completed" == run["status"]
        assert "hello dev!" == run["result"]
    finally:
        assert 0 == stop(proc)[0]


def test_dev_refuses_a_port_in_use(nats_server: EmbeddedNatsServer) -> None:
    port = nats_server.url.rsplit(":", 1)[1]
    result = run_riverrun("dev", "--port", port, env=base_env(), timeout=30)
    assert 1 == result.code
    assert f"port {port}" in result.stderr and "in use" in result.stderr


def test_help_lists_every_command() -> None:
    result = run_riverrun("--help", env=base_env())
    assert 0 == result.code
    for command in ("demo", "dev", "runs", "start", "worker"):
        assert command in result.stdout
    runs_help = run_riverrun("runs", "--help", env=base_env()).stdout
    for command in (
        "list", "show", "describe", "chain", "logs", "result", "cancel", "terminate", "signal",
        "prune",
    ):
        assert command in runs_help


def test_usage_errors_exit_2() -> None:
    assert 2 == run_riverrun("no-such-command", env=base_env()).code
    assert 2 == run_riverrun("runs", "list", "--status", "sleeping", env=base_env()).code
    assert 2 == run_riverrun("--namespace", "a.b", "runs", "list", env=base_env()).code
