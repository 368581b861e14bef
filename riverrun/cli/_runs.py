"""``riverrun runs ...``: list, show, describe, chain, logs, result, cancel, terminate, signal,
prune.

Every command that takes a run id also takes a workflow id (meaning the workflow's current
run), because users copy whichever id they have at hand. Unknown ids exit with code 3.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from ._exit import CliError, ExitCode, fail, run_command
from ._filters import EventFilter
from ._format import (
    describe_to_json,
    dumps_json,
    format_duration,
    format_time,
    print_chain,
    print_description,
    print_events,
    print_run,
    print_runs,
    run_to_json,
    to_jsonable,
)
from ._parsing import parse_datetime, parse_json
from ._runtime import open_runtime
from ._settings import Settings, connection_options, json_option, open_client, pass_settings

if TYPE_CHECKING:
    from riverrun import Client, WorkflowRun
    from riverrun.runtime._waiting import WaitingOn

__all__ = ["runs"]

#: RunStatus values (fixed by the design); kept here so `--help` needs no runtime import
STATUSES = ("running", "suspended", "completed", "failed", "cancelled", "continued_as_new")


@click.group()
def runs() -> None:
    """Inspect and manage workflow runs."""


async def resolve_run(client: Client, ident: str, settings: Settings) -> WorkflowRun:
    """The run with id ``ident``, else the current run of the workflow with id ``ident``."""
    from riverrun._errors import WorkflowNotFound

    try:
        return await client.get_run(ident)
    except WorkflowNotFound:
        pass
    try:
        return await client.get_handle(ident).describe()
    except WorkflowNotFound:
        fail(
            f"no run or workflow with id {ident!r} in namespace {settings.namespace!r}",
            exit_code=ExitCode.NOT_FOUND,
        )


#: runs per page of ``runs list`` unless ``--limit`` says otherwise
DEFAULT_LIMIT = 50


@runs.command("list")
@click.option(
    "--status", type=click.Choice(STATUSES, case_sensitive=False), help="Only runs in this status."
)
@click.option(
    "--type",
    "--workflow",
    "workflow_name",
    metavar="NAME",
    help="Only runs of this workflow type (its registered name).",
)
@click.option(
    "--workflow-id", metavar="ID", help="Only runs of this workflow id (its whole chain)."
)
@click.option(
    "--since",
    metavar="DATE",
    help="Only runs created at or after DATE: ISO 8601 or an age (30m, 12h, 7d).",
)
@click.option(
    "--until", metavar="DATE", help="Only runs created before DATE: ISO 8601 or an age."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    metavar="N",
    help="At most N runs, newest first.",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Skip the N newest matching runs (the next page: the previous --offset plus --limit).",
)
@json_option
@connection_options(envvar=False)
@pass_settings
def list_(
    settings: Settings,
    status: str | None,
    workflow_name: str | None,
    workflow_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
) -> None:
    """List runs, newest first, a page at a time, with red flags.

    FLAGS marks the signs of a continue-as-new chain gone wrong: continuations>=20,
    history-growing, same-args (docs/cli.md says how each is computed).
    """
    since_at = parse_datetime(since) if since else None
    until_at = parse_datetime(until) if until else None

    async def go() -> None:
        from ._flags import red_flags

        async with open_client(settings) as client:
            every = await client.list_runs(workflow_id=workflow_id)
            matching = [
                run
                for run in every
                if (status is None or run.status == status.lower())
                and (workflow_name is None or run.workflow_name == workflow_name)
                and (since_at is None or run.created_at >= since_at)
                and (until_at is None or run.created_at < until_at)
            ]
            ordered = sorted(matching, key=lambda run: run.created_at, reverse=True)
            page = ordered[offset : offset + limit]
            flags = await red_flags(client, page, {run.run_id: run for run in every})
        more = max(len(ordered) - offset - len(page), 0)
        if settings.json:
            click.echo(dumps_json([{**run_to_json(run), "flags": flags[run.run_id]} for run in page]))
            if more:
                click.echo(_more_line(more, offset + len(page)), err=True)
        else:
            print_runs(
                settings.console(),
                page,
                flags=flags,
                total=len(ordered),
                offset=offset,
            )
            if more:
                click.echo(_more_line(more, offset + len(page)))

    run_command(go, servers=settings.servers)


def _more_line(more: int, next_offset: int) -> str:
    return f"{more} more run(s): next page with --offset {next_offset}"


@runs.command()
@click.argument("run_id", metavar="RUN_OR_WORKFLOW_ID")
@json_option
@connection_options(envvar=False)
@pass_settings
def show(settings: Settings, run_id: str) -> None:
    """Show one run: status, timing, chain links, result or error, what it waits on, why it
    is stuck if it is, and the workflow's operator notes (a park, a restart loop, messages
    quarantined, a workflow type no worker registers)."""

    async def go() -> None:
        from riverrun import RunStatus
        from riverrun.persistence import read_notes
        from riverrun.runtime._membership import describe_hosting
        from riverrun.runtime._stuck import stuck

        async with open_runtime(settings) as runtime:
            client = runtime.client
            run = await resolve_run(client, run_id, settings)
            notes = await read_notes(runtime.backend.snapshots, run.workflow_id)
            ended = RunStatus(run.status).is_terminal
            waits = [] if ended else await client.waiting_on(run.run_id)
            last = await client.last_event(run.run_id, workflow_id=run.workflow_id)
            why = None if ended else stuck(notes, run.run_id, last.timestamp if last else None)
            hosting = None
            if not ended:
                assert runtime._services is not None
                hosting = await describe_hosting(
                    runtime._services, run.workflow_id, run.queue, run.workflow_name
                )
        now = datetime.now(UTC)
        if settings.json:
            shown = run_to_json(run)
            shown["waiting_on"] = [_waiting_json(item, now) for item in waits]
            shown["stuck"] = to_jsonable(why)
            if hosting is not None:
                shown["hosting"] = hosting
            if notes:
                shown["notes"] = [to_jsonable(note) for note in notes]
            click.echo(dumps_json(shown))
        else:
            console = settings.console()
            print_run(console, run)
            if hosting is not None:
                console.print(f"[bold]Hosting:[/bold] {escape(hosting)}", soft_wrap=True)
            if waits:
                console.print("[bold]Waiting on:[/bold]")
                for item in waits:
                    console.print(
                        f"  {escape(item.describe(now, time_format=format_time))}",
                        soft_wrap=True,
                    )
            if why is not None:
                console.print(
                    f"[bold red]Stuck:[/bold red] {escape(why.describe())} "
                    f"(noted {format_time(why.at)})",
                    soft_wrap=True,
                )
            elif ended:
                console.print(f"[bold]Stuck:[/bold] no: the run has ended ({run.status})")
            else:
                console.print(
                    "[bold]Stuck:[/bold] no: no worker noted a park, a restart loop or an "
                    "unregistered type since its last event"
                )
            if notes:
                console.print("[bold]Notes:[/bold]")
                for note in notes:
                    console.print(
                        f"  {format_time(note.at)} [yellow]{escape(note.kind)}[/yellow]: "
                        f"{escape(note.message)}",
                        soft_wrap=True,
                    )

    run_command(go, servers=settings.servers)


def _waiting_json(item: WaitingOn, now: datetime | None) -> dict[str, Any]:
    """One ``waiting_on`` entry: its non-null fields plus ``summary`` (docs/cli.md)."""
    data = {k: v for k, v in to_jsonable(item).items() if v is not None}
    data["summary"] = item.describe(now)
    return data


@runs.command()
@click.argument("ident", metavar="RUN_OR_WORKFLOW_ID")
@json_option
@connection_options(envvar=False)
@pass_settings
def describe(settings: Settings, ident: str) -> None:
    """Describe one run: its record, its place in its chain, its history, its red flags.

    --json prints one object whose keys docs/cli.md documents (field, type, meaning).
    """

    async def go() -> None:
        from ._flags import red_flags

        async with open_client(settings) as client:
            run = await resolve_run(client, ident, settings)
            found = await client.get_workflow_chain(run.run_id) or [run]
            last = await client.last_event(run.run_id, workflow_id=run.workflow_id)
            flags = await red_flags(client, [run], {r.run_id: r for r in found})
        described = describe_to_json(run, found, last, flags[run.run_id])
        if settings.json:
            click.echo(dumps_json(described))
        else:
            print_description(settings.console(), described, run)

    run_command(go, servers=settings.servers)


@runs.command()
@click.argument("run_id", metavar="RUN_OR_WORKFLOW_ID")
@json_option
@connection_options(envvar=False)
@pass_settings
def chain(settings: Settings, run_id: str) -> None:
    """Show the continue-as-new chain that a run belongs to, first run to current."""

    async def go() -> None:
        async with open_client(settings) as client:
            found = await client.get_workflow_chain(run_id)
            if not found:
                run = await resolve_run(client, run_id, settings)
                found = await client.get_workflow_chain(run.run_id) or [run]
        if settings.json:
            click.echo(dumps_json([run_to_json(run) for run in found]))
        else:
            print_chain(settings.console(), found)

    run_command(go, servers=settings.servers)


@runs.command()
@click.argument("run_id", metavar="RUN_OR_WORKFLOW_ID")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="TYPE",
    help="Only events whose type matches, e.g. continued, step.completed, step_completed, "
    "step, 'workflow.*'. Repeat for several.",
)
@json_option
@connection_options(envvar=False)
@pass_settings
def logs(settings: Settings, run_id: str, filters: tuple[str, ...]) -> None:
    """Show a run's event history (after continue-as-new, only the link event remains)."""
    from riverrun import EventType

    event_filter = EventFilter(filters)
    unknown = event_filter.unmatched([t.value for t in EventType])
    if unknown:
        fail(
            f"--filter {unknown[0]!r} matches no event type; types are: "
            + ", ".join(t.value for t in EventType),
            exit_code=ExitCode.USAGE,
        )

    async def go() -> None:
        async with open_client(settings) as client:
            run = await resolve_run(client, run_id, settings)
            events = await client.events(run.run_id)
        selected = [e for e in events if event_filter.matches(str(e.type))]
        if settings.json:
            click.echo(dumps_json(selected))
        else:
            print_events(settings.console(), selected)

    run_command(go, servers=settings.servers)


