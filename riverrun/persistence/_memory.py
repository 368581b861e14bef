"""The memory backend: every store in process memory, for unit tests and ``riverrun.testing``.

``open_memory_backend`` is the entry point; it owns the task that fires the inbox's timers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel

from .._errors import NotFoundInStore
from ._backend import Backend
from ._clock import SystemClock
from ._codec import Codec
from ._memory_inbox import MemoryInbox
from ._memory_log import MemoryEventLog
from ._memory_owners import MemoryOwnershipStore
from ._memory_runs import MemoryRunStore
from ._protocols import Clock
from ._refs import check_payload_ref, payload_ref_async

__all__ = ["MemoryPayloadStore", "MemorySnapshotStore", "open_memory_backend"]


class MemoryPayloadStore:
    """``PayloadStore`` kept in process memory, content-addressed by SHA-256."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"<MemoryPayloadStore payloads={len(self._blobs)}>"

    async def put(self, data: bytes) -> str:
        """Store ``data``; return ``sha256:<hex>``. Storing the same bytes again is a no-op."""
        data = bytes(data)
        ref = await payload_ref_async(data)
        self._blobs.setdefault(ref, data)
        return ref

    async def get(self, ref: str) -> bytes:
        """The payload of ``ref``; raises ``NotFoundInStore`` if there is none."""
        await anyio.lowlevel.checkpoint()
        check_payload_ref(ref)
        try:
            return self._blobs[ref]
        except KeyError:
            raise NotFoundInStore(f"payload {ref} is not in the store") from None

    async def delete(self, ref: str) -> None:
        """Remove the payload (nothing happens if there is none)."""
        await anyio.lowlevel.checkpoint()
        self._blobs.pop(ref, None)

    async def exists(self, ref: str) -> bool:
        """Whether the store holds ``ref``."""
        await anyio.lowlevel.checkpoint()
        return ref in self._blobs


class MemorySnapshotStore:
    """``SnapshotStore`` kept in process memory."""

    def __init__(self) -> None:
        self._snapshots: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"<MemorySnapshotStore snapshots={len(self._snapshots)}>"

    async def put(self, key: str, data: bytes) -> None:
        """Store (or overwrite) the snapshot ``key``."""
        await anyio.lowlevel.checkpoint()
        self._snapshots[key] = bytes(data)

    async def get(self, key: str) -> bytes | None:
        """The snapshot ``key``, or ``None``."""
        await anyio.lowlevel.checkpoint()
        return self._snapshots.get(key)

    async def delete(self, key: str) -> None:
        """Remove the snapshot (nothing happens if there is none)."""
        await anyio.lowlevel.checkpoint()
        self._snapshots.pop(key, None)


@asynccontextmanager
async def open_memory_backend(
    *, codec: Codec | None = None, clock: Clock | None = None, partitions: int | None = None
) -> AsyncIterator[Backend]:
    """Open a backend whose stores all live in this process's memory.

    Events, run records and inbox messages go through ``codec`` (so non-encodable data fails
    as it would on a real backend); schedules fire per ``clock``, which may be virtual.

    Args:
        codec: the codec for events and records (default: a fresh ``Codec()``).
        clock: the time source for leases, timers and message timestamps (default: the
            system clock).
        partitions: partitions per queue (default 16).

    Yields:
        The backend; its timer task stops when the block exits.
    """
    codec = codec if codec is not None else Codec()
    clock = clock if clock is not None else SystemClock()
    owners = MemoryOwnershipStore(clock=clock)
    count = await owners.partitions(partitions)
    inbox = MemoryInbox(clock, codec=codec, partitions=count)
    backend = Backend(
        name="memory",
        events=MemoryEventLog(codec),
        runs=MemoryRunStore(clock=clock, codec=codec),
        inbox=inbox,
        payloads=MemoryPayloadStore(),
        snapshots=MemorySnapshotStore(),
        clock=clock,
        owners=owners,
        partitions=count,
    )
    # An error raised by the caller's block must reach the caller as itself, not wrapped in an
    # ExceptionGroup by our task group: hold it until the group has closed, then re-raise.
    body_error: Exception | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(inbox.run_timers)
        try:
            yield backend
        except Exception as exc:
            body_error = exc
        finally:
            tg.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
