"""``riverrun worker MODULE[:ATTR]``: host a module's workflows until SIGTERM or Ctrl-C.

``MODULE`` is imported with the current directory on ``sys.path`` (as ``python -m`` would);
a file path (``app/flows.py``) is accepted too. ``ATTR`` names a workflow or a list of them
(dotted attributes work: ``registry.WORKFLOWS``); without it, every ``@workflow`` function
found in the module's namespace is hosted.

The data converter (how typed values are encoded) is ``--converter MODULE:ATTR``, else the
module's ``riverrun_converter`` attribute when it has one, else the default ``DataConverter``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from ._exit import CliError, ExitCode, fail, run_command
from ._metrics import MetricsEndpoint, serve_metrics
from ._runtime import open_runtime
from ._settings import Settings, connection_options, log_options, pass_settings

if TYPE_CHECKING:
    from riverrun import Runtime

__all__ = ["is_workflow", "load_converter", "load_workflows", "tune_collector", "worker"]


def is_workflow(obj: object) -> bool:
    """Whether ``obj`` was made by ``@workflow``."""
    from riverrun.runtime import is_workflow as runtime_is_workflow

    return runtime_is_workflow(obj)


def workflow_name(obj: object) -> str:
    """The name a workflow is registered under, for messages."""
    for attribute in ("name", "workflow_name"):
        value = getattr(obj, attribute, None)
        if isinstance(value, str):
            return value
    definition = getattr(obj, "__riverrun_workflow__", None)
    name = getattr(definition, "name", None)
    return name if isinstance(name, str) else getattr(obj, "__name__", repr(obj))


def _module_name(spec: str) -> str:
    """``app/flows.py`` → ``app.flows``; a module name is returned unchanged."""
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec)
        if path.suffix == ".py":
            path = path.with_suffix("")
        try:
            relative = path.resolve().relative_to(Path.cwd())
        except ValueError:
            fail(
                f"{spec!r} is outside the current directory; run the worker from the project "
                f"root, or give a module name",
                exit_code=ExitCode.USAGE,
            )
        return ".".join(relative.parts)
    return spec


def load_workflows(target: str) -> list[Any]:
    """Import ``MODULE[:ATTR]`` and return the workflows it names (see the module docstring)."""
    module_spec, _, attr = target.partition(":")
    if not module_spec:
        fail(f"{target!r}: expected MODULE or MODULE:ATTR", exit_code=ExitCode.USAGE)
    name = _module_name(module_spec)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            fail(
                f"no module named {name!r} (looked in {cwd} and on sys.path)",
                exit_code=ExitCode.NOT_FOUND,
            )
        raise  # the module itself imports something missing: show the user's traceback
    if not attr:
        found = _dedupe(v for v in vars(module).values() if is_workflow(v))
        if not found:
            fail(
                f"module {name!r} defines no @workflow functions; name them: {name}:ATTR",
                exit_code=ExitCode.NOT_FOUND,
            )
        return found
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            fail(f"module {name!r} has no attribute {attr!r}", exit_code=ExitCode.NOT_FOUND)
        value = getattr(value, part)
    candidates = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    bad = [c for c in candidates if not is_workflow(c)]
    if bad or not candidates:
        what = type(bad[0]).__name__ if bad else "an empty collection"
        fail(
            f"{name}:{attr} is not a @workflow or a list of them (found {what})",
            exit_code=ExitCode.USAGE,
        )
    return _dedupe(candidates)


def load_converter(target: str, spec: str | None) -> Any:
    """The ``DataConverter`` named by ``spec`` (``MODULE:ATTR``), or the ``riverrun_converter``
    attribute of ``target``'s module, or ``None`` (the default converter)."""
    from riverrun import DataConverter

    if spec is None:
        module = sys.modules.get(_module_name(target.partition(":")[0]))
        found = getattr(module, "riverrun_converter", None)
        where = f"{target.partition(':')[0]}.riverrun_converter"
    else:
        module_spec, _, attr = spec.partition(":")
        if not module_spec or not attr:
            fail(f"--converter {spec!r}: expected MODULE:ATTR", exit_code=ExitCode.USAGE)
        try:
            module = importlib.import_module(_module_name(module_spec))
        except ModuleNotFoundError:
            fail(f"--converter {spec!r}: no module named {module_spec!r}", exit_code=ExitCode.NOT_FOUND)
        found = module
        for part in attr.split("."):
            if not hasattr(found, part):
                fail(f"--converter {spec!r}: the module has no attribute {attr!r}", exit_code=ExitCode.NOT_FOUND)
            found = getattr(found, part)
        where = spec
    if found is None:
        return None
    if not isinstance(found, DataConverter):
        fail(
            f"{where} is a {type(found).__name__}, not a riverrun.DataConverter",
            exit_code=ExitCode.USAGE,
        )
    return found


#: ``riverrun worker``'s threshold for the collector's youngest generation (see
#: ``tune_collector``)
DEFAULT_GC_THRESHOLD = 50_000


def tune_collector(threshold: int) -> None:
    """Collect Python's youngest generation every ``threshold`` allocations, not every 700.

    A worker holds every workflow in flight in memory (a few hundred objects each: tasks,
    futures, cancel scopes, its history's values) and allocates fast. At Python's default of
    700, each in-flight object is examined by dozens of young collections before it is
    promoted, and the promotions trigger full collections that walk the whole heap: about a
    third of a worker's CPU with 500 workflows in flight again and again (``python
    bench/workflows.py --gc-rounds 8``). Most
    of what a worker allocates is freed by reference counting anyway (riverrun leaves no
    reference cycles behind a workflow that ends); the cost of a larger threshold is only that
    the cyclic garbage other code makes waits longer, a few megabytes at most. The older
    generations keep Python's thresholds.
    """
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


