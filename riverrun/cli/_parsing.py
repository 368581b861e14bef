"""Parsing what users type: JSON arguments, dates, durations, server lists.

Each parser raises :class:`CliError` with exit code 2 and a message that says where the input
went wrong (line and column for JSON), so a typo never becomes a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ._exit import CliError, ExitCode

__all__ = [
    "parse_call_arguments",
    "parse_datetime",
    "parse_json",
    "parse_servers",
]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_JSON_WORDS = frozenset({"true", "false", "null"})
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_json(text: str, *, what: str) -> Any:
    """Decode ``text`` as JSON; on error, say where (line, column) and show the spot.

    ``@path`` reads the JSON from a file and ``@-`` from standard input (for values too
    large for a command line, which the OS caps at 128 KiB per argument).
    """
    if text.startswith("@"):
        source = text[1:]
        what = f"{what} ({'stdin' if source == '-' else source})"
        text = _read_source(source, what=what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(_json_error(text, exc, what=what), exit_code=ExitCode.USAGE) from None


def _read_source(source: str, *, what: str) -> str:
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"cannot read {what}: {reason}", exit_code=ExitCode.USAGE) from None


def _json_error(text: str, exc: json.JSONDecodeError, *, what: str) -> str:
    message = f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    lines = text.splitlines()
    if 0 < exc.lineno <= len(lines):
        line = lines[exc.lineno - 1]
        start = max(0, exc.colno - 1 - 15)
        snippet = line[start : exc.colno - 1 + 15]
        if snippet.strip():
            message += f", near {snippet!r}"
    stripped = text.strip()
    if stripped and stripped[0] not in '[{"-0123456789' and stripped not in _JSON_WORDS:
        message += f"; to pass a string, quote it as JSON: '\"{stripped}\"'"
    return message


def parse_call_arguments(
    args_text: str | None, kwargs_text: str | None
) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments of ``riverrun start``.

    ``args_text`` is a JSON list (positional arguments), a JSON object (keyword arguments) or
    any other JSON value (one positional argument). ``kwargs_text`` must be a JSON object.
    A keyword given in both is an error.
    """
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if args_text is not None:
        value = parse_json(args_text, what="ARGS")
        if isinstance(value, list):
            args = value
        elif isinstance(value, dict):
            kwargs = value
        else:
            args = [value]
    if kwargs_text is not None:
        extra = parse_json(kwargs_text, what="--kwargs")
        if not isinstance(extra, dict):
            raise CliError(
                f"--kwargs must be a JSON object like '{{\"offset\": 0}}', "
                f"not a {_json_type(extra)}",
                exit_code=ExitCode.USAGE,
            )
        twice = sorted(set(kwargs) & set(extra))
        if twice:
            raise CliError(
                f"keyword argument(s) given both in ARGS and --kwargs: {', '.join(twice)}",
                exit_code=ExitCode.USAGE,
            )
        kwargs.update(extra)
    return args, kwargs


def parse_datetime(text: str, *, now: datetime | None = None) -> datetime:
    """An aware datetime from ISO 8601 (``2025-01-15``, ``2025-01-15T10:30:00Z``) or an age
    relative to ``now`` (``30m``, ``12h``, ``7d``, ``2w`` mean that long ago).

    A date or datetime without a time zone is taken in the local time zone.
    """
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return (now or datetime.now(UTC)) - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"{text!r} is not a date: use ISO 8601 (2025-01-15, 2025-01-15T10:30:00Z) "
            f"or an age such as 30m, 12h, 7d, 2w",
            exit_code=ExitCode.USAGE,
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, made explicit
    return parsed


def parse_servers(text: str) -> list[str]:
    """``nats://a:4222,nats://b:4222`` (commas or spaces) as a list of URLs.

    A bare ``host:port`` gets the ``nats://`` scheme.
    """
    servers = [s for s in re.split(r"[,\s]+", text.strip()) if s]
    if not servers:
        raise CliError("--servers is empty", exit_code=ExitCode.USAGE)
    return [s if "://" in s else f"nats://{s}" for s in servers]


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__
