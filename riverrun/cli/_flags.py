"""``runs list`` red flags: the signs of a continue-as-new chain gone wrong.

A chain that continues as new should advance: each run does new work, hands on new
arguments and keeps a bounded history. Three signs say it does not, and ``runs list`` marks
the runs that show them (the ``FLAGS`` column; ``flags`` in ``--json``). They are computed
from the run records the listing reads anyway, plus, for a run whose chain continued, the
link event (``workflow.continued_as_new``, the one event a truncated run keeps) of at most
the three newest continued runs up to it: one read of one event each, shared by the runs of
a chain.

- ``continuations>=20``: 20 or more continue-as-new hand-overs came before the run
  (``execution - 1 >= 20``). Normal for a long-lived poller; a possible infinite loop for a
  job that should finish.
- ``history-growing``: the last three runs of the chain that continued (up to this run) each
  had more events than the one before (a link's sequence number is its run's history
  length: sequences survive truncation). The workflow redoes work it already did instead of
  starting each run from where the last one stopped.
- ``same-args``: the last two runs that continued (up to this run) handed the very same
  arguments to their successors. The chain repeats the same task: its progress marker (an
  offset, a cursor) does not advance.

"Up to this run" means: the run itself if it continued as new, else the runs before it, so
a chain's current run shows what its predecessors did.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from riverrun import Client, Event, WorkflowRun

__all__ = ["CONTINUATIONS", "FLAGS", "HISTORY_GROWING", "SAME_ARGS", "red_flags"]

CONTINUATIONS = "continuations>=20"
HISTORY_GROWING = "history-growing"
SAME_ARGS = "same-args"
#: every flag, in the order they are shown
FLAGS = (CONTINUATIONS, HISTORY_GROWING, SAME_ARGS)

#: hand-overs before a run from which it is flagged
CONTINUATION_THRESHOLD = 20
#: continued runs whose histories must grow one after the other
GROWING_RUNS = 3


async def red_flags(
    client: Client, runs: Sequence[WorkflowRun], known: Mapping[str, WorkflowRun]
) -> dict[str, list[str]]:
    """The flags of each of ``runs`` (by run id); ``known``: every record read, by run id."""
    links: dict[str, Event | None] = {}

    async def link(run: WorkflowRun) -> Event | None:
        if run.run_id not in links:
            event = await client.last_event(run.run_id, workflow_id=run.workflow_id)
            links[run.run_id] = (
                event if event is not None and event.type == "workflow.continued_as_new" else None
            )
        return links[run.run_id]

    flags: dict[str, list[str]] = {}
    for run in runs:
        found: list[str] = []
        if run.execution - 1 >= CONTINUATION_THRESHOLD:
            found.append(CONTINUATIONS)
        continued: list[Event] = []
        for earlier in _continued_up_to(run, known):
            event = await link(earlier)
            if event is None:
                break
            continued.insert(0, event)  # oldest first
        if len(continued) >= GROWING_RUNS and _strictly_increasing(
            [e.sequence for e in continued]
        ):
            found.append(HISTORY_GROWING)
        if len(continued) >= 2 and _carried(continued[-1]) == _carried(continued[-2]):
            found.append(SAME_ARGS)
        flags[run.run_id] = found
    return flags


def _continued_up_to(run: WorkflowRun, known: Mapping[str, WorkflowRun]) -> list[WorkflowRun]:
    """The newest (at most three) runs of the chain that continued, up to ``run``, newest
    first; a pruned or unlisted predecessor ends the walk."""
    current: WorkflowRun | None = run
    if str(run.status) != "continued_as_new":
        current = known.get(run.continued_from_run_id) if run.continued_from_run_id else None
    found: list[WorkflowRun] = []
    while current is not None and len(found) < GROWING_RUNS:
        found.append(current)
        previous = current.continued_from_run_id
        current = known.get(previous) if previous else None
    return found


def _carried(link: Event) -> tuple[Any, Any]:
    return link.data.get("args"), link.data.get("kwargs")


def _strictly_increasing(values: Sequence[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))