@runs.command()
@click.argument("ident", metavar="WORKFLOW_OR_RUN_ID")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up waiting after this long (exit 1; the workflow keeps running).",
)
@json_option
@connection_options(envvar=False)
@pass_settings
def result(settings: Settings, ident: str, timeout: float | None) -> None:
    """Wait for a workflow's final result (following continue-as-new) and print it.

    Exits 1 if the workflow failed or was cancelled.
    """

    async def go() -> None:
        async with open_client(settings) as client:
            run = await resolve_run(client, ident, settings)
            handle = client.get_handle(run.workflow_id)
            try:
                value = await handle.result(timeout=timeout)
            except TimeoutError:
                fail(
                    f"gave up waiting after {format_duration(timeout)}; {run.workflow_id} is "
                    f"still running",
                    exit_code=ExitCode.FAILED,
                )
        if settings.json:
            click.echo(dumps_json({"workflow_id": run.workflow_id, "result": value}))
        else:
            click.echo(value if isinstance(value, str) else dumps_json(value))

    run_command(go, servers=settings.servers)


@runs.command()
@click.argument("ident", metavar="RUN_OR_WORKFLOW_ID")
@json_option
@connection_options(envvar=False)
@pass_settings
def cancel(settings: Settings, ident: str) -> None:
    """Cancel a workflow (an old run id reaches the chain's current run)."""

    async def go() -> None:
        async with open_client(settings) as client:
            run = await resolve_run(client, ident, settings)
            cancelled = await client.cancel(ident)
            after = await resolve_run(client, run.workflow_id, settings)
        if settings.json:
            click.echo(dumps_json({"id": ident, "cancelled": cancelled, "run": run_to_json(after)}))
        elif cancelled:
            click.echo(f"Cancellation requested for {after.workflow_id} (run {after.run_id}).")
        if not cancelled:
            raise CliError(
                f"{ident!r} was not cancelled: its chain already ended ({after.status})",
                exit_code=ExitCode.FAILED,
            )

    run_command(go, servers=settings.servers)


