"""Run records rebuilt from the event log.

Design note. A run record is a projection of its run's events: the first event
(``workflow.started``) names the workflow, execution, predecessor and parent; the last one
says how the run ended (``workflow.completed`` / ``failed`` / ``cancelled`` /
``continued_as_new``, or nothing yet: running). So a record that is missing from the run
store (deleted by hand, lost with a KV bucket) can be rebuilt from the log, given the run's
``workflow_id`` and ``run_id``: the log is keyed by both, so a bare run id whose record is
gone cannot be found without a scan of the whole log.

A rebuilt record of a run that has ended is final and is written back (create-only: a
record written meanwhile by a worker wins). A rebuilt record of a running run is returned
but not written: the worker hosting the run may end it at any moment, and a stale
``running`` record written after its end would never be corrected.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import ConcurrencyConflict
from ..persistence import Backend, RunKey, RunStatus, StoredEvent, WorkflowRun
from ._events import EventType

__all__ = ["project_run", "rebuild_run"]

_ENDINGS = {
    EventType.WORKFLOW_COMPLETED.value: RunStatus.COMPLETED,
    EventType.WORKFLOW_FAILED.value: RunStatus.FAILED,
    EventType.WORKFLOW_CANCELLED.value: RunStatus.CANCELLED,
    EventType.WORKFLOW_CONTINUED_AS_NEW.value: RunStatus.CONTINUED_AS_NEW,
}


def project_run(
    workflow_id: str,
    run_id: str,
    events: Sequence[StoredEvent],
    *,
    workflow_name: str = "",
    execution: int = 0,
) -> WorkflowRun | None:
    """The run record that ``events`` (the run's whole remaining history) imply.

    ``workflow_name`` and ``execution`` are used only when the run was truncated to its
    chain link (its ``workflow.started`` event is gone); ``None`` if there are no events.
    """
    if not events:
        return None
    first, last = events[0], events[-1]
    parent: dict[str, str] = {}
    continued_from: str | None = None
    version: str | None = None
    if first.type == EventType.WORKFLOW_STARTED.value:
        data = first.data
        workflow_name = str(data.get("workflow_name") or workflow_name)
        execution = int(data.get("execution") or execution or 1)
        continued_from = data.get("continued_from_run_id")
        parent = dict(data.get("parent") or {})
        version = data.get("version")
    status = _ENDINGS.get(last.type, RunStatus.RUNNING)
    result = error = continued_to = None
    if status == RunStatus.COMPLETED:
        result = last.data.get("result")
    elif status == RunStatus.FAILED:
        error = f"{last.data.get('error_type', '')}: {last.data.get('message', '')}"
    elif status == RunStatus.CANCELLED:
        error = last.data.get("message")
    elif status == RunStatus.CONTINUED_AS_NEW:
        continued_to = last.data.get("new_run_id")
    return WorkflowRun(
        run_id=run_id,
        workflow_id=workflow_id,
        workflow_name=workflow_name,
        status=status,
        execution=execution,
        continued_from_run_id=continued_from,
        continued_to_run_id=continued_to,
        created_at=first.timestamp,
        completed_at=None if status == RunStatus.RUNNING else last.timestamp,
        result=result,
        error=error,
        parent_run_id=parent.get("run_id"),
        parent_workflow_id=parent.get("workflow_id"),
        version=version,
    )


async def rebuild_run(
    backend: Backend,
    workflow_id: str,
    run_id: str,
    *,
    workflow_name: str = "",
    execution: int = 0,
) -> WorkflowRun | None:
    """Rebuild a missing run record from the log (see the module note); ``None`` if the run
    has no events either. An ended run's record is written back."""
    key = RunKey(workflow_id=workflow_id, run_id=run_id)
    # the first and the last event are all a record needs: bounded however long the run
    events = await backend.events.read(key, limit=1)
    if events:
        last = await backend.events.last_sequence(key)
        if last > events[0].sequence:
            events += await backend.events.read(key, after=last - 1)
    run = project_run(
        workflow_id, run_id, events, workflow_name=workflow_name, execution=execution
    )
    if run is None or run.status == RunStatus.RUNNING:
        return run
    try:
        await backend.runs.put_run(run, expected_revision=None)
    except ConcurrencyConflict:
        existing = await backend.runs.get_run(run_id)
        if existing is not None:
            return existing.value
    return run
