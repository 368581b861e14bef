"""docs/cli.md works as written: every ``$ riverrun ...`` example runs, in order, against a
real nats-server and a worker hosting the module the page names (one that ships with
riverrun), and prints what the page shows (ids, times and durations aside); the other
commands it names use shipped workflows; ``riverrun worker --help`` lists the options the
page does."""

from __future__ import annotations

import re
import shlex
import socket

import attrs
import pytest

from riverrun.cli._worker import load_workflows
from riverrun.persistence import EmbeddedNatsServer
from riverrun.testing._nats import unique_namespace

from .conftest import ROOT, WorkerProcess, base_env, run_riverrun

CLI_MD = ROOT / "docs" / "cli.md"
#: the module every example runs against
SHIPPED = "riverrun.cli._demo"


@attrs.frozen
class Example:
    command: str
    output: tuple[str, ...]


def code_blocks() -> list[str]:
    return [body for _, body in re.findall(r"^```(\w*)\n(.*?)^```", CLI_MD.read_text(), re.S | re.M)]


def examples() -> list[Example]:
    """Every ``$ ...`` line of the page's code blocks, with the lines shown after it."""
    found: list[Example] = []
    for block in code_blocks():
        command: str | None = None
        output: list[str] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                if command is not None:
                    found.append(Example(command, tuple(output)))
                command, output = line[2:], []
            elif command is not None:
                output.append(line)
        if command is not None:
            found.append(Example(command, tuple(output)))
    return found


_HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?")
_DURATION = re.compile(r"\b\d+(\.\d+)?(ms|s)\b|\b\d+m \d{2}s\b")


_HOST_PID = re.compile(r" on \S+ \(pid \d+\)")


def normalise(line: str) -> str:
    """A line with what differs from run to run (ids, times, durations, spacing) masked."""
    line = _HEX_ID.sub("<id>", line)
    line = _TIME.sub("<time>", line)
    line = _DURATION.sub("<duration>", line)
    line = _HOST_PID.sub(" on <host> (pid <pid>)", line)
    return " ".join(line.split())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_example_runs_against_the_shipped_module_as_shown(
    nats_server: EmbeddedNatsServer,
) -> None:
    env = base_env(RIVERRUN_SERVERS=nats_server.url, RIVERRUN_NAMESPACE=unique_namespace("md"))
    found = examples()
    assert len([e for e in found if e.command.startswith("riverrun ")]) >= 15
    worker: WorkerProcess | None = None
    try:
        for index, example in enumerate(found):
            args = shlex.split(example.command)
            if args[0] != "riverrun":
                assert args[:2] == ["echo", "$?"], example.command  # read with the one before
                continue
            if args[1] == "worker":
                assert args[2:] == [SHIPPED], "the examples run against the shipped module"
                worker = WorkerProcess(SHIPPED, env)
                worker.wait_ready()
                hosting = [line for line in worker.lines if "hosting" in line]
                assert _mask_server(example.output[0]) == _mask_server(hosting[0])
                continue
            after = found[index + 1] if index + 1 < len(found) else None
            expected_code = 0
            if after is not None and after.command == "echo $?":
                expected_code = int(after.output[0])
            elif example.output and example.output[0].startswith("riverrun: error:"):
                expected_code = -1  # some error
            run_env = env
            if any("cannot connect to NATS" in line for line in example.output):
                run_env = {**env, "RIVERRUN_SERVERS": f"nats://127.0.0.1:{_free_port()}"}
            else:
                assert worker is not None, f"{example.command!r} comes before the worker"
            result = run_riverrun(*args[1:], env=run_env)
            if expected_code == -1:
                assert result.code != 0, result.describe()
            else:
                assert result.code == expected_code, result.describe()
            if result.code != 0:
                shown = _mask_server(example.output[0])
                assert _mask_server(result.stderr.splitlines()[0]) == shown, result.describe()
                continue
            documented = [normalise(line) for line in example.output]
            printed = [normalise(line) for line in result.stdout.splitlines()]
            assert printed == documented, f"{example.command}\n{result.stdout}"
    finally:
        if worker is not None:
            assert worker.stop() == 0, worker.output
    assert worker is not None, "the page starts no worker"


def _mask_server(line: str) -> str:
    """An error or hosting line up to the server URL (which differs from the page's)."""
    return line.split("nats://", 1)[0].strip()


def test_other_commands_name_shipped_modules_and_workflows() -> None:
    hosted = {w.__riverrun_workflow__.name for w in load_workflows(SHIPPED)}
    assert {"approval", "batch_processor"} <= hosted
    for block in code_blocks():
        for line in block.splitlines():
            words = shlex.split(line.removeprefix("$ "), comments=True) if "riverrun" in line else []
            if words[:2] == ["riverrun", "worker"] and not words[2].isupper():
                target = words[2].split("[", 1)[0]
                if target != "MODULE":
                    assert load_workflows(target), line
            if words[:2] == ["riverrun", "start"] and words[2] != "WORKFLOW":
                # the one misspelled name is the page's example of a run no worker can host
                assert words[2] in hosted or "typo" in line, line


def _options(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


def test_worker_help_lists_the_documented_options() -> None:
    helped = run_riverrun("worker", "--help", env=base_env())
    assert helped.code == 0
    listed = _options(helped.stdout.split("Options:", 1)[1]) - {"--help"}
    section = CLI_MD.read_text().split("## `riverrun worker`", 1)[1].split("\n## ", 1)[0]
    # the synopsis block; it may wrap over several lines
    synopsis = re.findall(r"^```\n(riverrun worker .*?)\n```", section, re.M | re.S)
    assert len(synopsis) == 1
    assert _options(synopsis[0]) == listed


@pytest.mark.parametrize("line", ["Duration: 13ms", "Started: 2026-11-23 17:33:55"])
def test_normalise_masks_what_differs(line: str) -> None:
    assert "<" in normalise(line)
