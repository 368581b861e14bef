"""Commands: what workflow code asks the runtime to do when it awaits a riverrun operation.

Workflow coroutines are driven by hand (``coro.send``): awaiting a step, a sleep, a signal or
a child yields one of these objects to the state machine, which resolves it from history or
hands it to the actor to carry out.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from typing import Any

import attrs

from ._definitions import StepDefinition

__all__ = [
    "Command",
    "ParentClosePolicy",
    "ScheduleStep",
    "StartChild",
    "StartTimer",
    "WaitChild",
    "WaitSignal",
    "command_awaitable",
]


class ParentClosePolicy(enum.StrEnum):
    """What happens to a running child when its parent run closes (or continues as new)."""

    CANCEL = "cancel"
    ABANDON = "abandon"
    TERMINATE = "terminate"


@attrs.define(eq=False)
class Command:
    #: 1-based position of the command within its run, set by the state machine
    position: int = attrs.field(default=0, kw_only=True)


@attrs.define(eq=False)
class ScheduleStep(Command):
    definition: StepDefinition
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    attempt: int = 1


@attrs.define(eq=False)
class StartTimer(Command):
    seconds: float
    timer_id: str | None = None


@attrs.define(eq=False)
class WaitSignal(Command):
    name: str
    timeout: float | None = None
    timer_id: str | None = None


@attrs.define(eq=False)
class StartChild(Command):
    workflow_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    workflow_id: str
    parent_close_policy: ParentClosePolicy


@attrs.define(eq=False)
class WaitChild(Command):
    child_workflow_id: str


class _CommandAwaitable:
    __slots__ = ("command",)

    def __init__(self, command: Command) -> None:
        self.command = command

    def __await__(self) -> Generator[Command, Any, Any]:
        result = yield self.command
        return result


def command_awaitable(command: Command) -> Any:
    """An awaitable that yields ``command`` to the driver and returns what it sends back."""
    return _CommandAwaitable(command)
