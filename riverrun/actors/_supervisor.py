"""What every supervisor does for its children: name them, decide on failures, restart.

Design note: a supervision decision is synchronous. The failed child, once it has torn down
its incarnation (children stopped, ``on_stop`` called), calls :meth:`Supervisor.decide` from
its own task; the supervisor records the failure against the child's intensity window and
either escalates (fails itself) or opens a :class:`RestartRound`. A round asks every affected
sibling to end its incarnation (each gets its grace period to finish the message in hand),
waits until all of them are down, sleeps the backoff, and resumes them in spawn order; this
waiting runs as a task in the supervisor's own task group, so it dies with the supervisor.
Actors and the system's root guardian share this class; they differ in where tasks run and
where an escalation goes.
"""

from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from riverrun._errors import EscalationError

from ._strategy import SupervisorStrategy

if TYPE_CHECKING:
    from ._cell import Cell
    from ._system import ActorSystem

__all__ = ["RestartRound", "Supervisor"]

log = logging.getLogger("riverrun.actors")


class RestartRound:
    """Children restarting together: all go down, then all come back, in spawn order.

    ``pending`` counts members whose incarnation has not ended yet. A member leaves a round
    by going down, by stopping for good, or by being moved into a newer round (a sibling
    failed again before this round finished); each of those calls :meth:`arrive` once.
    """

    __slots__ = ("all_down", "delay", "members", "pending")

    def __init__(self, members: list[Cell], delay: float) -> None:
        self.members = members
        self.delay = delay
        self.pending = 0
        self.all_down = anyio.Event()

    def arrive(self) -> None:
        """One member no longer runs an incarnation."""
        self.pending -= 1
        if self.pending == 0:
            self.all_down.set()


class Supervisor(abc.ABC):
    """The parent side of the supervision tree (an actor, or the system's root guardian)."""

    __slots__ = ("_auto_names", "children", "path", "strategy", "system")

    def __init__(self, *, system: ActorSystem, path: str, strategy: SupervisorStrategy) -> None:
        self.system = system
        self.path = path
        self.strategy = strategy
        # Live children by name, in spawn order (dicts keep insertion order).
        self.children: dict[str, Cell] = {}
        self._auto_names = 0

    @abc.abstractmethod
    def accepting(self) -> bool:
        """Whether children may be spawned and restarted now."""

    @abc.abstractmethod
    def task_group(self) -> TaskGroup:
        """The task group that owns this supervisor's children and helper tasks."""

    @abc.abstractmethod
    def escalate(self, error: EscalationError) -> None:
        """A child failed too often: fail this supervisor (or report to the system)."""

    def child_path(self, name: str | None) -> tuple[str, str]:
        """Validate or invent a child's name; return ``(name, path)``."""
        if name is None:
            self._auto_names += 1
            name = f"${self._auto_names}"
        elif not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"an actor name is a non-empty string without '/', got {name!r}")
        if name in self.children:
            raise ValueError(
                f"{self.path or 'the actor system'} already has a live child named {name!r}; "
                "choose another name or stop that child first"
            )
        return name, f"{self.path}/{name}" if self.path else name

    def decide(self, child: Cell, failure: Exception) -> bool:
        """Handle ``child``'s failure; return whether it will be restarted.

        Called by the child itself once its incarnation is torn down.
        """
        if not self.accepting():
            return False
        strategy = self.strategy
        now = self.system.clock()
        times = child.failure_times
        times.append(now)
        horizon = now - strategy.within
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) > strategy.max_restarts:
            error = EscalationError(
                f"actor {child.path!r} failed {len(times)} times within {strategy.within}s, "
                f"more than its supervisor allows (max_restarts={strategy.max_restarts}); "
                f"the failure escalates to {self.path or 'the actor system'!r}. "
                "Fix the cause (see __cause__) or raise max_restarts."
            )
            error.__cause__ = failure
            log.error(
                "actor %s failed %d times within %ss (max_restarts=%d), escalating to %s: "
                "%s: %s",
                child.path,
                len(times),
                strategy.within,
                strategy.max_restarts,
                self.path or "the actor system",
                type(failure).__name__,
                failure,
                exc_info=failure,
            )
            self.escalate(error)
            return False
        candidates = [c for c in self.children.values() if not c.stopping]
        round_ = RestartRound(
            strategy.affected(candidates, child), strategy.backoff.delay(len(times))
        )
        log.warning(
            "actor %s failed (attempt %d within %ss), restarting in %.3fs: %s: %s",
            child.path,
            len(times),
            strategy.within,
            round_.delay,
            type(failure).__name__,
            failure,
        )
        for member in round_.members:
            member.join_round(round_)
        if round_.pending == 0:
            round_.all_down.set()
        self.task_group().start_soon(self._coordinate, round_, name=f"restart {child.path}")
        return True

    async def _coordinate(self, round_: RestartRound) -> None:
        await round_.all_down.wait()
        await anyio.sleep(round_.delay)
        for member in round_.members:
            if member.round is round_:
                member.resume()

    async def stop_children(self) -> None:
        """Stop every child, children of children first; return when all have stopped.

        Stops are requested in reverse spawn order, then awaited: every child's grace period
        runs concurrently, so stopping a wide tree takes one grace period per level at most.
        """
        children = list(self.children.values())
        for child in reversed(children):
            child.request_stop(child.grace)
        for child in reversed(children):
            await child.stopped_event.wait()
