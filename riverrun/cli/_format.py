"""Output: durations, JSON, and the human renderings of runs, chains and events.

Two audiences. ``--json`` prints one JSON document that ``json.loads`` reads back: runs and
events as objects with their attribute names, datetimes as ISO 8601, enums as their values.
Without it, rich renders for a person; the chain follows pyworkflow's ``runs chain`` layout
(START / #n / CURRENT blocks joined by "↓ continued as new").
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import attrs
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = [
    "EventLike",
    "RunLike",
    "describe_to_json",
    "dumps_json",
    "format_duration",
    "format_time",
    "print_chain",
    "print_description",
    "print_events",
    "print_run",
    "print_runs",
    "run_duration",
    "run_to_json",
    "to_jsonable",
]

#: longest rendering of an event's data in the human output (``--json`` is never cut)
MAX_DATA_CHARS = 240

_STATUS_STYLE = {
    "running": "blue",
    "suspended": "magenta",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "continued_as_new": "cyan",
}


class RunLike(Protocol):
    """What the renderers read from a :class:`riverrun.WorkflowRun`."""

    @property
    def run_id(self) -> str: ...
    @property
    def workflow_id(self) -> str: ...
    @property
    def workflow_name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def execution(self) -> int: ...
    @property
    def continued_from_run_id(self) -> str | None: ...
    @property
    def continued_to_run_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def completed_at(self) -> datetime | None: ...
    @property
    def result(self) -> Any: ...
    @property
    def error(self) -> str | None: ...


class EventLike(Protocol):
    """What the renderers read from a :class:`riverrun.Event`."""

    @property
    def run_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


# -- values -------------------------------------------------------------------------------


def format_duration(seconds: float | timedelta | None) -> str:
    """``45ms``, ``2.3s``, ``4m 05s``, ``2h 03m``, ``3d 04h``; ``-`` for unknown."""
    if seconds is None:
        return "-"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    seconds = max(0.0, seconds)
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f}ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes}m {secs:02d}s"
    if whole < 86400:
        hours, rest = divmod(whole, 3600)
        return f"{hours}h {rest // 60:02d}m"
    days, rest = divmod(whole, 86400)
    return f"{days}d {rest // 3600:02d}h"


def run_duration(run: RunLike, *, now: datetime | None = None) -> timedelta:
    """How long the run took; for a run still going, how long it has been going."""
    end = run.completed_at or now or datetime.now(UTC)
    return end - run.created_at


def format_time(moment: datetime | None, *, precise: bool = False) -> str:
    """A local-time rendering for people: ``2025-01-15 10:30:00`` (``.123`` if precise)."""
    if moment is None:
        return "-"
    local = moment.astimezone() if moment.tzinfo else moment
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{local.microsecond // 1000:03d}" if precise else text


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: attrs classes → objects, datetimes → ISO 8601,
    enums → their values, bytes → base64; anything else unknown → its ``repr``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if attrs.has(type(value)):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return repr(value)


def run_to_json(run: RunLike, *, now: datetime | None = None) -> dict[str, Any]:
    """A run as a JSON object: every attribute, plus ``duration_seconds``."""
    data = to_jsonable(run)
    if not isinstance(data, dict):  # not an attrs class: read the protocol's attributes
        data = {name: to_jsonable(getattr(run, name)) for name in _RUN_FIELDS}
    data["duration_seconds"] = run_duration(run, now=now).total_seconds()
    return data


_RUN_FIELDS = (
    "run_id",
    "workflow_id",
    "workflow_name",
    "status",
    "execution",
    "continued_from_run_id",
    "continued_to_run_id",
    "created_at",
    "completed_at",
    "result",
    "error",
)


def describe_to_json(
    run: RunLike,
    chain: Sequence[RunLike],
    last_event: EventLike | None,
    flags: Sequence[str],
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``runs describe --json``: the run (as ``run_to_json``), its place in its chain, its
    history's length and last event, and its red flags. docs/cli.md documents every key."""
    current = chain[-1] if chain else run
    first = chain[0] if chain else run
    data = run_to_json(run, now=now)
    data["chain"] = {
        "position": run.execution,
        "length": current.execution,
        "is_current": run.run_id == current.run_id,
        "first_run_id": first.run_id,
        "current_run_id": current.run_id,
        "status": to_jsonable(current.status),
        "pruned": max(first.execution - 1, 0),
    }
    data["history"] = {
        "length": last_event.sequence if last_event is not None else 0,
        "last_event_type": (
            to_jsonable(getattr(last_event.type, "value", last_event.type))
            if last_event is not None
            else None
        ),
        "last_event_at": to_jsonable(last_event.timestamp) if last_event is not None else None,
    }
    data["flags"] = list(flags)
    return data


def print_description(console: Console, described: Mapping[str, Any], run: RunLike) -> None:
    """``runs describe`` for people: ``print_run``, then chain, history and flags."""
    print_run(console, run)
    chain, history = described["chain"], described["history"]
    where = "current" if chain["is_current"] else f"current: {chain['current_run_id']}"
    pruned = f", {chain['pruned']} pruned" if chain["pruned"] else ""
    place = f"run {chain['position']} of {chain['length']} ({where}{pruned})"
    rows = [
        ("Chain", f"{place}, chain {chain['status']}"),
        ("History", f"{history['length']} event(s), last {history['last_event_type'] or '-'}"),
        ("Flags", ", ".join(described["flags"]) or "-"),
    ]
    for label, value in rows:
        console.print(f"[bold]{label + ':':<15}[/bold] {escape(value)}", soft_wrap=True)


