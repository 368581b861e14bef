"""Keep a stored message's own ``Status`` header from passing for a server status.

Design note. nats-py parses the status a server puts inline on its header line
(``NATS/1.0 100 Idle Heartbeat``) into the header keys ``Status`` and ``Description``: the
same keys anyone may set on a message they publish. A stored message with an empty body and
``Status: 100`` then passes for a heartbeat or a flow-control request. An ordered consumer
drops such a message without counting it, finds the next message out of sequence, resets
itself to redeliver from the dropped one, drops it again, and so on for ever: one foreign
publish made the worker's inbox watch deaf. So on riverrun's connections a ``Status`` or
``Description`` header that did not come from the inline status line is renamed
(``Rr-Stored-Status``, ``Rr-Stored-Description``) as the message is parsed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient

__all__ = ["guard_status_headers"]

_HEADER_LINE = b"NATS/1.0"
_RENAMED = (("Status", "Rr-Stored-Status"), ("Description", "Rr-Stored-Description"))


def guard_status_headers(nc: NatsClient) -> None:
    """Make ``nc`` rename stored ``Status``/``Description`` headers (idempotent)."""
    original: Callable[[Any], Awaitable[dict[str, str] | None]] | None = getattr(
        nc, "_process_headers", None
    )
    if original is None or getattr(original, "_riverrun_guarded", False):
        return

    async def process_headers(headers: Any) -> dict[str, str] | None:
        parsed = await original(headers)
        if parsed and not _inline_status(headers):
            for key, renamed in _RENAMED:
                if key in parsed:
                    parsed[renamed] = parsed.pop(key)
        return parsed

    process_headers._riverrun_guarded = True  # type: ignore[attr-defined]
    nc._process_headers = process_headers  # type: ignore[method-assign]


def _inline_status(headers: Any) -> bool:
    """``NATS/1.0 <status>...``: the server's own status line (a space after the version)."""
    return bool(headers) and len(headers) > len(_HEADER_LINE) and headers[len(_HEADER_LINE)] == 0x20
