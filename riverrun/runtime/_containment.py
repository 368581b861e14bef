"""Fault containment: what a workflow's code, its steps or its history may end (only its run).

Design note. Three places decide whether an exception ends one workflow or travels further:

* a step: anything the step raises is a step failure under its retry policy, including
  ``SystemExit``, ``KeyboardInterrupt`` and an ``asyncio.CancelledError`` that no cancel
  scope asked for (a library leaking one). A cancellation that *was* asked for (the step's
  own scope on a cancel request, the worker shutting down, the task cancelled) always passes
  through: see :func:`is_step_fault`;
* the workflow coroutine being closed after its outcome is decided (a terminate, an automatic
  continue-as-new): whatever its ``finally`` raises is logged and ignored
  (:func:`log_close_error`);
* the worker restarting a crashed workflow actor: an infrastructure fault (the store
  unreachable, a timeout, a lost fence) restarts it with backoff for as long as it lasts; any
  other crash that repeats the same way ``park_after_failures`` times in a row parks the
  workflow (:class:`CrashTracker`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

import anyio
import attrs

from .._errors import ConcurrencyConflict, StorePermissionDenied, StoreUnavailable

if TYPE_CHECKING:
    from ._machine import WorkflowMachine

__all__ = [
    "CrashTracker",
    "crash_signature",
    "is_infrastructure",
    "is_step_fault",
    "log_close_error",
    "log_step_fault",
]

log = logging.getLogger("riverrun.worker")


def _cancellation_requested() -> bool:
    """Whether the current task is being cancelled on purpose (by a scope or natively)."""
    if anyio.current_effective_deadline() == -math.inf:
        return True  # an enclosing anyio cancel scope (ours or the host's) was cancelled
    try:
        task = asyncio.current_task()
    except RuntimeError:  # pragma: no cover - not on asyncio
        return False
    return task is not None and task.cancelling() > 0


def is_step_fault(exc: BaseException) -> bool:
    """Whether a ``BaseException`` a step raised is the step's failure, not a cancellation.

    ``SystemExit``, ``KeyboardInterrupt`` and a stray ``CancelledError`` raised while no
    cancellation is in progress are the step's own failures. A ``CancelledError`` while a
    cancel scope around the step is cancelled (a cancel request, the worker stopping) or the
    task has a pending ``cancel()`` is a real cancellation and must propagate; so must
    ``GeneratorExit`` and any other ``BaseException``.
    """
    if isinstance(exc, Exception | SystemExit | KeyboardInterrupt):
        return True
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return not _cancellation_requested()
    return False


def log_step_fault(
    workflow_id: str, run_id: str, step: str, attempt: int, exc: BaseException
) -> None:
    log.warning(
        "workflow %s run %s: step %r attempt %d raised %s (%r); recorded as a step failure",
        workflow_id,
        run_id,
        step,
        attempt,
        type(exc).__name__,
        exc,
    )


def log_close_error(machine: WorkflowMachine, exc: BaseException) -> None:
    """The workflow's cleanup raised while its coroutine was closed: logged and ignored."""
    level = logging.DEBUG if machine.replaying else logging.WARNING
    log.log(
        level,
        "workflow %s run %s: its code raised %s (%r) while being closed after its outcome "
        "(%s) was decided; ignored, the outcome stands",
        machine.workflow_id,
        machine.run_id,
        type(exc).__name__,
        exc,
        type(machine.outcome).__name__,
    )


def is_infrastructure(exc: BaseException) -> bool:
    """Faults that may go away by themselves: retried with backoff, never parked.

    A permission the server refuses is not one of them (it is a ``PermissionError``, an
    ``OSError``): it fails the same way until an operator changes the user's permissions, so
    it parks like any deterministic fault, naming the subject refused.
    """
    if isinstance(exc, StorePermissionDenied):
        return False
    return isinstance(exc, StoreUnavailable | ConcurrencyConflict | OSError | TimeoutError)


def crash_signature(exc: BaseException) -> str:
    """Two crashes with the same signature failed the same way."""
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


@attrs.define(eq=False)
class CrashTracker:
    """Counts one workflow id's consecutive crashes that fail the same way at the same point.

    A crash at another point of the history (the run got further, or it is another run) or
    with another signature starts the count again.
    """

    signature: str | None = None
    position: tuple[str | None, int] | None = None
    count: int = 0

    def record(self, signature: str, position: tuple[str | None, int]) -> int:
        """Note one crash; return how many times in a row it failed this way."""
        if signature == self.signature and position == self.position:
            self.count += 1
        else:
            self.signature, self.position, self.count = signature, position, 1
        return self.count
