"""The in-memory run store: run records and chain heads with compare-and-set.

Design note: revisions come from one counter shared by every key, like the revisions of a
JetStream KV bucket (its stream sequence), so a revision never repeats even after a delete.
With a codec, records are round-tripped through it on ``put_run``, so a result the codec
cannot carry fails here exactly as it would against a real store.
"""

from __future__ import annotations

from typing import TypeVar

import anyio.lowlevel

from .._errors import ConcurrencyConflict
from ._clock import SystemClock
from ._codec import Codec
from ._model import ChainHead, RunStatus, Versioned, WorkflowRun
from ._protocols import Clock

__all__ = ["MemoryRunStore"]

T = TypeVar("T")


class MemoryRunStore:
    """``RunStore`` kept in process memory.

    Args:
        clock: kept for compatibility (records carry their own times).
        codec: if given, every record is encoded and decoded on ``put_run``/``put_head``.
    """

    def __init__(self, *, clock: Clock | None = None, codec: Codec | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._codec = codec
        self._revision = 0
        self._runs: dict[str, Versioned[WorkflowRun]] = {}
        self._heads: dict[str, Versioned[ChainHead]] = {}

    def __repr__(self) -> str:
        return (
            f"<MemoryRunStore runs={len(self._runs)} heads={len(self._heads)}>"
        )

    # -- runs ------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Versioned[WorkflowRun] | None:
        """The run record and its revision, or ``None``."""
        await anyio.lowlevel.checkpoint()
        return self._runs.get(run_id)

    async def put_run(self, run: WorkflowRun, *, expected_revision: int | None) -> int:
        """Create (``expected_revision=None``) or compare-and-set a run record."""
        await anyio.lowlevel.checkpoint()
        run = self._roundtrip(run, f"run record {run.run_id}")
        return self._cas(self._runs, run.run_id, run, expected_revision, "run record")

    async def delete_run(self, run_id: str) -> None:
        """Remove a run record (nothing happens if there is none)."""
        await anyio.lowlevel.checkpoint()
        self._runs.pop(run_id, None)

    async def list_runs(
        self, *, workflow_id: str | None = None, status: RunStatus | None = None
    ) -> list[WorkflowRun]:
        """Records matching the filters, oldest ``created_at`` first (ties: oldest write)."""
        await anyio.lowlevel.checkpoint()
        runs = [
            v.value
            for v in self._runs.values()
            if (workflow_id is None or v.value.workflow_id == workflow_id)
            and (status is None or v.value.status == status)
        ]
        return sorted(runs, key=lambda run: run.created_at)

    # -- chain heads -----------------------------------------------------------------------

    async def get_head(self, workflow_id: str) -> Versioned[ChainHead] | None:
        """The chain head of ``workflow_id`` and its revision, or ``None``."""
        await anyio.lowlevel.checkpoint()
        return self._heads.get(workflow_id)

    async def put_head(self, head: ChainHead, *, expected_revision: int | None) -> int:
        """Create or compare-and-set a chain head, as ``put_run``."""
        await anyio.lowlevel.checkpoint()
        head = self._roundtrip(head, f"chain head {head.workflow_id}")
        return self._cas(self._heads, head.workflow_id, head, expected_revision, "chain head")

    async def delete_head(self, workflow_id: str) -> None:
        """Remove a chain head (nothing happens if there is none)."""
        await anyio.lowlevel.checkpoint()
        self._heads.pop(workflow_id, None)

    # -- internals -------------------------------------------------------------------------

    def _next(self) -> int:
        self._revision += 1
        return self._revision

    def _roundtrip(self, value: T, what: str) -> T:
        if self._codec is None:
            return value
        decoded: T = self._codec.loads(self._codec.dumps(value, what=what), what=what)
        return decoded

    def _cas(
        self,
        table: dict[str, Versioned[T]],
        key: str,
        value: T,
        expected_revision: int | None,
        what: str,
    ) -> int:
        current = table.get(key)
        if expected_revision is None and current is not None:
            raise ConcurrencyConflict(
                f"{what} {key!r} already exists (revision {current.revision}); "
                "read it and update it with its revision"
            )
        if expected_revision is not None:
            if current is None:
                raise ConcurrencyConflict(
                    f"{what} {key!r} does not exist (expected revision {expected_revision}); "
                    "create it with expected_revision=None"
                )
            if current.revision != expected_revision:
                raise ConcurrencyConflict(
                    f"{what} {key!r} is at revision {current.revision}, not "
                    f"{expected_revision}; another writer updated it first — reload and retry"
                )
        revision = self._next()
        table[key] = Versioned(value=value, revision=revision)
        return revision
