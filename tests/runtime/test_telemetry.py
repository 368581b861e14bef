"""Metrics and traces through OpenTelemetry, with the SDK's in-memory reader and exporter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from riverrun import continue_as_new, execute_child, step, wait_for_signal, workflow
from riverrun.persistence import RunKey, StoreUnavailable

from .conftest import RuntimeFactory, fail_history_reads

pytestmark = pytest.mark.anyio


@step()
async def traced_double(x: int) -> int:
    return 2 * x


@step()
async def traced_flaky(x: int) -> int:
    raise ValueError(f"no {x}")


@workflow()
async def traced_child(x: int) -> int:
    return await traced_double(x)


@workflow()
async def traced_parent(x: int, round_: int = 0) -> int:
    if round_ == 0:
        doubled = await traced_double(x)
        got = await execute_child(traced_child, doubled, workflow_id=f"{x}-traced-child")
        await wait_for_signal("go")
        continue_as_new(got, 1)
    return x


@workflow()
async def traced_failing(x: int) -> int:
    return await traced_flaky(x)


@pytest.fixture
def telemetry() -> Iterator[
    tuple[MeterProvider, InMemoryMetricReader, TracerProvider, InMemorySpanExporter]
]:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    yield meters, reader, tracers, exporter
    meters.shutdown()
    tracers.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Every data point by metric name: (attributes, point)."""
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), point))
    return found


def value(found: dict[str, list[tuple[dict[str, Any], Any]]], name: str, **labels: Any) -> Any:
    matching = [
        p for attrs, p in found.get(name, []) if all(attrs.get(k) == v for k, v in labels.items())
    ]
    assert len(matching) == 1, (name, labels, found.get(name))
    return matching[0]


async def test_a_chain_is_traced_from_its_start_through_steps_children_signals_and_runs(
    make_runtime: RuntimeFactory, telemetry: Any
) -> None:
    meters, _, tracers, exporter = telemetry
    async with make_runtime(
        workflows=[traced_parent, traced_child], meter_provider=meters, tracer_provider=tracers
    ) as rt:
        handle = await rt.client.start(traced_parent, 5)
        await handle.signal("go")
        assert 20 == await handle.result(timeout=30)
    spans: list[ReadableSpan] = list(exporter.get_finished_spans())

    def named(name: str) -> list[ReadableSpan]:
        return [s for s in spans if s.name == name]

    (start,) = named("start traced_parent")
    runs = sorted(named("run traced_parent"), key=lambda s: s.attributes["riverrun.execution"])
    assert [1, 2] == [r.attributes["riverrun.execution"] for r in runs]
    (child_start,) = named("start_child traced_child")
    (child_run,) = named("run traced_child")
    (signal,) = named("signal go")
    (received,) = named("receive signal go")

    def parent_of(span: ReadableSpan) -> int | None:
        return span.parent.span_id if span.parent is not None else None

    # one trace from the start: runs under the start, steps and child starts under their run
    assert start.parent is None
    assert {start.context.trace_id} == {r.context.trace_id for r in [*runs, child_run]}
    assert [start.context.span_id] * 2 == [parent_of(r) for r in runs]
    assert runs[0].context.span_id == parent_of(child_start)
    steps = {parent_of(s): s for s in named("step traced_double")}
    assert {runs[0].context.span_id, child_run.context.span_id} == set(steps)
    assert 1 == steps[runs[0].context.span_id].attributes["riverrun.attempt"]
    assert child_start.context.span_id == parent_of(child_run)
    assert signal.context.span_id == parent_of(received)
    assert ("continued_as_new", "completed") == tuple(r.attributes["riverrun.status"] for r in runs)
    # the second run links to the first (continue-as-new)
    assert [runs[0].context.span_id] == [link.context.span_id for link in runs[1].links]
    assert dict(runs[1].links[0].attributes or {}) == {"riverrun.link": "continued_from"}
    assert [] == list(runs[0].links)


async def test_metrics_count_continuations_steps_and_endings(
    make_runtime: RuntimeFactory, telemetry: Any
) -> None:
    meters, reader, _, _ = telemetry
    async with make_runtime(
        workflows=[traced_parent, traced_child, traced_failing], meter_provider=meters
    ) as rt:
        handle = await rt.client.start(traced_parent, 5)
        await handle.signal("go")
        assert 20 == await handle.result(timeout=30)
        failing = await rt.client.start(traced_failing, 1)
        with pytest.raises(Exception, match="no 1"):
            await failing.result(timeout=30)
        found = points(reader)
    parent_type = {"workflow_type": "traced_parent"}
    assert 1 == value(found, "riverrun.workflow.continue_as_new", **parent_type).value
    history = value(found, "riverrun.workflow.history_length_at_continue", **parent_type)
    assert (1, history.sum) == (history.count, history.sum) and history.sum >= 5
    depth = value(found, "riverrun.workflow.continuation_depth", **parent_type)
    assert (1, 1) == (depth.count, depth.sum)
    assert 1 == value(found, "riverrun.workflow.continued_run.duration", **parent_type).count
    assert 1 == value(found, "riverrun.workflow.completed", **parent_type).value
    assert 1 == value(found, "riverrun.workflow.completed", workflow_type="traced_child").value
    assert 1 == value(found, "riverrun.workflow.failed", workflow_type="traced_failing").value
    assert (
        1
        == value(found, "riverrun.workflow.started", workflow_type="traced_child", child=True).value
    )
    assert 1 == value(found, "riverrun.workflow.started", **parent_type, child=False).value
    assert (
        2 == value(found, "riverrun.step.attempts", step="traced_double", outcome="completed").value
    )
    assert (
        2 == value(found, "riverrun.step.duration", step="traced_double", outcome="completed").count
    )
    # the default retry policy tries three times
    assert 3 == value(found, "riverrun.step.attempts", step="traced_flaky", outcome="error").value
    signal_lag = value(found, "riverrun.inbox.lag", kind="signal")
    assert signal_lag.count == 1 and signal_lag.sum >= 0
    assert 0 == value(found, "riverrun.worker.parked").value
    assert value(found, "riverrun.worker.started").value >= 3


async def test_store_errors_are_counted_and_restarted(
    make_runtime: RuntimeFactory, telemetry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    meters, reader, _, _ = telemetry
    async with make_runtime(
        workflows=[traced_child], restart_backoff=0.0, meter_provider=meters
    ) as rt:

        def outage(n: int, key: RunKey) -> BaseException | None:
            return StoreUnavailable("the store is down (test)") if n <= 3 else None

        fail_history_reads(monkeypatch, rt, outage)
        assert 4 == await (await rt.client.start(traced_child, 2)).result(timeout=30)
        found = points(reader)
    assert 3 == value(found, "riverrun.store.errors", error_type="StoreUnavailable").value
    assert 3 == value(found, "riverrun.worker.restarts").value
    assert 0 == value(found, "riverrun.worker.quarantined").value
    assert "riverrun.workflow.crashes" not in found


async def test_without_providers_nothing_is_traced_or_stored(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[traced_parent, traced_child]) as rt:
        handle = await rt.client.start(traced_parent, 1)
        await handle.signal("go")
        assert 4 == await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain(handle.first_run_id)
        last = RunKey(workflow_id=handle.workflow_id, run_id=chain[-1].run_id)
        first_event = (await rt.backend.events.read(last, limit=1))[0]
    assert "workflow.started" == first_event.type
    assert {"trace", "trace_link"}.isdisjoint(first_event.data)