def _dedupe(items: Iterable[Any]) -> list[Any]:
    seen: set[int] = set()
    unique = []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            unique.append(item)
    return unique


@click.command()
@click.argument("target", metavar="MODULE[:ATTR]")
@connection_options(envvar=False)
@log_options
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    envvar="RIVERRUN_METRICS_PORT",
    default=None,
    metavar="PORT",
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (0: any free port; needs "
    "riverrun[otel]; env RIVERRUN_METRICS_PORT). Off by default.",
)
@click.option(
    "--metrics-host",
    envvar="RIVERRUN_METRICS_HOST",
    default="0.0.0.0",
    show_default=True,
    metavar="HOST",
    help="Address the metrics endpoint listens on (env RIVERRUN_METRICS_HOST).",
)
@click.option(
    "--converter",
    envvar="RIVERRUN_CONVERTER",
    default=None,
    metavar="MODULE:ATTR",
    help="The riverrun.DataConverter typed values go through (env RIVERRUN_CONVERTER; "
    "default: the module's riverrun_converter attribute, else the default converter).",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    envvar="RIVERRUN_QUEUES",
    metavar="QUEUE",
    help="A task queue to serve (repeat for several; env RIVERRUN_QUEUES, space-separated). "
    "Default: the queues of the workflows it registers.",
)
@click.option(
    "--gc-threshold",
    type=click.IntRange(0, None),
    envvar="RIVERRUN_GC_THRESHOLD",
    default=DEFAULT_GC_THRESHOLD,
    show_default=True,
    metavar="N",
    help="Allocations between two collections of Python's youngest garbage-collector "
    "generation in this process (Python's own default is 700); 0 leaves the collector as "
    "Python set it (env RIVERRUN_GC_THRESHOLD). See docs/deployment.md.",
)
@pass_settings
def worker(
    settings: Settings,
    target: str,
    log_level: str,
    log_format: str,
    metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
    converter: str | None = None,
    queues: tuple[str, ...] = (),
    gc_threshold: int = 0,
) -> None:
    """Host the workflows of MODULE until SIGTERM or Ctrl-C, then shut down cleanly.

    A worker serves task queues (--queue; default: the queues of its workflows) and hosts
    the workflows of the partitions of those queues it owns; several workers of a queue share
    its partitions, and take over a stopped or dead worker's. Log records go to stderr, as text or as
    JSON lines, with the workflow id, run id, execution, step and attempt they concern. With
    --metrics-port it serves its metrics for Prometheus (see docs/observability.md).
    """
    from riverrun import configure_logging

    json_logs = log_format.lower() == "json"
    configure_logging(level=log_level.upper(), format="json" if json_logs else "text")
    say = _status_logger() if json_logs else functools.partial(click.echo, err=True)
    try:
        workflows = load_workflows(target)
        data_converter = load_converter(target, converter)
    except CliError:
        raise
    except Exception as exc:
        traceback.print_exc()  # the user's own code failed: show them where
        raise CliError(
            f"importing {target.partition(':')[0]!r} failed: {type(exc).__name__}: {exc}",
            exit_code=ExitCode.FAILED,
        ) from exc
    names = ", ".join(sorted(workflow_name(w) for w in workflows))
    if gc_threshold:
        tune_collector(gc_threshold)

    async def go() -> None:
        # listen for signals before anything else, so that a SIGTERM or Ctrl-C that arrives
        # while connecting (or just after "hosting" is printed) still means a clean stop
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            options: dict[str, Any] = {"data_converter": data_converter}
            if endpoint is not None:
                options["meter_provider"] = endpoint.meter_provider
            if queues:
                options["queues"] = queues
            async with open_runtime(settings, workflows=workflows, worker=True, **options) as runtime:
                if endpoint is not None:
                    say(f"riverrun worker: metrics on {endpoint.url}")
                say(
                    f"riverrun worker: hosting {len(workflows)} workflow(s) [{names}] "
                    f"on {settings.where}, namespace {settings.namespace!r}. "
                    f"Ctrl-C to stop."
                )
                if runtime.worker is not None:
                    owned = runtime.worker.partitions()
                    say(
                        f"riverrun worker: worker {runtime.worker.services.worker_id} owns "
                        "partitions "
                        + "; ".join(f"{q}: {_ranges(ps) or 'none yet'}" for q, ps in owned.items())
                        + " (changes are logged as claimed/released partitions)"
                    )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_serve, runtime, tg.cancel_scope)
                    async for received in signals:
                        name = signal.Signals(received).name
                        say(f"riverrun worker: {name} received, shutting down...")
                        break
                    tg.cancel_scope.cancel()
        say("riverrun worker: stopped.")

    with _metrics_endpoint(metrics_host, metrics_port) as endpoint:
        run_command(go, servers=settings.servers)


@contextlib.contextmanager
def _metrics_endpoint(host: str, port: int | None) -> Iterator[MetricsEndpoint | None]:
    if port is None:
        yield None
        return
    with serve_metrics(host, port) as endpoint:
        yield endpoint


def _status_logger() -> Callable[[str], None]:
    """With JSON logs, the worker's status lines are log records too (stderr stays JSON)."""
    log = logging.getLogger("riverrun.cli")

    def say(message: str) -> None:
        log.info("%s", message)

    return say


def _ranges(partitions: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    out: list[str] = []
    for p in sorted(partitions):
        if out and out[-1].split("-")[-1] == str(p - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return ", ".join(out)


async def _serve(runtime: Runtime, scope: anyio.CancelScope) -> None:
    await runtime.serve_forever()
    scope.cancel()  # the runtime stopped on its own: stop waiting for a signal too
