"""``riverrun start WORKFLOW [ARGS] [--kwargs JSON] [--id ID] [--queue QUEUE] [--wait]``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import click

from ._exit import ExitCode, fail, run_command
from ._format import dumps_json, format_duration, run_duration, to_jsonable
from ._parsing import parse_call_arguments
from ._runtime import open_runtime
from ._settings import Settings, connection_options, json_option, pass_settings

if TYPE_CHECKING:
    from riverrun.persistence import OperatorNote, SnapshotStore

__all__ = ["start"]

#: seconds between two reads of the workflow's operator notes while waiting
_NOTES_POLL = 1.0


@click.command()
@click.argument("workflow")
@click.argument("args", required=False, metavar="[ARGS_JSON]")
@click.option("--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments, a JSON object.")
@click.option("--id", "workflow_id", metavar="ID", help="Workflow id (default: generated).")
@click.option(
    "--queue",
    metavar="QUEUE",
    help="Task queue to serve the chain on (default: 'default', or the queue of the "
    "workflow's definition when this process registers it).",
)
@click.option("--wait", is_flag=True, help="Wait for the chain's final result and print it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --wait: give up waiting after this long (the workflow keeps running).",
)
@json_option
@connection_options(envvar=False)
@pass_settings
def start(
    settings: Settings,
    workflow: str,
    args: str | None,
    kwargs_json: str | None,
    workflow_id: str | None,
    queue: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Start the workflow named WORKFLOW on the workers of the namespace.

    ARGS_JSON is a JSON list of positional arguments ('[0, 100]'), a JSON object of keyword
    arguments ('{"offset": 0}'), or one JSON value (one positional argument). '@FILE' reads
    the JSON from a file, '@-' from standard input.
    """
    positional, keywords = parse_call_arguments(args, kwargs_json)
    for option, flag in (("workflow_id", "--id"), ("queue", "--queue")):
        if option in keywords:
            fail(
                f"keyword argument {option!r} is a start option, not a workflow argument: "
                f"use {flag}",
                exit_code=ExitCode.USAGE,
            )
    if queue is not None:
        from riverrun.persistence import check_queue

        try:
            check_queue(queue)
        except ValueError as exc:
            fail(f"--queue: {exc}", exit_code=ExitCode.USAGE)
    if timeout is not None and not wait:
        fail("--timeout only makes sense with --wait", exit_code=ExitCode.USAGE)

    async def go() -> None:
        from riverrun._errors import CancellationError, WorkflowFailed

        async with open_runtime(settings) as runtime:
            client = runtime.client
            handle = await client.start(
                workflow, *positional, workflow_id=workflow_id, queue=queue, **keywords
            )
            report: dict[str, Any] = {
                "workflow_id": handle.workflow_id,
                "run_id": handle.first_run_id,
                "workflow_name": workflow,
            }
            if not wait:
                _report_started(settings, report)
                return
            if not settings.json:
                _report_started(settings, report)
            error: BaseException | None = None
            unregistered = _UnregisteredWatch(runtime.backend.snapshots, handle.workflow_id)
            caught: Exception | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(unregistered.watch, handle.first_run_id, workflow)
                try:
                    report["result"] = to_jsonable(await handle.result(timeout=timeout))
                except Exception as exc:  # sorted out below, outside the task group
                    caught = exc
                tg.cancel_scope.cancel()
            if isinstance(caught, WorkflowFailed | CancellationError):
                error = caught
            elif isinstance(caught, TimeoutError):
                fail(
                    await unregistered.explain(handle.first_run_id, workflow)
                    or f"gave up waiting after {format_duration(timeout)}; the workflow is still "
                    f"running: riverrun runs show {handle.workflow_id}",
                    exit_code=ExitCode.FAILED,
                )
            elif caught is not None:
                raise caught
            last = await handle.describe()
        report.update(
            status=str(last.status),
            current_run_id=last.run_id,
            executions=last.execution,
            error=last.error or (str(error) if error else None),
            duration_seconds=run_duration(last).total_seconds(),
        )
        if settings.json:
            click.echo(dumps_json(report))
        elif error is None:
            click.echo(f"Completed after {last.execution} run(s). Result:")
            click.echo(dumps_json(report["result"]))
        if error is not None:
            raise error

    run_command(go, servers=settings.servers)


def _report_started(settings: Settings, report: dict[str, Any]) -> None:
    if settings.json:
        click.echo(dumps_json(report))
        return
    click.echo(
        f"Started {report['workflow_name']}: workflow id {report['workflow_id']}, "
        f"run id {report['run_id']}"
    )


class _UnregisteredWatch:
    """Watches a workflow's operator notes while ``start --wait`` waits: a worker that saw the
    start but does not register the workflow type leaves a note (the run stays running, since
    another worker may register it), and the wait says so instead of waiting silently."""

    def __init__(self, snapshots: SnapshotStore, workflow_id: str) -> None:
        self._snapshots = snapshots
        self._workflow_id = workflow_id
        self.note: OperatorNote | None = None

    async def watch(self, run_id: str, workflow: str) -> None:
        while self.note is None:
            await anyio.sleep(_NOTES_POLL)
            await self._read(run_id)
        click.echo(f"warning: {self.note.message}. Still waiting...", err=True)

    async def explain(self, run_id: str, workflow: str) -> str | None:
        """Why the wait ended without a result, if a worker said so."""
        if self.note is None:
            await self._read(run_id)
        if self.note is None:
            return None
        return (
            f"no worker registers workflow type {workflow!r}; the run stays running until a "
            f"worker that registers it picks it up (riverrun runs show {self._workflow_id}; "
            f"riverrun runs cancel {self._workflow_id} if the name is a typo). "
            f"{self.note.message}"
        )

    async def _read(self, run_id: str) -> None:
        from riverrun.persistence import read_notes

        with contextlib.suppress(Exception):  # notes are advisory: never fail the wait
            for note in await read_notes(self._snapshots, self._workflow_id):
                if note.kind == "unregistered_type" and note.run_id == run_id:
                    self.note = note
