"""Force continue-as-new at chosen points, to show a workflow gives the same result wherever
it is continued (the CAN-fuzz).

A ``ContinueAsNewForcer`` is passed to ``Runtime.in_memory(force_continue=...)`` (or
``open_test_runtime``). The runtime asks it at every command a workflow reaches while running
live; when it answers with a reason, ``info().continue_as_new_suggested`` turns true from that
point of the run, exactly as a history limit would: a workflow that checks the suggestion
continues at its own next safe point, and an ``auto_continue_as_new`` workflow is continued
by the runtime at its next await. Positions count commands across the whole chain of one
workflow id, so each forced point is reached once and the chain always progresses.

Forcing at an arbitrary await instead would restart the workflow from the top and drop what
it held in local variables (a signal just consumed, a timer just fired): the first version of
this tool did that, and this very fuzz caught it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ..runtime._machine import WorkflowMachine

__all__ = ["ContinueAsNewForcer"]


class ContinueAsNewForcer:
    """Suggest continue-as-new when a workflow reaches the given cumulative command positions."""

    def __init__(self, positions: Iterable[int], *, workflow_ids: Iterable[str] | None = None):
        self.positions = frozenset(int(p) for p in positions)
        if any(p < 1 for p in self.positions):
            raise ValueError("positions are 1-based")
        self.workflow_ids = frozenset(workflow_ids) if workflow_ids is not None else None
        self.seen: Counter[str] = Counter()
        self.forced: list[tuple[str, int]] = []

    def __repr__(self) -> str:
        return f"<ContinueAsNewForcer positions={sorted(self.positions)} forced={len(self.forced)}>"

    def __call__(self, machine: WorkflowMachine) -> str | None:
        workflow_id = machine.workflow_id
        if self.workflow_ids is not None and workflow_id not in self.workflow_ids:
            return None
        self.seen[workflow_id] += 1
        position = self.seen[workflow_id]
        if position in self.positions:
            self.forced.append((workflow_id, position))
            return f"forced by riverrun.testing at command {position}"
        return None
