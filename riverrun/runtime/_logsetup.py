"""``configure_logging``: riverrun's log lines as text or JSON, with the workflow context.

The runtime only logs through the standard library and configures nothing by itself (a
library must not); ``riverrun worker`` calls :func:`configure_logging`, and an application
that embeds a runtime may too, or attach :class:`LogContextFilter` to its own handlers.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from ._logcontext import CONTEXT_FIELDS, LogContextFilter, install_context_filter

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "JsonFormatter", "TextFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: attributes every LogRecord has: anything else on a record came from ``extra=`` (or a filter)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    the context fields (``null`` where they do not apply), the fields a call passed with
    ``extra=``, and ``exc_info`` / ``stack_info`` as strings when present."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in CONTEXT_FIELDS:
            document[name] = fields.get(name)
        for name, value in fields.items():
            if name not in _STANDARD and name not in document:
                document[name] = value
        if record.exc_info:
            document["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exc_info"] = record.exc_text
        if record.stack_info:
            document["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z WARNING riverrun.workflow: message wf=<id> run=<id> ...``:
    the context fields that apply, after the message; then the traceback, if any."""

    _SHORT = (
        ("workflow_id", "wf"),
        ("run_id", "run"),
        ("execution", "execution"),
        ("step", "step"),
        ("attempt", "attempt"),
    )

    def format(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        context = " ".join(
            f"{short}={fields[name]}" for name, short in self._SHORT if fields.get(name) is not None
        )
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if context:
            line = f"{line}  {context}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class _RiverrunHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure_logging installs (and replaces when called again)."""


def configure_logging(
    *,
    level: int | str = "INFO",
    format: Literal["text", "json"] = "text",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send log records to ``stream`` (default stderr) as text lines or JSON objects.

    Installs one handler on the root logger (replacing the one an earlier call installed),
    with :class:`LogContextFilter`, so that every record, riverrun's and your own, carries
    ``workflow_id``, ``run_id``, ``execution``, ``step`` and ``attempt`` when it is logged
    on behalf of a workflow; sets the root logger's level to ``level``.

    Args:
        level: a level name (``"DEBUG"``, ``"INFO"``, ``"WARNING"``, ``"ERROR"``,
            ``"CRITICAL"``) or number.
        format: ``"text"`` (one readable line, the context as ``wf=... run=...``) or
            ``"json"`` (one JSON object per line).
        stream: where to write; stderr by default.

    Returns:
        The handler installed.

    Raises:
        ValueError: an unknown level or format.
    """
    if isinstance(level, str):
        if level.upper() not in LOG_LEVELS:
            raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
        number = logging.getLevelNamesMapping()[level.upper()]
    elif isinstance(level, int) and not isinstance(level, bool):
        number = level
    else:
        raise ValueError(f"log level must be a level name or number, not {level!r}")
    if format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {format!r}: use 'text' or 'json'")
    handler = _RiverrunHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    handler.addFilter(LogContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RiverrunHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
    install_context_filter()
    return handler