def dumps_json(value: Any) -> str:
    """The ``--json`` document for ``value`` (indented, stable key order as given)."""
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def _compact_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(", ", ": "))


def _status(status: str) -> str:
    text = str(getattr(status, "value", status))
    style = _STATUS_STYLE.get(text)
    return f"[{style}]{escape(text)}[/{style}]" if style else escape(text)


# -- renderers ----------------------------------------------------------------------------


def print_runs(
    console: Console,
    runs: Sequence[RunLike],
    *,
    now: datetime | None = None,
    flags: Mapping[str, Sequence[str]] | None = None,
    total: int | None = None,
    offset: int = 0,
) -> None:
    """A table of runs, one row each; ``flags`` (by run id) adds a FLAGS column, ``total``
    (runs matching, of which ``runs`` is the page from ``offset``) a "showing" footer."""
    if not runs:
        console.print("No runs found." if not total else f"No runs past --offset {offset}.")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    columns = ["RUN ID", "WORKFLOW ID", "WORKFLOW", "EXEC", "STATUS", "STARTED", "DURATION"]
    if flags is not None:
        columns.append("FLAGS")
    for column in columns:
        table.add_column(column, no_wrap=True, justify="right" if column == "EXEC" else "left")
    for run in runs:
        row = [
            escape(run.run_id),
            escape(run.workflow_id),
            escape(run.workflow_name),
            str(run.execution),
            _status(run.status),
            format_time(run.created_at),
            format_duration(run_duration(run, now=now)),
        ]
        if flags is not None:
            marks = flags.get(run.run_id) or ()
            row.append(f"[red]{escape(','.join(marks))}[/red]" if marks else "")
        table.add_row(*row)
    console.print(table)
    if total is None or (offset == 0 and total == len(runs)):
        console.print(f"{len(runs)} run(s)")
    else:
        console.print(f"runs {offset + 1}-{offset + len(runs)} of {total}")


def print_run(console: Console, run: RunLike, *, now: datetime | None = None) -> None:
    """Every attribute of one run, one per line."""
    rows: list[tuple[str, str]] = [
        ("Run ID", escape(run.run_id)),
        ("Workflow ID", escape(run.workflow_id)),
        ("Workflow", escape(run.workflow_name)),
        ("Version", escape(getattr(run, "version", None) or "-")),
        ("Execution", str(run.execution)),
        ("Status", _status(run.status)),
        ("Started", format_time(run.created_at)),
        ("Completed", format_time(run.completed_at)),
        ("Duration", format_duration(run_duration(run, now=now))),
        ("Continued from", escape(run.continued_from_run_id or "-")),
        ("Continued to", escape(run.continued_to_run_id or "-")),
    ]
    if run.result is not None:
        rows.append(("Result", escape(_compact_json(run.result))))
    if run.error:
        rows.append(("Error", f"[red]{escape(run.error)}[/red]"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        console.print(f"[bold]{label + ':':<{width + 1}}[/bold] {value}", soft_wrap=True)


def chain_label(run: RunLike, position: int, length: int) -> str:
    """``START`` for the first run, ``CURRENT`` for the last, ``#n`` (execution) between.

    The first run listed is labelled ``#n`` instead of ``START`` when earlier runs were pruned.
    """
    if position == length - 1:
        return "START (CURRENT)" if length == 1 and run.execution <= 1 else "CURRENT"
    if position == 0 and run.execution <= 1:
        return "START"
    return f"#{run.execution}"


def print_chain(console: Console, runs: Sequence[RunLike], *, now: datetime | None = None) -> None:
    """A continue-as-new chain, first run to last, in pyworkflow's ``runs chain`` layout."""
    console.print("[bold]Continue-As-New Chain[/bold]")
    console.print("─" * 56)
    if runs:
        console.print(f"Workflow ID: {escape(runs[0].workflow_id)}")
    console.print(f"Chain length: {len(runs)} run(s)")
    if runs and runs[0].execution > 1:
        console.print(f"(runs 1-{runs[0].execution - 1} were pruned)")
    for position, run in enumerate(runs):
        console.print()
        console.print(f"[bold]{chain_label(run, position, len(runs))}[/bold]")
        console.print(f"  Run ID:   {escape(run.run_id)}")
        console.print(f"  Workflow: {escape(run.workflow_name)}")
        console.print(f"  Status:   {_status(run.status)}")
        console.print(f"  Duration: {format_duration(run_duration(run, now=now))}")
        if run.error:
            console.print(f"  Error:    [red]{escape(run.error)}[/red]", soft_wrap=True)
        if position < len(runs) - 1:
            console.print()
            console.print("  ↓ continued as new")


def print_events(console: Console, events: Sequence[EventLike]) -> None:
    """One line per event: sequence, time, type, data."""
    if not events:
        console.print("No events.")
        return
    width = max(len(str(e.type)) for e in events)
    for event in events:
        data = _compact_json(event.data) if event.data else ""
        if len(data) > MAX_DATA_CHARS:
            data = data[: MAX_DATA_CHARS - 1] + "…"
        kind = str(getattr(event.type, "value", event.type))
        console.print(
            f"{event.sequence:>5}  {format_time(event.timestamp, precise=True)}  "
            f"[bold]{escape(kind):<{width}}[/bold]  {escape(data)}",
            soft_wrap=True,
            highlight=False,
        )
