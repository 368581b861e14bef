"""``riverrun worker MODULE[:ATTR]``: host a module's workflows until SIGTERM or Ctrl-C.

``MODULE`` is imported with the current directory on ``sys.path`` (as ``python -m`` would);
a file path (``app/flows.py``) is accepted too. ``ATTR`` names a workflow or a list of them
(dotted attributes work: ``registry.WORKFLOWS``); without it, every ``@workflow`` function
found in the module's namespace is hosted.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from ._exit import CliError, ExitCode, fail, run_command
from ._runtime import open_runtime
from ._settings import Settings, connection_options, pass_settings

if TYPE_CHECKING:
    from riverrun import Runtime

__all__ = ["is_workflow", "load_workflows", "worker"]


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
@pass_settings
def worker(settings: Settings, target: str) -> None:
    """Host the workflows of MODULE until SIGTERM or Ctrl-C, then shut down cleanly.

    A worker resumes every running workflow of the namespace from its history. Run one worker
    per namespace for now (see docs/guarantees.md).
    """
    try:
        workflows = load_workflows(target)
    except CliError:
        raise
    except Exception as exc:
        traceback.print_exc()  # the user's own code failed: show them where
        raise CliError(
            f"importing {target.partition(':')[0]!r} failed: {type(exc).__name__}: {exc}",
            exit_code=ExitCode.FAILED,
        ) from exc
    names = ", ".join(sorted(workflow_name(w) for w in workflows))

    async def go() -> None:
        # listen for signals before anything else, so that a SIGTERM or Ctrl-C that arrives
        # while connecting (or just after "hosting" is printed) still means a clean stop
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with open_runtime(settings, workflows=workflows, worker=True) as runtime:
                click.echo(
                    f"riverrun worker: hosting {len(workflows)} workflow(s) [{names}] "
                    f"on {settings.where}, namespace {settings.namespace!r}. "
                    f"Ctrl-C to stop.",
                    err=True,
                )
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_serve, runtime, tg.cancel_scope)
                    async for received in signals:
                        name = signal.Signals(received).name
                        click.echo(f"riverrun worker: {name} received, shutting down...", err=True)
                        break
                    tg.cancel_scope.cancel()
        click.echo("riverrun worker: stopped.", err=True)

    run_command(go, servers=settings.servers)


async def _serve(runtime: Runtime, scope: anyio.CancelScope) -> None:
    await runtime.serve_forever()
    scope.cancel()  # the runtime stopped on its own: stop waiting for a signal too