@runs.command()
@click.argument("ident", metavar="WORKFLOW_OR_RUN_ID")
@click.option("--reason", metavar="TEXT", help="Why, recorded in the run's error and its log.")
@json_option
@connection_options(envvar=False)
@pass_settings
def terminate(settings: Settings, ident: str, reason: str | None) -> None:
    """End a workflow's current run now, as cancelled; no worker is needed.

    For runs that no worker can host (a misspelled workflow name) or that must stop at once:
    the workflow code gets no CancellationError to handle. A worker hosting the run lets it
    go. Exits 1, writing nothing, if the workflow's chain has already ended.
    """

    async def go() -> None:
        async with open_client(settings) as client:
            await resolve_run(client, ident, settings)
            final = await client.terminate(ident, reason=reason)
        if settings.json:
            click.echo(dumps_json({"id": ident, "terminated": True, "run": run_to_json(final)}))
        else:
            click.echo(f"Terminated {final.workflow_id} (run {final.run_id}): {final.error}.")

    run_command(go, servers=settings.servers)


@runs.command()
@click.argument("ident", metavar="WORKFLOW_OR_RUN_ID")
@click.argument("name")
@click.argument("payload", required=False, metavar="[PAYLOAD_JSON]")
@json_option
@connection_options(envvar=False)
@pass_settings
def signal(settings: Settings, ident: str, name: str, payload: str | None) -> None:
    """Send the signal NAME, with an optional JSON payload, to a workflow.

    Exits 1, sending nothing, if the workflow's chain has ended (the message names how).
    """
    value: Any = None if payload is None else parse_json(payload, what="PAYLOAD")

    async def go() -> None:
        async with open_client(settings) as client:
            run = await resolve_run(client, ident, settings)
            await client.signal(ident, name, value)
        if settings.json:
            click.echo(
                dumps_json({"workflow_id": run.workflow_id, "signal": name, "payload": value})
            )
        else:
            click.echo(f"Signal {name!r} sent to {run.workflow_id}.")

    run_command(go, servers=settings.servers)


