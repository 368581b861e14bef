"""The continue-as-new link and the roll-forward of its successor.

Design note. A hand-over commits with one fenced append: the old run's terminal
``workflow.continued_as_new`` event (the *link*). The link carries everything the successor
needs (its run id, name, version, arguments, execution, parent, inbox cursor, carried signals,
trace context), so the successor's first event, ``workflow.started``, is a pure function of
the link: ``successor_first_event``. Whoever finds a link without its successor (the worker
that just wrote it, a worker recovering the chain, a terminate) writes that event with expected
last sequence 0 on the new run's subject and the Msg-Id ``<new run>:1``: at most one such event
is ever written, and every writer would write the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from .._errors import ConcurrencyConflict, NonDeterminismError
from ..persistence import EventLog, NewEvent, RunKey, StoredEvent
from ._events import EventType

__all__ = ["LINK_FIELDS", "roll_forward", "successor_first_event", "successor_key"]

#: what a link carries for its successor, besides ``new_run_id``/``args``/``kwargs``/
#: ``version``/``reason`` (which every link has had)
LINK_FIELDS: Final = ("workflow_name", "execution", "parent", "inbox_cursor")
_TRACE_FIELDS: Final = ("trace", "trace_link")


def successor_key(link: StoredEvent) -> RunKey:
    return RunKey(workflow_id=link.key.workflow_id, run_id=str(link.data["new_run_id"]))


def successor_first_event(link: StoredEvent) -> NewEvent:
    """The successor's ``workflow.started`` as derived from its link (deterministic: the
    same link always gives the same event, timestamp included).

    Raises:
        NonDeterminismError: the link lacks what the successor needs (a link written by a
            riverrun that wrote the successor in the same batch, whose successor is gone).
    """
    data: Mapping[str, Any] = link.data
    missing = [name for name in LINK_FIELDS if name not in data]
    if missing:
        raise NonDeterminismError(
            f"run {link.key.workflow_id}/{link.key.run_id} continued as new to run "
            f"{data.get('new_run_id')}, which has no events, and its link lacks "
            f"{', '.join(missing)} to rebuild it from; the successor's history was deleted"
        )
    first: dict[str, Any] = {
        "workflow_name": data["workflow_name"],
        "version": data.get("version"),
        "args": data.get("args", []),
        "kwargs": data.get("kwargs", {}),
        "execution": data["execution"],
        "continued_from_run_id": link.key.run_id,
        "parent": data["parent"],
        "inbox_cursor": data["inbox_cursor"],
        "pending_signals": data.get("pending_signals", []),
    }
    for name in _TRACE_FIELDS:
        if name in data:
            first[name] = data[name]
    return NewEvent(type=EventType.WORKFLOW_STARTED.value, timestamp=link.timestamp, data=first)


async def roll_forward(events: EventLog, link: StoredEvent) -> bool:
    """Write the successor's first event from ``link`` unless it exists.

    Returns True when the log now holds exactly the event derived from the link through this
    call (written, or found as a retry's duplicate by its Msg-Id), False when another writer's
    event was there first (read the successor to see it).
    """
    key = successor_key(link)
    try:
        await events.append(
            key,
            successor_first_event(link),
            expected_last=0,
            idempotency_id=f"{key.run_id}:1",
        )
    except ConcurrencyConflict:
        return False
    return True
