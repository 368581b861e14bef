"""``runs logs --filter``: matching event types the way a user types them.

Event types are dotted strings (``step.completed``, ``workflow.continued_as_new``). Users type
``continued``, ``step_completed``, ``STEP_COMPLETED``, ``step.completed`` or ``step``, and all
of them should match what they obviously mean. Both sides are normalised (lower case; ``_``,
``-``, ``.`` and spaces all become ``.``), then the filter matches when it is a substring of the
type, which covers exact names, prefixes (``step``) and suffixes (``completed``).
A filter with ``*`` or ``?`` is a glob over the dotted name instead (``workflow.*``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

__all__ = ["EventFilter", "normalise_event_type"]

_SEPARATORS = re.compile(r"[._\-\s]+")


def normalise_event_type(text: str) -> str:
    """``Workflow_Continued-As.New`` → ``workflow.continued.as.new``."""
    return _SEPARATORS.sub(".", text.strip().lower()).strip(".")


class EventFilter:
    """Matches event types against any of several user-typed patterns (logical or).

    An empty filter matches everything.
    """

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        pairs = ((raw, normalise_event_type(raw)) for raw in patterns)
        self._pairs: tuple[tuple[str, str], ...] = tuple((r, p) for r, p in pairs if p)
        self._patterns = tuple(p for _, p in self._pairs)

    @property
    def patterns(self) -> tuple[str, ...]:
        return self._patterns

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def __repr__(self) -> str:
        return f"EventFilter({[raw for raw, _ in self._pairs]!r})"

    def matches(self, event_type: str) -> bool:
        if not self._patterns:
            return True
        name = normalise_event_type(event_type)
        return any(_match(pattern, name) for pattern in self._patterns)

    def unmatched(self, known_types: Sequence[str]) -> list[str]:
        """The patterns (as typed) that match none of ``known_types``: probably typos."""
        return [
            raw
            for raw, pattern in self._pairs
            if not any(_match(pattern, normalise_event_type(t)) for t in known_types)
        ]


def _match(pattern: str, name: str) -> bool:
    if "*" in pattern or "?" in pattern:
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name
