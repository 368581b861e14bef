"""What a run waits on, derived from its recorded history alone.

Design note. ``riverrun runs show`` runs in another process than the worker hosting the run
(if any worker does), so it cannot ask the workflow machine what is pending: it reads the
run's history and derives the operations that are open, those started and not ended:

* a timer: ``timer.started`` without its ``timer.fired``. A signal wait's timeout that lost
  to its signal is retired without an event; it is recognised by a ``signal.received``
  recorded after it and followed by an event at a later position (the workflow went on);
* a child: ``child.started`` (that did start one) without its ``child.completed``,
  ``child.failed`` or ``child.cancelled``;
* a step between attempts: the last event at its position is ``step.retrying`` (or, should
  ``step.started`` ever be recorded, a step running: the last event is ``step.started``);
* a cancellation: ``cancellation.requested`` in a run that has not ended.

A step attempt in flight and a signal wait are not recorded until they end, so when nothing
above is open the run is said to be *idle* since its last event, naming both. Several
operations may be open at once; they are listed in the order they started.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from ._events import Event, EventType

__all__ = ["WaitingOn", "waiting_on"]

#: kinds of ``WaitingOn``
TIMER = "timer"
CHILD = "child"
STEP_RETRY = "step_retry"
STEP = "step"
CANCELLATION = "cancellation"
IDLE = "idle"

_CHILD_ENDS = frozenset(
    {EventType.CHILD_COMPLETED, EventType.CHILD_FAILED, EventType.CHILD_CANCELLED}
)
_STEP_EVENTS = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.STEP_RETRYING,
    }
)


@attrs.frozen(kw_only=True)
class WaitingOn:
    """One thing a running run waits on. Fields that do not apply to its kind are ``None``."""

    #: ``timer``, ``child``, ``step_retry``, ``step`` (a ``step.started`` not ended),
    #: ``cancellation`` or ``idle``
    kind: str
    #: when it started (the event's time; for ``idle``, the run's last event)
    since: datetime
    #: the workflow code's position of the operation (timers, children, steps)
    position: int | None = None
    timer_id: str | None = None
    #: when the timer fires
    due: datetime | None = None
    child_workflow_id: str | None = None
    child_run_id: str | None = None
    #: the child chain's current status, when the reader looked it up
    child_status: str | None = None
    step: str | None = None
    #: the step's next attempt (the one waited for, or running once ``retry_at`` has passed)
    attempt: int | None = None
    retry_at: datetime | None = None
    #: the last attempt's error (``step_retry``)
    error: str | None = None
    #: the cancellation's reason (``cancellation``)
    reason: str | None = None

    def describe(
        self,
        now: datetime | None = None,
        *,
        time_format: Callable[[datetime | None], str] | None = None,
    ) -> str:
        """One line for people, e.g. ``timer wf-1-3 due 2026-01-01 10:00:00+00:00``; times
        are ISO 8601 unless ``time_format`` renders them."""
        fmt = time_format or _iso
        if self.kind == TIMER:
            overdue = (
                " (overdue)" if now is not None and self.due is not None and self.due < now else ""
            )
            return f"timer {self.timer_id} due {fmt(self.due)}{overdue}"
        if self.kind == CHILD:
            status = f" ({self.child_status})" if self.child_status else ""
            return f"child workflow {self.child_workflow_id}{status}"
        if self.kind == STEP_RETRY:
            running = now is not None and self.retry_at is not None and self.retry_at <= now
            when = (
                f"running since {fmt(self.retry_at)} or about to"
                if running
                else f"retry at {fmt(self.retry_at)}"
            )
            return (
                f"step {self.step!r} attempt {self.attempt}: {when} "
                f"(attempt {(self.attempt or 1) - 1} failed: {self.error})"
            )
        if self.kind == STEP:
            attempt = f" attempt {self.attempt}" if self.attempt else ""
            return f"step {self.step!r}{attempt} running since {fmt(self.since)}"
        if self.kind == CANCELLATION:
            reason = f" ({self.reason})" if self.reason else ""
            return (
                f"cancellation requested{reason}: the workflow code is handling its "
                "CancellationError"
            )
        return (
            f"idle since {fmt(self.since)}: running workflow code, a step attempt in flight "
            "(steps are recorded when an attempt ends) or a signal wait"
        )


def waiting_on(events: Sequence[Event]) -> list[WaitingOn]:
    """What the run whose history is ``events`` waits on; ``[]`` if the run has ended."""
    if not events or events[-1].type.is_terminal:
        return []
    timers: dict[str, Event] = {}
    retired: set[str] = set()  # timers a signal may have retired, once the run moves on
    signal_after: dict[str, bool] = {}
    children: dict[str, Event] = {}
    steps: dict[int, Event] = {}
    cancel: Event | None = None
    for event in events:
        data, type_ = event.data, event.type
        position = _int(data.get("position"))
        if position is not None:
            for timer_id, started in timers.items():
                if signal_after.get(timer_id) and position > (
                    _int(started.data.get("position")) or 0
                ):
                    retired.add(timer_id)
        if type_ == EventType.TIMER_STARTED:
            timers[str(data.get("timer_id"))] = event
        elif type_ == EventType.TIMER_FIRED:
            timers.pop(str(data.get("timer_id")), None)
        elif type_ == EventType.SIGNAL_RECEIVED:
            for timer_id in timers:
                signal_after[timer_id] = True
        elif type_ == EventType.CHILD_STARTED and not data.get("error_type"):
            children[str(data.get("child_workflow_id"))] = event
        elif type_ in _CHILD_ENDS:
            children.pop(str(data.get("child_workflow_id")), None)
        elif type_ in _STEP_EVENTS and position is not None:
            steps[position] = event
        elif type_ == EventType.CANCELLATION_REQUESTED and cancel is None:
            cancel = event
    found: list[WaitingOn] = []
    for timer_id, event in timers.items():
        if timer_id in retired:
            continue
        found.append(
            WaitingOn(
                kind=TIMER,
                since=event.timestamp,
                position=_int(event.data.get("position")),
                timer_id=timer_id,
                due=_datetime(event.data.get("fire_at")),
            )
        )
    for child_id, event in children.items():
        found.append(
            WaitingOn(
                kind=CHILD,
                since=event.timestamp,
                position=_int(event.data.get("position")),
                child_workflow_id=child_id,
                child_run_id=_str(event.data.get("child_run_id")),
            )
        )
    for position, event in steps.items():
        if event.type == EventType.STEP_STARTED:  # not written today; if it is, it says this
            found.append(
                WaitingOn(
                    kind=STEP,
                    since=event.timestamp,
                    position=position,
                    step=_str(event.data.get("name")),
                    attempt=_int(event.data.get("attempt")),
                )
            )
        if event.type != EventType.STEP_RETRYING:
            continue
        attempt = _int(event.data.get("attempt")) or 0
        found.append(
            WaitingOn(
                kind=STEP_RETRY,
                since=event.timestamp,
                position=position,
                step=_str(event.data.get("name")),
                attempt=attempt + 1,
                retry_at=_datetime(event.data.get("retry_at")),
                error=_error(event.data),
            )
        )
    if cancel is not None:
        found.append(
            WaitingOn(
                kind=CANCELLATION, since=cancel.timestamp, reason=_str(cancel.data.get("reason"))
            )
        )
    found.sort(key=lambda w: w.since)
    if not found:
        found.append(WaitingOn(kind=IDLE, since=events[-1].timestamp))
    return found


def _error(data: Mapping[str, Any]) -> str:
    kind, message = data.get("error_type"), data.get("message")
    return f"{kind}: {message}" if message else str(kind)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _iso(value: datetime | None) -> str:
    if value is None:
        return "?"
    return value.isoformat(sep=" ", timespec="seconds")
