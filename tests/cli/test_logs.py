"""The JSON logs of a real ``riverrun worker`` name each event with its workflow id and run id."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import anyio
import attrs
import click
import pytest
from click.testing import CliRunner

from riverrun import EventType, Runtime
from riverrun.cli._settings import log_options
from riverrun.persistence import EmbeddedNatsServer, NewEvent, RunKey
from riverrun.testing import wait_until
from riverrun.testing._nats import unique_namespace

from .conftest import WorkerProcess, base_env


@attrs.frozen
class Chains:
    failing: tuple[str, str]
    parked: tuple[str, str]
    countdown: str


async def start_chains(url: str, namespace: str) -> Chains:
    """Start the workflows before any worker runs; corrupt one's history (a deterministic crash
    at every replay: the worker parks it after ``park_after_failures`` tries)."""
    async with Runtime.connect(url, namespace=namespace) as rt:
        failing = await rt.client.start("failing", "no good")
        countdown = await rt.client.start("countdown", 2)
        waiter = await rt.client.start("waiter")
        await rt.backend.events.append(
            RunKey(workflow_id=waiter.workflow_id, run_id=waiter.first_run_id),
            NewEvent(
                type=EventType.SIGNAL_RECEIVED.value,
                timestamp=datetime.now(UTC),
                data={"payload": 1, "inbox_seq": 0},  # no signal name: KeyError on replay
            ),
            expected_last=1,
            idempotency_id="corrupt",
        )
    return Chains(
        failing=(failing.workflow_id, failing.first_run_id),
        parked=(waiter.workflow_id, waiter.first_run_id),
        countdown=countdown.workflow_id,
    )


async def chain_of(url: str, namespace: str, workflow_id: str) -> list[str]:
    async with Runtime.connect(url, namespace=namespace) as rt:
        first = await rt.client.get_handle(workflow_id).describe()
        return [run.run_id for run in await rt.client.get_workflow_chain(first.run_id)]


def parse(worker: WorkerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(worker.lines)]


def find(
    records: list[dict[str, Any]], level: str, text: str, logger: str = "riverrun.workflow"
) -> list[dict[str, Any]]:
    return [
        r for r in records if r["level"] == level and text in r["message"] and r["logger"] == logger
    ]


def test_json_logs_of_a_worker_name_each_event_with_its_ids(
    nats_server: EmbeddedNatsServer,
) -> None:
    namespace = unique_namespace("logs")
    chains = anyio.run(start_chains, nats_server.url, namespace)
    env = base_env(
        RIVERRUN_SERVERS=nats_server.url, RIVERRUN_NAMESPACE=namespace, RIVERRUN_LOG_FORMAT="json"
    )
    worker = WorkerProcess("tests.cli.workflows", env, "--log-level", "info")
    try:
        worker.wait_ready()

        async def all_logged() -> bool:
            records = parse(worker)
            return bool(
                find(records, "WARNING", "failed")
                and find(records, "ERROR", "parked", "riverrun.worker")
                and len(find(records, "INFO", "resuming")) == 2
                and find(records, "INFO", "completed")
            )

        anyio.run(wait_until, all_logged)
    finally:
        code = worker.stop()
    assert 0 == code, worker.output
    records = parse(worker)  # every line of stderr is one JSON object
    assert records and all(
        {
            "time",
            "level",
            "logger",
            "message",
            "workflow_id",
            "run_id",
            "execution",
            "step",
            "attempt",
        }
        <= set(r)
        for r in records
    )

    def ids(record: dict[str, Any]) -> tuple[str, str]:
        return record["workflow_id"], record["run_id"]

    [failed] = find(records, "WARNING", "failed")
    assert chains.failing == ids(failed)
    assert "ValueError: no good" in failed["message"]

    [parked] = find(records, "ERROR", "parked", "riverrun.worker")
    assert chains.parked == ids(parked)
    assert "KeyError" in parked["message"] and "KeyError" in parked["exc_info"]
    restarts = find(records, "WARNING", "crashed", "riverrun.worker")
    supervision = find(records, "WARNING", "restarting", "riverrun.actors")
    assert 4 == len(restarts) == len(supervision)  # park_after_failures is 5 by default
    assert all(chains.parked == ids(r) for r in restarts + supervision)

    first, second, third = anyio.run(chain_of, nats_server.url, namespace, chains.countdown)
    wf = chains.countdown
    continuing = find(records, "INFO", "continuing as new")
    assert [(wf, first, 1, second), (wf, second, 2, third)] == [
        (*ids(r), r["execution"], r["new_run_id"]) for r in continuing
    ]
    assert all(r["history_length"] > 0 and r["state_size_bytes"] > 0 for r in continuing)
    resuming = find(records, "INFO", "resuming")
    assert [(wf, second, first, 2), (wf, third, second, 3)] == [
        (*ids(r), r["previous_run_id"], r["continuation_depth"]) for r in resuming
    ]
    [completed] = find(records, "INFO", "completed")
    assert (wf, third) == ids(completed)


@click.command()
@log_options
def probe(log_level: str, log_format: str) -> None:
    click.echo(f"{log_level} {log_format}")


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ((), {}, "info text"),
        ((), {"RIVERRUN_LOG_LEVEL": "DEBUG", "RIVERRUN_LOG_FORMAT": "json"}, "debug json"),
        (("--log-level", "error"), {"RIVERRUN_LOG_LEVEL": "debug"}, "error text"),
    ],
)
def test_log_options_resolve_option_then_environment_then_default(
    args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    clean = {"RIVERRUN_LOG_LEVEL": None, "RIVERRUN_LOG_FORMAT": None}
    result = CliRunner().invoke(probe, list(args), env={**clean, **env})
    assert 0 == result.exit_code, result.output
    assert expected == result.output.strip()
