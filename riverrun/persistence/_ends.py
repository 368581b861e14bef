"""Chain-end announcements within one process (the memory backend's, and the default).

Every listener of the backend is told, in the announcing task, before ``announce`` returns.
Runtimes that share one memory backend (a client runtime and a worker runtime in a test) hear
each other's announcements, as processes sharing a NATS namespace do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["LocalChainEnds"]

_log = logging.getLogger("riverrun.persistence")


class LocalChainEnds:
    """``ChainEnds`` in process memory."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[str], None]] = []

    def __repr__(self) -> str:
        return f"<LocalChainEnds listeners={len(self._listeners)}>"

    async def announce(self, workflow_id: str) -> None:
        for on_end in list(self._listeners):
            try:
                on_end(workflow_id)
            except Exception:  # a listener's fault is its own: the others still hear it
                _log.exception("a chain-end listener failed on workflow %s", workflow_id)

    async def listen(self, on_end: Callable[[str], None]) -> None:
        self._listeners.append(on_end)
