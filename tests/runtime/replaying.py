"""Replaying a recorded history into a bare ``WorkflowMachine`` (no runtime, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from riverrun.persistence import RunKey, StoredEvent
from riverrun.runtime._commands import Command, ScheduleStep, StartChild, StartTimer, WaitSignal
from riverrun.runtime._definitions import WorkflowRegistry
from riverrun.runtime._events import Event
from riverrun.runtime._machine import WorkflowMachine


class RecordingMachine(WorkflowMachine):
    """A machine that notes every command workflow code issues: its observable decisions."""

    issued: list[tuple[int, str]]

    def issue(self, command: Command) -> Any:
        future = super().issue(command)
        if not hasattr(self, "issued"):
            self.issued = []
        self.issued.append((command.position, describe(command)))
        return future


def describe(command: Command) -> str:
    if isinstance(command, ScheduleStep):
        return f"step {command.definition.name}{command.args!r}"
    if isinstance(command, StartTimer):
        return f"timer {command.seconds}"
    if isinstance(command, WaitSignal):
        return f"signal {command.name}"
    if isinstance(command, StartChild):
        return f"child {command.workflow_name}{command.args!r}"
    return type(command).__name__


def new_machine(workflows: Iterable[Any], workflow_id: str = "wf", run_id: str = "run") -> RecordingMachine:
    registry = WorkflowRegistry.of(workflows)
    machine = RecordingMachine(
        workflow_id=workflow_id,
        run_id=run_id,
        lookup=registry.get,
        check_serializable=lambda value, what: None,
    )
    machine.issued = []
    return machine


def stored(events: Sequence[Event], workflow_id: str = "wf") -> list[StoredEvent]:
    return [
        StoredEvent(
            key=RunKey(workflow_id=workflow_id, run_id=e.run_id),
            sequence=e.sequence,
            type=e.type.value,
            timestamp=e.timestamp,
            data=e.data,
        )
        for e in events
    ]


def replay(
    workflows: Iterable[Any], events: Sequence[StoredEvent], workflow_id: str = "wf"
) -> RecordingMachine:
    """A fresh machine fed ``events``: raises NonDeterminismError if the code disagrees."""
    run_id = events[0].key.run_id if events else "run"
    machine = new_machine(workflows, workflow_id, run_id)
    machine.replaying = True
    for event in events:
        machine.apply(event)
    return machine
