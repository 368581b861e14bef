"""Names on JetStream: streams, buckets, subjects, headers, and the id escaping they share.

Design note: a workflow id or run id becomes exactly one subject token (and one KV key
token), so ``rr.<ns>.ev.<workflow_id>.<run_id>`` can never be confused with another run's
subject however the ids are spelled. Letters, digits, ``_`` and ``-`` stay as they are (the
common case costs nothing and stays readable in ``nats stream view``); every other UTF-8 byte
becomes ``=XX`` (upper-case hex). ``=`` is legal both in subjects and in KV keys, and since it
is always escaped itself the encoding is reversible. The empty string is ``=``.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

__all__ = [
    "HDR_EXPECTED_LAST_SUBJECT_SEQ",
    "HDR_KIND",
    "HDR_LAST_ID",
    "HDR_MARKER",
    "HDR_MSG_ID",
    "HDR_SEQ",
    "HDR_TIMESTAMP",
    "HDR_TYPE",
    "Names",
    "check_namespace",
    "escape_token",
    "unescape_token",
]

_SAFE: Final = re.compile(r"[A-Za-z0-9_-]+")
_NAMESPACE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

# NATS headers riverrun relies on
HDR_MSG_ID: Final = "Nats-Msg-Id"
HDR_EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
# riverrun's own headers (short: they are on every event)
HDR_SEQ: Final = "Rr-Seq"  # the per-run sequence of an event
HDR_TYPE: Final = "Rr-Type"  # the event type, for tools; the envelope in the body is the truth
HDR_MARKER: Final = "Rr-Marker"  # a truncation marker, not an event
HDR_LAST_ID: Final = "Rr-Last-Id"  # on a marker: the Msg-Id of the last event it replaced
HDR_KIND: Final = "Rr-Kind"  # an inbox message's kind
HDR_TIMESTAMP: Final = "Rr-Ts"  # an inbox message's timestamp (ISO 8601)


def escape_token(value: str) -> str:
    """Escape ``value`` into one subject token / KV key token (reversibly)."""
    if _SAFE.fullmatch(value):
        return value
    if not value:
        return "="
    out: list[str] = []
    for char in value:
        if _SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode())
    return "".join(out)


def unescape_token(token: str) -> str:
    """Invert :func:`escape_token`."""
    if "=" not in token:
        return token
    if token == "=":
        return ""
    raw = bytearray()
    i = 0
    while i < len(token):
        char = token[i]
        if char == "=":
            pair = token[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in "0123456789ABCDEFabcdef" for c in pair):
                raise ValueError(f"bad escape {token[i : i + 3]!r} in {token!r}")
            raw.append(int(pair, 16))
            i += 3
        else:
            raw.extend(char.encode())
            i += 1
    return raw.decode()


def check_namespace(namespace: str) -> str:
    """Validate a namespace: 1-64 characters of ``[A-Za-z0-9_-]``.

    Stream names upper-case it (and turn ``-`` into ``_``); two namespaces that differ only
    there share stream names but not subjects, which ``IncompatibleStoreConfig`` reports.
    """
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"namespace must be 1-64 characters of letters, digits, '_' or '-', got {namespace!r}"
        )
    return namespace


@attrs.frozen
class Names:
    """Every stream, bucket and subject name of one namespace."""

    namespace: str

    @property
    def _upper(self) -> str:
        return self.namespace.upper().replace("-", "_")

    # streams and buckets (stream names must not contain '.', '*', '>', spaces)
    @property
    def events_stream(self) -> str:
        return f"RIVERRUN_{self._upper}_EVENTS"

    @property
    def inbox_stream(self) -> str:
        return f"RIVERRUN_{self._upper}_INBOX"

    @property
    def runs_bucket(self) -> str:
        return f"RIVERRUN_{self._upper}_RUNS"

    @property
    def heads_bucket(self) -> str:
        return f"RIVERRUN_{self._upper}_HEADS"

    @property
    def leases_bucket(self) -> str:
        return f"RIVERRUN_{self._upper}_LEASES"

    @property
    def payloads_bucket(self) -> str:
        return f"RIVERRUN_{self._upper}_PAYLOADS"

    @property
    def snapshots_bucket(self) -> str:
        return f"RIVERRUN_{self._upper}_SNAPSHOTS"

    # subjects
    @property
    def events_filter(self) -> str:
        return f"rr.{self.namespace}.ev.>"

    @property
    def inbox_filter(self) -> str:
        return f"rr.{self.namespace}.in.>"

    @property
    def schedules_filter(self) -> str:
        return f"rr.{self.namespace}.sched.>"

    def events_subject(self, workflow_id: str, run_id: str) -> str:
        return f"rr.{self.namespace}.ev.{escape_token(workflow_id)}.{escape_token(run_id)}"

    def inbox_subject(self, workflow_id: str, queue: str = "default", partition: int = 0) -> str:
        """``rr.<ns>.in.<queue>.<partition>.<workflow_id>``: a partition's consumer filters
        ``rr.<ns>.in.<queue>.<partition>.*``."""
        return f"rr.{self.namespace}.in.{queue}.{partition}.{escape_token(workflow_id)}"

    def inbox_partition_filter(self, queue: str, partition: int) -> str:
        return f"rr.{self.namespace}.in.{queue}.{partition}.*"

    @property
    def index_bucket(self) -> str:
        return f"RIVERRUN_{self._upper}_INDEX"

    def schedule_subject(self, workflow_id: str, timer_id: str) -> str:
        return f"rr.{self.namespace}.sched.{escape_token(workflow_id)}.{escape_token(timer_id)}"

    def workflow_of_inbox_subject(self, subject: str) -> str:
        """The workflow id an ``rr.<ns>.in.<queue>.<partition>.<token>`` subject addresses."""
        return self.parse_inbox_subject(subject)[2]

    def parse_inbox_subject(self, subject: str) -> tuple[str, int, str]:
        """``(queue, partition, workflow_id)`` of an inbox subject.

        Raises:
            ValueError: ``subject`` is not one riverrun would write (another shape, a bad or
                non-canonical escape): nobody reads such a subject's messages.
        """
        prefix = f"rr.{self.namespace}.in."
        rest = subject[len(prefix) :] if subject.startswith(prefix) else ""
        parts = rest.split(".")
        if len(parts) != 3 or not all(parts) or not parts[1].isdigit():
            raise ValueError(
                f"{subject!r} is not an inbox subject ({prefix}<queue>.<partition>.<workflow id>)"
            )
        queue, partition, token = parts[0], int(parts[1]), parts[2]
        try:
            workflow_id = unescape_token(token)
        except ValueError as exc:  # a bad hex escape, or bytes that are not UTF-8
            raise ValueError(f"{subject!r} has a bad escape in its workflow id ({exc})") from exc
        if escape_token(workflow_id) != token:
            raise ValueError(
                f"{subject!r} is not how riverrun escapes workflow id {workflow_id!r}"
            )
        return queue, partition, workflow_id
