"""Terminating a chain without the worker that hosts it: a fenced write to its log.

Design note. ``Client.cancel`` asks the hosting worker to cancel (an inbox message), so it
needs a worker that runs the workflow's code; a run whose type no worker registers (a
misspelled name) would stay ``running`` for ever. ``terminate`` writes the run's end itself:
it appends ``workflow.cancelled`` (``terminated: true``) to the current run's log fenced by
the run's last sequence, exactly as a worker appends. Whoever appends first wins: if a live
worker appended meanwhile the fence fails, the log is read again and the append retried; a
live worker that appends after the terminate fails its fence (``ConcurrencyConflict``) and
lets the workflow go, so the log never forks and the run ends once.

Everything after the append is a projection of the log, the same a worker does at a chain's
end (``WorkflowInstance._complete_chain``, with the same idempotency ids so nothing is sent
twice): the parent hears of the child's end, children are closed per their policy, pending
timers are unscheduled, the record turns ``cancelled`` and the inbox is purged. Should this
be interrupted, a worker that loads the run finds its terminal event and redoes it.

A ``terminate`` inbox message follows the append: it wakes the worker hosting the run, if
any, which cancels the step in flight, fails its next append against the fence and stops.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from .._errors import ConcurrencyConflict, WorkflowNotFound
from ..persistence import NewEvent, RunKey, RunStatus, StoredEvent, WorkflowRun
from ._events import EventType
from ._handover import roll_forward

if TYPE_CHECKING:
    from ._services import Services

__all__ = ["TerminateOutcome", "terminate_run"]

#: fence failures (a live worker appending between our read and our write) tolerated
MAX_ATTEMPTS = 8

_ENDINGS = {
    EventType.WORKFLOW_COMPLETED.value: RunStatus.COMPLETED,
    EventType.WORKFLOW_FAILED.value: RunStatus.FAILED,
    EventType.WORKFLOW_CANCELLED.value: RunStatus.CANCELLED,
}
_CHILD_ENDS = frozenset(
    {
        EventType.CHILD_COMPLETED.value,
        EventType.CHILD_FAILED.value,
        EventType.CHILD_CANCELLED.value,
    }
)

@attrs.frozen(kw_only=True)
class TerminateOutcome:
    """What ``terminate_run`` did: the final record, or the status the chain already had."""

    #: the run whose log decided (the chain's current run, per the log)
    run_id: str
    #: the record as written (``None``: nothing written, or no record could be rebuilt)
    run: WorkflowRun | None = None
    #: not ``None``: the chain had already ended with this status; nothing was written
    ended_as: RunStatus | None = None


async def terminate_run(
    services: Services, current: WorkflowRun, reason: str | None
) -> TerminateOutcome:
    """End the chain whose current run (as the run store has it) is ``current``.

    The log may be ahead of the records (a hand-over not yet projected): the run's last
    event decides, and a ``workflow.continued_as_new`` leads to the successor run.

    Raises:
        ConcurrencyConflict: the fence failed ``MAX_ATTEMPTS`` times in a row.
        WorkflowNotFound: the run has no events at all.
    """
    events = services.backend.events
    workflow_id = current.workflow_id
    run_id = current.run_id
    token = uuid.uuid4().hex
    message = f"terminated: {reason}" if reason else "terminated"
    attempts = 0
    links: list[tuple[str, datetime]] = []
    next_of: dict[str, str] = {}
    link: StoredEvent | None = None  # the link just followed, while its successor is unread
    while True:
        key = RunKey(workflow_id=workflow_id, run_id=run_id)
        last = await events.last_sequence(key)
        if last == 0 and link is not None:
            # a hand-over committed (its link) before its successor's first event was written
            await roll_forward(events, link)
            link = None
            continue
        if last == 0:
            raise WorkflowNotFound(f"run {run_id!r} of workflow {workflow_id!r} has no events")
        tail = await events.read(key, after=last - 1)
        kind = tail[-1].type if tail else ""
        if kind == EventType.WORKFLOW_CONTINUED_AS_NEW.value:
            following = str(tail[-1].data["new_run_id"])
            links.append((run_id, tail[-1].timestamp))
            next_of[run_id] = following
            run_id = following
            link = tail[-1]
            continue
        if kind == EventType.WORKFLOW_CANCELLED.value and tail[-1].data.get("terminate_id") == token:
            break  # our own append, whose acknowledgement was lost
        if kind in _ENDINGS:
            return TerminateOutcome(run_id=run_id, ended_as=_ENDINGS[kind])
        try:
            await events.append(
                key,
                NewEvent(
                    type=EventType.WORKFLOW_CANCELLED.value,
                    timestamp=services.clock.now(),
                    data={
                        "message": message,
                        "terminated": True,
                        "reason": reason,
                        "terminate_id": token,
                    },
                ),
                expected_last=last,
                # unique: a worker's append after the same sequence must not pass for ours
                idempotency_id=f"terminate:{token}",
            )
            break
        except ConcurrencyConflict as err:
            attempts += 1
            if attempts >= MAX_ATTEMPTS:
                raise ConcurrencyConflict(
                    f"workflow {workflow_id!r} (run {run_id}) was not terminated: its worker "
                    f"appended to the run each of the {MAX_ATTEMPTS} times we tried; try again"
                ) from err
    for old_run_id, completed_at in links:
        # the log was ahead of the records (a hand-over not projected yet): project it
        old = await services.backend.runs.get_run(old_run_id)
        if old is None or old.value.status != RunStatus.RUNNING:
            continue
        await services.update_run(
            old_run_id,
            status=RunStatus.CONTINUED_AS_NEW,
            continued_to_run_id=next_of[old_run_id],
            completed_at=completed_at,
        )
    if links:
        # the head may still be on a predecessor; moved while the chain is still running by
        # its records (a new chain can start on this id only once the record below is final)
        await services.move_head(workflow_id, run_id)
    final = await _project(services, workflow_id, run_id, message, reason)
    return TerminateOutcome(run_id=run_id, run=final)


async def _project(
    services: Services, workflow_id: str, run_id: str, message: str, reason: str | None
) -> WorkflowRun | None:
    """What a worker does at a chain's end, for a run whose log ends in our append."""
    backend = services.backend
    key = RunKey(workflow_id=workflow_id, run_id=run_id)
    history = [event async for event in backend.events.stream(key)]
    # everything in the inbox so far was sent to this chain; the wake-up below is not purged
    queue = await services.queue_of(workflow_id)
    purge_to = await backend.inbox.last_sequence(workflow_id, queue=queue)
    await backend.inbox.send(
        workflow_id, "terminate", {"reason": reason, "run_id": run_id}, queue=queue
    )
    parent = _parent_of(history)
    children, timers = _open_children_and_timers(history)
    for child_id, policy in children.items():
        await services.close_child(workflow_id, run_id, child_id, policy)
    for timer_id in timers:
        await backend.inbox.cancel_schedule(workflow_id, timer_id)
    if parent:
        await backend.inbox.send(
            parent["workflow_id"],
            "child",
            {
                "child_workflow_id": workflow_id,
                "status": RunStatus.CANCELLED.value,
                "result": None,
                "message": message,
            },
            idempotency_id=f"child-end:{run_id}",
            queue=parent.get("queue") or await services.queue_of(parent["workflow_id"]),
        )
    now = services.clock.now()
    final = await services.update_run(
        run_id, status=RunStatus.CANCELLED, result=None, error=message, completed_at=now
    )
    if final is None:  # no record (lost): rebuilt from the log, which now says cancelled
        final = await services.read_run(run_id, workflow_id=workflow_id)
    if purge_to:
        await backend.inbox.purge(workflow_id, up_to=purge_to, queue=queue)
    head = await backend.runs.get_head(workflow_id)
    if head is not None:  # no longer running: out of its partition's index
        await backend.owners.index_remove(
            queue, services.partition_of(workflow_id), workflow_id, head.value.first_run_id
        )
    services.forget(workflow_id)
    services.notify_done(workflow_id, final)
    await services.announce_end(workflow_id)
    return final


def _parent_of(history: list[StoredEvent]) -> dict[str, str]:
    for event in history:
        if event.type == EventType.WORKFLOW_STARTED.value:
            return dict(event.data.get("parent") or {})
    return {}


def _open_children_and_timers(history: list[StoredEvent]) -> tuple[dict[str, str], list[str]]:
    """Children started and not ended (id → parent-close policy); timers not fired."""
    children: dict[str, str] = {}
    timers: dict[str, None] = {}
    for event in history:
        data = event.data
        if event.type == EventType.CHILD_STARTED.value and not data.get("error_type"):
            children[str(data["child_workflow_id"])] = str(
                data.get("parent_close_policy", "cancel")
            )
        elif event.type in _CHILD_ENDS:
            children.pop(str(data.get("child_workflow_id")), None)
        elif event.type == EventType.TIMER_STARTED.value:
            timers[str(data["timer_id"])] = None
        elif event.type == EventType.TIMER_FIRED.value:
            timers.pop(str(data.get("timer_id")), None)
    return children, list(timers)
