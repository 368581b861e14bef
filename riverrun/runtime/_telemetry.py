"""Metrics and traces through the OpenTelemetry API (meter and tracer ``riverrun``).

Design note. riverrun depends only on ``opentelemetry-api``: without an SDK every instrument
and span is a no-op, so the hooks below cost a method call when nothing is configured. A
``Telemetry`` belongs to one runtime; it takes the meter and tracer providers given to the
runtime, or the global ones. The instance calls a ``RunTelemetry`` (one per hosted workflow
id) at a few points: an event applied or recorded, a step attempt, a hand-over, the end of
hosting. The worker's counts (active, parked, ...) are observed from
``Worker.statistics()`` when a reader collects, on a meter whose scope carries the worker's
id, so that several runtimes in one process report separately.

Trace context crosses processes inside the data riverrun already stores, not in NATS
headers: the ``workflow.started`` event and a signal's inbox message carry a small ``trace``
mapping (W3C ``traceparent``). The log is what a worker reads when it hosts a run (after a
crash, in another process, on any backend), so the context is there however the run is
reached; the inbox's ``start`` message is only a wake-up hint. A run started by
continue-as-new keeps the chain's start as its parent and links to the previous run's span.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context, metrics, propagate, trace

if TYPE_CHECKING:
    from ..persistence import InboxMessage, StoredEvent
    from ._machine import WorkflowMachine

__all__ = ["RunTelemetry", "Telemetry"]

#: bucket boundaries advised to the SDK (a View can override them)
_DEPTH_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 500, 1000)
_LENGTH_BUCKETS = (10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000)
_SECONDS_BUCKETS = (
    *(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1, 2.5, 5, 10, 30, 60, 300, 3600),
)

_TERMINAL = {
    "workflow.completed": "completed",
    "workflow.failed": "failed",
    "workflow.cancelled": "cancelled",
}


class _StatisticsSource(Protocol):
    def statistics(self) -> object: ...


def _workflow_type(machine: WorkflowMachine) -> str:
    return machine.definition.name if machine.definition is not None else ""


class Telemetry:
    """A runtime's instruments and tracer (see the module docstring)."""

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.meter_provider = meter_provider or metrics.get_meter_provider()
        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("riverrun")
        # the API's default providers make non-recording spans: skip building them at all
        self.tracing = not isinstance(
            provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
        )
        meter = self.meter_provider.get_meter("riverrun")
        self.continue_as_new = meter.create_counter(
            "riverrun.workflow.continue_as_new",
            unit="{run}",
            description="Runs that ended by continuing as new",
        )
        self.history_length_at_continue = meter.create_histogram(
            "riverrun.workflow.history_length_at_continue",
            unit="{event}",
            description="Events in a run's history when it continued as new",
            explicit_bucket_boundaries_advisory=_LENGTH_BUCKETS,
        )
        self.continuation_depth = meter.create_histogram(
            "riverrun.workflow.continuation_depth",
            unit="{run}",
            description="Continuations a chain has made so far, recorded at each continue-as-new",
            explicit_bucket_boundaries_advisory=_DEPTH_BUCKETS,
        )
        self.continued_run_duration = meter.create_histogram(
            "riverrun.workflow.continued_run.duration",
            unit="s",
            description="Time from a run's start to its continue-as-new",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.started = meter.create_counter(
            "riverrun.workflow.started",
            unit="{workflow}",
            description="Chains started by this process (clients; workers for children)",
        )
        self.ended = {
            status: meter.create_counter(
                f"riverrun.workflow.{status}",
                unit="{workflow}",
                description=f"Chains whose last run was {status} (recorded by this worker)",
            )
            for status in ("completed", "failed", "cancelled")
        }
        self.step_duration = meter.create_histogram(
            "riverrun.step.duration",
            unit="s",
            description="Wall time of one step attempt",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.step_attempts = meter.create_counter(
            "riverrun.step.attempts",
            unit="{attempt}",
            description="Step attempts, by step name and outcome",
        )
        self.inbox_lag = meter.create_histogram(
            "riverrun.inbox.lag",
            unit="s",
            description="Time from an inbox message's timestamp to its reading by the run",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self.store_errors = meter.create_counter(
            "riverrun.store.errors",
            unit="{error}",
            description="Workflow actors crashed by an infrastructure fault (store unreachable, "
            "timeout, lost fence); each restarts with backoff",
        )
        self.crashes = meter.create_counter(
            "riverrun.workflow.crashes",
            unit="{crash}",
            description="Workflow actors crashed by anything but an infrastructure fault",
        )
        self.parks = meter.create_counter(
            "riverrun.workflow.parks",
            unit="{workflow}",
            description="Workflows parked (non-determinism, or a crash that repeats)",
        )

    @property
    def metering_steps(self) -> bool:
        """Whether step attempts are measured: not while the instruments are no-ops (no SDK:
        a no-op provider, or the API's proxies before a meter provider is set globally)."""
        counter = self.step_attempts
        if isinstance(counter, metrics.NoOpCounter):
            return False
        # the API's proxy instrument delegates once a provider is set: follow that
        return getattr(counter, "_real_instrument", counter) is not None

    # -- the worker's counts ----------------------------------------------------------------

    def observe_worker(self, worker: _StatisticsSource, worker_id: str) -> None:
        """Report ``worker.statistics()`` as observable instruments whenever a reader collects.

        The meter's scope carries the worker id (``otel_scope_worker_id`` in Prometheus): an
        SDK keeps one set of callbacks per instrument name and scope, so each runtime needs
        its own scope. The worker is held weakly: a closed runtime reports nothing.
        """
        meter = self.meter_provider.get_meter("riverrun", attributes={"worker_id": worker_id})
        ref = weakref.ref(worker)

        def reading(
            field: str,
        ) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
            def callback(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
                source = ref()
                if source is None:
                    return []
                # `quarantined` is read by name: older statistics do not have it
                return [metrics.Observation(getattr(source.statistics(), field, 0))]

            return callback

        for field, description in (
            ("active", "Workflow ids hosted in memory now"),
            ("parked", "Workflow ids parked on this worker now"),
            ("quarantined", "Inbox messages quarantined (unreadable) by this worker"),
        ):
            meter.create_observable_gauge(
                f"riverrun.worker.{field}",
                callbacks=[reading(field)],
                unit="{workflow}" if field != "quarantined" else "{message}",
                description=description,
            )
        for field, description in (
            ("started", "Workflow actors spawned (a rehydration from history each)"),
            ("passivated", "Workflow actors that left memory while idle"),
            ("restarts", "Workflow actor restarts after a crash"),
        ):
            meter.create_observable_counter(
                f"riverrun.worker.{field}",
                callbacks=[reading(field)],
                unit="{actor}",
                description=description,
            )

    # -- client side ------------------------------------------------------------------------

    def start_span(
        self,
        workflow_name: str,
        workflow_id: str,
        *,
        child: bool,
        context: otel_context.Context | None = None,
    ) -> trace.Span | None:
        """A span for a chain start (``start_child`` from a worker); ``None`` when not tracing."""
        self.started.add(1, {"workflow_type": workflow_name, "child": child})
        if not self.tracing:
            return None
        return self.tracer.start_span(
            f"{'start_child' if child else 'start'} {workflow_name}",
            context=context,
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "riverrun.workflow_type": workflow_name,
                "riverrun.workflow_id": workflow_id,
            },
        )

    @contextlib.contextmanager
    def sending_signal(self, name: str, workflow_id: str) -> Iterator[dict[str, Any]]:
        """Trace a signal send (``signal NAME``); yields what to add to the message's data."""
        if not self.tracing:
            yield {}
            return
        span = self.tracer.start_span(
            f"signal {name}",
            kind=trace.SpanKind.PRODUCER,
            attributes={"riverrun.signal": name, "riverrun.workflow_id": workflow_id},
        )
        try:
            found = carrier(span)
            yield {"trace": found} if found else {}
        except BaseException as exc:
            end_span(span, exc)
            raise
        end_span(span)

    def crashed(self, err: BaseException, *, infrastructure: bool) -> None:
        """A workflow actor crashed (it restarts, or is parked: see ``parked``)."""
        counter = self.store_errors if infrastructure else self.crashes
        counter.add(1, {"error_type": type(err).__name__})

    def parked(self, reason: str) -> None:
        self.parks.add(1, {"reason": reason})

    def instance(self, workflow_id: str) -> RunTelemetry:
        return RunTelemetry(self, workflow_id)


def carrier(span: trace.Span | None) -> dict[str, str] | None:
    """``span``'s context as a W3C ``traceparent`` mapping, to store with a message or event."""
    if span is None:
        return None
    found: dict[str, str] = {}
    propagate.inject(found, context=trace.set_span_in_context(span))
    return found or None


def end_span(span: trace.Span | None, error: BaseException | None = None) -> None:
    if span is None:
        return
    if error is not None:
        span.record_exception(error)
        span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
    span.end()


def _extract(found: object) -> otel_context.Context | None:
    if not isinstance(found, Mapping) or not found:
        return None
    return propagate.extract({str(k): str(v) for k, v in found.items()})


class RunTelemetry:
    """What one workflow instance reports: its runs, steps, hand-overs and inbox reads."""

    def __init__(self, telemetry: Telemetry, workflow_id: str) -> None:
        self.telemetry = telemetry
        self.workflow_id = workflow_id
        self.started_at: datetime | None = None
        #: the chain's start context (carried from run to run) and the current run's span
        self.trace: Mapping[str, str] | None = None
        self.span: trace.Span | None = None

    # -- runs -------------------------------------------------------------------------------

    def applied(self, machine: WorkflowMachine, event: StoredEvent) -> None:
        """An event was applied (replay, or the first event of a run this instance wrote)."""
        if event.type != "workflow.started":
            return
        self.started_at = event.timestamp
        found = event.data.get("trace")
        self.trace = found if isinstance(found, Mapping) else None
        if not self.telemetry.tracing:
            return
        self.close()
        links = []
        previous = _extract(event.data.get("trace_link"))
        if previous is not None:
            links.append(
                trace.Link(
                    trace.get_current_span(previous).get_span_context(),
                    {"riverrun.link": "continued_from"},
                )
            )
        self.span = self.telemetry.tracer.start_span(
            f"run {_workflow_type(machine)}",
            context=_extract(self.trace) or otel_context.Context(),
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "riverrun.workflow_id": self.workflow_id,
                "riverrun.run_id": machine.run_id,
                "riverrun.workflow_type": _workflow_type(machine),
                "riverrun.execution": machine.execution,
            },
        )

    def recorded(self, machine: WorkflowMachine, type_: str, data: Mapping[str, Any]) -> None:
        """An event was appended live (never called on replay)."""
        status = _TERMINAL.get(type_)
        if status is None:
            return
        if data.get("terminated"):
            status = "cancelled"
        attributes = {"workflow_type": _workflow_type(machine)}
        self.telemetry.ended[status].add(1, attributes)
        if self.span is not None:
            self.span.set_attribute("riverrun.status", status)
            if status == "failed":
                self.span.set_status(trace.StatusCode.ERROR, str(data.get("message", "")))
            self.close()

    def handover_trace(self) -> dict[str, Any]:
        """What the next run's first event carries: the chain's start context (the runs'
        parent) and this run's span context (the next run's link)."""
        found: dict[str, Any] = {}
        if self.trace:
            found["trace"] = dict(self.trace)
        link = carrier(self.span)
        if link:
            found["trace_link"] = link
        return found

    def continued(self, machine: WorkflowMachine, now: datetime) -> None:
        """``machine``'s run continued as new (the hand-over is written)."""
        telemetry = self.telemetry
        workflow_type = {"workflow_type": _workflow_type(machine)}
        telemetry.continue_as_new.add(1, workflow_type)
        telemetry.history_length_at_continue.record(machine.history_length, workflow_type)
        telemetry.continuation_depth.record(machine.execution, workflow_type)
        if self.started_at is not None:
            seconds = max(0.0, (now - self.started_at).total_seconds())
            telemetry.continued_run_duration.record(seconds, workflow_type)
        if self.span is not None:
            self.span.set_attribute("riverrun.status", "continued_as_new")
            self.close()

    def close(self) -> None:
        """Hosting of the current run stops here (ended, passivated, crashed)."""
        span, self.span = self.span, None
        if span is not None:
            span.end()

    # -- inside a run -----------------------------------------------------------------------

    def inbox_read(self, message: InboxMessage, now: datetime) -> None:
        """A run read an inbox message: record its lag; a traced signal gets a span."""
        telemetry = self.telemetry
        lag = (now - message.timestamp).total_seconds()
        telemetry.inbox_lag.record(max(0.0, lag), {"kind": message.kind})
        if telemetry.tracing and message.kind == "signal":
            sender = _extract(message.data.get("trace"))
            if sender is not None:
                links = []
                if self.span is not None:
                    links.append(trace.Link(self.span.get_span_context()))
                telemetry.tracer.start_span(
                    f"receive signal {message.data.get('name')}",
                    context=sender,
                    kind=trace.SpanKind.CONSUMER,
                    links=links,
                    attributes={"riverrun.workflow_id": self.workflow_id},
                ).end()

    def run_context(self) -> otel_context.Context | None:
        """The current run's span as a context (to parent a child start), if tracing."""
        if self.span is None:
            return None
        return trace.set_span_in_context(self.span)

    def step(
        self, fn: Callable[..., Awaitable[Any]], name: str, attempt: int
    ) -> Callable[..., Awaitable[Any]]:
        """``fn`` timed (and traced: ``step NAME``, current while it runs) as one attempt."""
        telemetry = self.telemetry
        span = None
        if self.span is not None:
            span = telemetry.tracer.start_span(
                f"step {name}",
                context=trace.set_span_in_context(self.span),
                attributes={
                    "riverrun.workflow_id": self.workflow_id,
                    "riverrun.step": name,
                    "riverrun.attempt": attempt,
                },
            )
        elif not telemetry.metering_steps:
            return fn  # neither traced nor measured: nothing to add

        async def attempt_of(*args: Any, **kwargs: Any) -> Any:
            outcome = "error"
            begin = time.perf_counter()
            try:
                if span is None:
                    result = await fn(*args, **kwargs)
                else:
                    with trace.use_span(span, end_on_exit=False):
                        result = await fn(*args, **kwargs)
                outcome = "completed"
                return result
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    outcome = "cancelled"
                raise
            finally:
                labels = {"step": name, "outcome": outcome}
                telemetry.step_duration.record(time.perf_counter() - begin, labels)
                telemetry.step_attempts.add(1, labels)
                if span is not None:
                    span.set_attribute("riverrun.outcome", outcome)
                    span.end()

        return attempt_of
