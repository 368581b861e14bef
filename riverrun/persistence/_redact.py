"""Scrubbing secrets out of server URLs before they reach a message, a ``repr`` or a log line.

NATS takes credentials in the URL (``nats://user:password@host``, ``nats://token@host``), and
URLs end up in every "cannot reach NATS at ..." message. Every place that shows a URL passes
it through :func:`redact_url` first; it works on any text, so a whole message (with one URL,
a comma-separated list, or a foreign error quoting one) can be scrubbed in one call.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REDACTED", "redact_url"]

#: what a secret is replaced with
REDACTED: Final = "***"

# scheme://userinfo@ — the userinfo runs up to the *last* "@" before the host (a password
# may hold an unescaped "@"), but never across a "/", whitespace or a comma (the next URL).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s,?#]*)@")


def redact_url(text: str) -> str:
    """``text`` with the secret of every ``scheme://...@`` URL in it replaced by ``***``.

    ``nats://alice:s3cret@host:4222`` becomes ``nats://alice:***@host:4222`` (the user name
    helps an operator and is not a secret); ``nats://t0ken@host`` becomes ``nats://***@host``.
    Text without such URLs is returned unchanged.
    """
    if "@" not in text:
        return text
    return _USERINFO.sub(_scrub, text)


def _scrub(match: re.Match[str]) -> str:
    user, colon, _password = match["userinfo"].partition(":")
    if colon:
        return f"{match['scheme']}{user}:{REDACTED}@"
    return f"{match['scheme']}{REDACTED}@"
