"""Commands: what workflow code asks the runtime to do when it awaits a riverrun operation.

Workflow code runs on the machine's deterministic event loop (``_loop.py``): awaiting a step,
a sleep, a signal or a child *issues* one of these objects to the state machine, which numbers
it (its position: the order of issue, a function of the history), gives it a future on the
loop, and resolves that future from history; the instance carries out the commands that are
live (several at once when workflow code runs operations concurrently).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
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
    #: 1-based position of the command within its run (order of issue), set by the machine
    position: int = attrs.field(default=0, kw_only=True)
    #: what the awaiting workflow code gets, resolved when the command's event is applied
    future: asyncio.Future[Any] | None = attrs.field(default=None, kw_only=True)
    #: the workflow code gave up on it (its task was cancelled, a timeout): the instance
    #: stops it and records the cancellation (``step.cancelled``/``timer.cancelled``)
    cancelling: bool = attrs.field(default=False, kw_only=True)


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
    #: set for the timers of ``loop.call_at`` (``asyncio.timeout``, ``wait_for``...): fired,
    #: the handle's callback runs on the workflow's loop instead of a future resolving
    handle: asyncio.TimerHandle | None = None


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
    #: the default child id from the command's position, when ``workflow_id`` is empty
    make_id: Callable[[int], str] | None = None
    #: the child's task queue (``None``: the queue its type is registered with on the
    #: worker, else ``default``)
    queue: str | None = None


@attrs.define(eq=False)
class WaitChild(Command):
    child_workflow_id: str


def command_awaitable(command: Command) -> Awaitable[Any]:
    """Issue ``command`` in the current workflow (at the first await) and return its result."""
    from ._context import run_command  # _context builds on this module

    return run_command(command)
