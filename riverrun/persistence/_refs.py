"""Payload references: ``sha256:<hex>``, the content address every payload store uses."""

from __future__ import annotations

import hashlib
import re

import anyio.to_thread

from .._errors import NotFoundInStore

__all__ = ["check_payload_ref", "payload_ref", "payload_ref_async"]

_REF = re.compile(r"sha256:[0-9a-f]{64}")
#: hash larger payloads in a worker thread so the event loop keeps running
_THREAD_THRESHOLD = 1024 * 1024


def payload_ref(data: bytes) -> str:
    """The reference of ``data``: ``sha256:`` and its hex digest."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def payload_ref_async(data: bytes) -> str:
    """``payload_ref``, hashing large payloads off the event loop."""
    if len(data) < _THREAD_THRESHOLD:
        return payload_ref(data)
    return await anyio.to_thread.run_sync(payload_ref, data)


def check_payload_ref(ref: str) -> str:
    """Return the hex digest of ``ref``.

    Raises:
        NotFoundInStore: ``ref`` is not a ``sha256:<64 hex>`` reference (so it cannot be in
            any payload store).
    """
    if not isinstance(ref, str) or _REF.fullmatch(ref) is None:
        raise NotFoundInStore(f"{ref!r} is not a payload reference (expected sha256:<hex>)")
    return ref.removeprefix("sha256:")
