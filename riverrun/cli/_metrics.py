"""``riverrun worker --metrics-port``: a Prometheus endpoint for the worker's metrics.

The only place outside the tests that imports the OpenTelemetry SDK (the ``riverrun[otel]``
extra): riverrun itself uses the API alone. The endpoint serves prometheus_client's default
registry, where the OpenTelemetry Prometheus reader registers itself, so metrics that the
hosted workflows' own code records through the global meter provider appear there too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import attrs

from ._exit import CliError, ExitCode

__all__ = ["MetricsEndpoint", "serve_metrics"]


@attrs.frozen(kw_only=True)
class MetricsEndpoint:
    """A running endpoint: scrape ``url``; give ``meter_provider`` to the runtime."""

    url: str
    meter_provider: Any


@contextlib.contextmanager
def serve_metrics(host: str, port: int) -> Iterator[MetricsEndpoint]:
    """Serve ``/metrics`` on ``host:port`` (port 0: any free port) until the block ends."""
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import start_http_server
    except ImportError as exc:
        raise CliError(
            f"--metrics-port needs the OpenTelemetry SDK and Prometheus exporter ({exc.name} "
            "is missing): pip install 'riverrun[otel]'",
            exit_code=ExitCode.USAGE,
        ) from exc
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise CliError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; pick another "
            "--metrics-port (or --metrics-host)",
            exit_code=ExitCode.USAGE,
        ) from exc
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    # global too: metrics the workflows' own code records go to the same endpoint
    metrics.set_meter_provider(provider)
    bound_port = server.server_address[1]
    shown = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    try:
        yield MetricsEndpoint(url=f"http://{shown}:{bound_port}/metrics", meter_provider=provider)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        provider.shutdown()