@runs.command()
@click.argument("workflow_id", metavar="WORKFLOW_ID")
@click.option(
    "--keep-last",
    type=click.IntRange(min=1),
    metavar="N",
    help="Keep the N most recent runs (the current run counts as one).",
)
@click.option(
    "--completed-before",
    metavar="DATE",
    help="Prune only runs completed before DATE: ISO 8601 or an age (30m, 12h, 7d).",
)
@json_option
@connection_options(envvar=False)
@pass_settings
def prune(
    settings: Settings, workflow_id: str, keep_last: int | None, completed_before: str | None
) -> None:
    """Delete the records of old runs of a chain. The current run is never pruned."""
    if keep_last is None and completed_before is None:
        fail(
            "say what to prune: --keep-last N, --completed-before DATE, or both",
            exit_code=ExitCode.USAGE,
        )
    before: datetime | None = parse_datetime(completed_before) if completed_before else None

    async def go() -> None:
        async with open_client(settings) as client:
            run = await resolve_run(client, workflow_id, settings)
            pruned = await client.prune_runs(
                run.workflow_id, keep_last=keep_last, completed_before=before
            )
        if settings.json:
            click.echo(dumps_json({"workflow_id": run.workflow_id, "pruned": to_jsonable(pruned)}))
        else:
            click.echo(f"Pruned {len(pruned)} run(s) of {run.workflow_id}.")
            for pruned_id in pruned:
                click.echo(f"  {pruned_id}")

    run_command(go, servers=settings.servers)
