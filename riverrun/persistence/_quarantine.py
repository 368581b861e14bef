"""The quarantine: where a message nobody can use goes instead of taking anything down.

Design note. A message riverrun cannot decode or use (garbage on an inbox subject, a foreign
message on a run's event subject, a signal without a name) is skipped, never raised: one bad
message must end at most its own handling. Whoever skips it reports it here; the report logs
exactly one ERROR line naming the subject, stream sequence and reason (and the workflow id and
run id where known), counts it, and keeps the last few for operators
(``Worker.statistics().quarantined``, ``Worker.quarantine``). The same message seen again
(every replay reads a run's foreign messages again, every inbox read its unusable ones until
the cursor passes them) is neither logged nor counted twice.

One ``Quarantine`` belongs to one backend (``Backend.quarantine``), so that the stores, which
meet foreign data first, and the runtime, which finds unusable messages, report to one place.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime

import attrs

__all__ = ["Quarantine", "QuarantinedMessage"]

log = logging.getLogger("riverrun.quarantine")

#: how many message keys are remembered for "seen already" (oldest forgotten first)
_SEEN_MAX = 10_000
#: for how many workflow ids reports wait at most for an instance to note them
_UNNOTED_MAX = 1_000


def _now() -> datetime:
    return datetime.now(UTC)


@attrs.frozen(kw_only=True)
class QuarantinedMessage:
    """One message skipped because it could not be decoded or used."""

    #: where it was stored (a NATS subject; ``inbox:<workflow id>`` on the memory backend)
    subject: str
    #: its stream sequence (the inbox sequence on the memory backend)
    sequence: int
    #: why it was skipped
    reason: str
    #: the workflow it was addressed to, where known
    workflow_id: str | None = None
    #: the run that skipped it, where known
    run_id: str | None = None
    at: datetime = attrs.field(factory=_now)


class Quarantine:
    """Counts and remembers quarantined messages (one per backend).

    Args:
        keep: how many of the most recent reports ``recent()`` returns.
    """

    def __init__(self, *, keep: int = 100) -> None:
        self._recent: deque[QuarantinedMessage] = deque(maxlen=keep)
        self._seen: dict[tuple[str, int], None] = {}
        self._unnoted: dict[str, list[QuarantinedMessage]] = {}
        self.count = 0

    def __repr__(self) -> str:
        return f"<Quarantine count={self.count}>"

    def report(self, message: QuarantinedMessage) -> bool:
        """Log and count ``message`` unless it was reported before; True if it is new."""
        key = (message.subject, message.sequence)
        if key in self._seen:
            return False
        if len(self._seen) >= _SEEN_MAX:
            for old in list(self._seen)[: _SEEN_MAX // 2]:
                del self._seen[old]
        self._seen[key] = None
        self.count += 1
        self._recent.append(message)
        if message.workflow_id is not None:
            if len(self._unnoted) >= _UNNOTED_MAX and message.workflow_id not in self._unnoted:
                # never taken (no instance of that workflow ran here): forget the oldest
                del self._unnoted[next(iter(self._unnoted))]
            self._unnoted.setdefault(message.workflow_id, []).append(message)
        log.error(
            "quarantined message %s #%d (workflow %s, run %s): %s",
            message.subject,
            message.sequence,
            message.workflow_id if message.workflow_id is not None else "unknown",
            message.run_id or "unknown",
            message.reason,
        )
        return True

    def recent(self) -> list[QuarantinedMessage]:
        """The most recent reports, oldest first."""
        return list(self._recent)

    def has_unnoted(self, workflow_id: str) -> bool:
        """Whether reports about ``workflow_id`` wait to be taken (cheap: a dict lookup)."""
        return workflow_id in self._unnoted

    def take_unnoted(self, workflow_id: str) -> list[QuarantinedMessage]:
        """Reports about ``workflow_id`` not yet taken (to write as operator notes)."""
        return self._unnoted.pop(workflow_id, [])
