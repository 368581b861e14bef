"""Runtime settings: history limits, claim-check threshold, retention, leases."""

from __future__ import annotations

import re
from datetime import timedelta

import attrs

from ..persistence import check_queue
from ._machine import HistoryLimits

__all__ = ["Retention", "RuntimeOptions", "validate_workflow_id"]

#: the characters a workflow id may use (fullmatch: "$" would also accept a trailing newline)
_ID = re.compile(r"[A-Za-z0-9_\-:.@=+/]{1,200}")
MAX_WORKFLOW_ID = 200


def validate_workflow_id(workflow_id: str) -> str:
    """``workflow_id`` if it is a valid id, else ``ValueError`` saying what is allowed."""
    if not isinstance(workflow_id, str) or not _ID.fullmatch(workflow_id):
        raise ValueError(
            f"invalid workflow_id {workflow_id!r}: use 1-200 characters from letters, digits "
            "and _ - : . @ = + /"
        )
    return workflow_id


def _queues(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = (value,)
    queues = tuple(check_queue(q) for q in value)  # type: ignore[attr-defined]
    if not queues:
        raise ValueError("queues must name at least one queue (or be None)")
    return tuple(dict.fromkeys(queues))


@attrs.frozen(kw_only=True)
class Retention:
    """Which earlier runs of a chain keep their full history after continue-as-new.

    By default (``keep_last=0``, ``keep_newer_than=None``) every earlier run is truncated to
    its terminal ``workflow.continued_as_new`` event, the chain link. ``keep_last=N`` keeps
    the full history of the N runs before the current one; ``keep_newer_than`` keeps runs that
    ended less than that long ago. The current run is never truncated.
    """

    keep_last: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    keep_newer_than: timedelta | None = None


@attrs.frozen(kw_only=True)
class RuntimeOptions:
    """Settings shared by the runtime's worker and client."""

    namespace: str = "default"
    history_limits: HistoryLimits = attrs.field(factory=HistoryLimits)
    #: arguments, results and signal payloads larger than this go to the payload store
    payload_threshold: int = 256 * 1024
    retention: Retention = attrs.field(factory=Retention)
    #: a worker holds a partition for this long without renewing before another may take it
    #: (renewed every third of it); also how long a dead worker's membership lasts
    lease_ttl: timedelta = timedelta(seconds=30)
    #: partitions per queue: a namespace setting stored once (``None``: what the namespace
    #: has, 16 for a new one); a different number than the stored one is an error
    partitions: int | None = None
    #: the queues this runtime's worker serves (``None``: the queues of the workflows it
    #: registers, ``default`` if it registers none)
    queues: tuple[str, ...] | None = attrs.field(default=None, converter=_queues)
    #: drop an idle workflow (waiting on a timer/signal/child) from memory after this long
    passivate_after: timedelta | None = timedelta(seconds=60)
    #: backoff between restarts of a workflow actor after an infrastructure fault
    restart_backoff: float = 0.05
    restart_backoff_max: float = 5.0
    #: a workflow that crashes this many times in a row the same way (same error, same point
    #: of its history) is parked instead of restarted; infrastructure faults never park it
    park_after_failures: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    #: steps that run at once on a worker, across all its workflows (those in flight together
    #: in one workflow run concurrently; past this they wait their turn)
    max_concurrent_steps: int = attrs.field(default=100, validator=attrs.validators.ge(1))
