"""The version a run executes, for runs started without one (by name, from the CLI).

A start that knows the workflow (the function, or a name registered in the starting process)
records its version in ``workflow.started`` and in the run record. A start by a name the
starting process does not register records ``None``: the worker that first hosts the run
resolves it to the version it registers (the highest) and writes that into the run record.
From then on the run is pinned: any worker replaying it looks the workflow up at that version
(a worker that lacks it says so, as for any unregistered workflow), never at whatever version
happens to be the highest where it is replayed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._definitions import WorkflowDefinition
    from ._machine import WorkflowMachine
    from ._services import Services

__all__ = ["pin_version", "record_version"]


async def pin_version(services: Services, machine: WorkflowMachine) -> str | None:
    """Before replay: the version recorded for the run, if any; the machine's lookup uses it
    where ``workflow.started`` names none."""
    record = await services.backend.runs.get_run(machine.run_id)
    pinned = record.value.version if record is not None else None
    if pinned is not None:
        lookup = machine.lookup

        def pinned_lookup(name: str, version: str | None) -> WorkflowDefinition:
            return lookup(name, pinned if version is None else version)

        machine.lookup = pinned_lookup
    return pinned


async def record_version(
    services: Services, machine: WorkflowMachine, pinned: str | None
) -> None:
    """After replay, on first hosting: write the version this worker resolved."""
    if pinned is None and machine.definition is not None:
        await services.update_run(machine.run_id, version=machine.definition.version)
