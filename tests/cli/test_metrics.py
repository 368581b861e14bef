"""``riverrun worker --metrics-port``: a real worker process, scraped after a real workload."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from riverrun import Runtime, WorkflowFailed
from riverrun.persistence import EmbeddedNatsServer, NewEvent, RunKey
from riverrun.testing import wait_until
from riverrun.testing._nats import unique_namespace

from . import workflows
from .conftest import COMMAND_TIMEOUT, Cli, WorkerProcess, run_riverrun

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of the endpoint: (name, labels without otel_scope_*) -> value."""
    with urllib.request.urlopen(url, timeout=COMMAND_TIMEOUT) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = frozenset(
                (k, v) for k, v in sample.labels.items() if not k.startswith("otel_scope_")
            )
            samples[(sample.name, labels)] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{key} not in {sorted(k for k in samples if k[0] == name)}"
    return samples[key]


async def prepare_workload(url: str, namespace: str) -> dict[str, str]:
    """Start the chains before any worker runs: one that continues as new three times, two
    that fail, and one with a corrupt history (an unknown event type) that will park."""
    async with Runtime.connect(url, namespace=namespace, worker=False) as rt:
        countdown = await rt.client.start(workflows.countdown, 3)
        for n in range(2):
            await rt.client.start(workflows.failing, f"boom {n}", workflow_id=f"failing-{n}")
        waiter = await rt.client.start(workflows.waiter)
        await rt.backend.events.append(
            RunKey(workflow_id=waiter.workflow_id, run_id=waiter.first_run_id),
            NewEvent(type="no.such.event", timestamp=datetime.now(UTC), data={}),
            expected_last=1,
            idempotency_id="corrupt",
        )
        return {"countdown": countdown.workflow_id, "waiter": waiter.workflow_id}


async def wait_for_workload(url: str, namespace: str, ids: dict[str, str], metrics: str) -> None:
    async with Runtime.connect(url, namespace=namespace, worker=False) as rt:
        assert {"total": 6} == await rt.client.get_handle(ids["countdown"]).result(timeout=60)
        for n in range(2):
            with pytest.raises(WorkflowFailed):
                await rt.client.get_handle(f"failing-{n}").result(timeout=60)

    async def parked() -> bool:
        found = await anyio.to_thread.run_sync(scrape, metrics)
        return found.get(("riverrun_worker_parked", frozenset())) == 1

    await wait_until(parked, timeout=60)


def test_the_worker_serves_the_seed_002_metrics_and_failure_counters(
    nats_server: EmbeddedNatsServer,
) -> None:
    cli = Cli(url=nats_server.url, namespace=unique_namespace("metrics"))
    ids = anyio.run(prepare_workload, cli.url, cli.namespace)
    worker = WorkerProcess("tests.cli.workflows", cli.env(), "--metrics-port", "0")
    try:
        worker.wait_ready()
        (line,) = [line for line in worker.lines if "metrics on" in line]
        url = line.split("metrics on ", 1)[1].strip()
        anyio.run(wait_for_workload, cli.url, cli.namespace, ids, url)
        found = scrape(url)
    finally:
        code = worker.stop()
    assert 0 == code, worker.output

    countdown = {"workflow_type": "countdown"}
    # seed 002: three continuations, of runs with two events each (started, one step)
    assert 3 == sample(found, "riverrun_workflow_continue_as_new_total", **countdown)
    assert 3 == sample(found, "riverrun_workflow_history_length_at_continue_count", **countdown)
    assert 6 == sample(found, "riverrun_workflow_history_length_at_continue_sum", **countdown)
    # depths 1, 2, 3: two of them at most 2
    assert 3 == sample(found, "riverrun_workflow_continuation_depth_count", **countdown)
    assert 6 == sample(found, "riverrun_workflow_continuation_depth_sum", **countdown)
    assert 2 == sample(found, "riverrun_workflow_continuation_depth_bucket", **countdown, le="2")
    assert 3 == sample(found, "riverrun_workflow_continued_run_duration_seconds_count", **countdown)
    assert 1 == sample(found, "riverrun_workflow_completed_total", **countdown)
    # failures and the park
    assert 2 == sample(found, "riverrun_workflow_failed_total", workflow_type="failing")
    assert 1 == sample(found, "riverrun_workflow_parks_total", reason="nondeterminism")
    assert 1 == sample(found, "riverrun_worker_parked")
    # steps: one per run of the countdown chain
    step = {"step": "count", "outcome": "completed"}
    assert 4 == sample(found, "riverrun_step_attempts_total", **step)
    assert 4 == sample(found, "riverrun_step_duration_seconds_count", **step)
    assert sample(found, "riverrun_worker_started_total") >= 4


def test_a_taken_metrics_port_is_a_usage_error(nats_server: EmbeddedNatsServer) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_riverrun(
            "worker",
            "tests.cli.workflows",
            "--servers",
            nats_server.url,
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(port),
            env=Cli(url=nats_server.url, namespace=unique_namespace("metrics")).env(),
        )
    assert 2 == result.code, result.describe()
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
