"""The JetStream run store: run records and chain heads in two KV buckets.

Design note: a KV revision is the bucket stream's sequence, so it only grows, even across
deletes, and it is exactly the compare-and-set token (``Nats-Expected-Last-Subject-Sequence``
on the key's subject). Keys are the escaped ids (see ``_jetstream_names``).

``list_runs`` scans the whole runs bucket (batch direct gets over its stream, which holds one
message per key) and filters client side: fine for thousands of runs, not for millions. An index
by workflow id (key ``<workflow>.<run>``) is the way out when that matters.
"""

from __future__ import annotations

from typing import Any, TypeVar

import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from .._errors import ConcurrencyConflict, IncompatibleStoreConfig, PersistenceError
from ._codec import Codec
from ._jetstream_conn import (
    WRONG_LAST_SEQUENCE,
    JetStreamConnection,
    JsApiError,
    translate_errors,
)
from ._jetstream_names import Names, escape_token
from ._model import ChainHead, RunStatus, Versioned, WorkflowRun
from ._protocols import Clock
from ._quarantine import Quarantine, QuarantinedMessage

__all__ = ["JetStreamRunStore", "open_kv_bucket"]

T = TypeVar("T")

_LIST_BATCH = 1000


async def open_kv_bucket(
    conn: JetStreamConnection, bucket: str, *, replicas: int, what: str
) -> KeyValue:
    """Create the bucket, or open it after checking its settings (history 1, direct gets,
    rollups, our replicas)."""
    with translate_errors(conn, f"open the {what} bucket {bucket}"):
        try:
            kv = await conn.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            return await conn.js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=1,
                    storage=StorageType.FILE,
                    replicas=replicas,
                    direct=True,  # reads and list_runs use direct gets
                )
            )
        status = await kv.status()
        config = status.stream_info.config
        wanted = {
            "num_replicas": replicas,
            "max_msgs_per_subject": 1,
            "allow_direct": True,
            "allow_rollup_hdrs": True,
        }
        differences = [
            f"{field} is {getattr(config, field)!r}, riverrun needs {want!r}"
            for field, want in wanted.items()
            if getattr(config, field) != want
        ]
        if differences:
            raise IncompatibleStoreConfig(
                f"the {what} bucket {bucket!r} at {conn.url} exists with settings riverrun "
                f"cannot use: {'; '.join(differences)}. Delete it (`nats kv rm {bucket}`, "
                "losing its data), or use another namespace (or other replicas)."
            )
        return kv


class JetStreamRunStore:
    """``RunStore`` on JetStream KV. Build it with ``open_jetstream_backend``."""

    def __init__(
        self,
        conn: JetStreamConnection,
        names: Names,
        codec: Codec,
        clock: Clock,
        *,
        runs: KeyValue,
        heads: KeyValue,
        quarantine: Quarantine | None = None,
    ) -> None:
        self._quarantine = quarantine if quarantine is not None else Quarantine()
        self._conn = conn
        self._names = names
        self._codec = codec
        self._clock = clock
        self._runs = runs
        self._heads = heads

    def __repr__(self) -> str:
        return f"<JetStreamRunStore {self._names.runs_bucket}>"

    # -- runs ------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Versioned[WorkflowRun] | None:
        """The run record and its revision, or ``None``."""
        return await self._get(self._runs, run_id, WorkflowRun, f"run record {run_id}")

    async def put_run(self, run: WorkflowRun, *, expected_revision: int | None) -> int:
        """Create (``expected_revision=None``) or compare-and-set a run record."""
        return await self._cas(
            self._runs, run.run_id, run, expected_revision, f"run record {run.run_id!r}"
        )

    async def delete_run(self, run_id: str) -> None:
        """Remove a run record (nothing happens if there is none)."""
        await self._purge(self._runs, run_id, f"delete run record {run_id}")

    async def list_runs(
        self, *, workflow_id: str | None = None, status: RunStatus | None = None
    ) -> list[WorkflowRun]:
        """Records matching the filters, oldest ``created_at`` first (a full scan)."""
        found: list[WorkflowRun] = []
        # The bucket keeps one message per key (history 1), so paging through every message
        # of the bucket's stream with batch direct gets visits each key's current value once.
        # (The KV watcher is avoided: its "initial values done" marker can race deliveries.)
        stream, filter_subject = f"KV_{self._names.runs_bucket}", f"$KV.{self._names.runs_bucket}.>"
        start = 1
        while True:
            with translate_errors(self._conn, "list run records"):
                msgs, pending = await self._conn.direct_batch(
                    stream, filter_subject, start_seq=start, batch=_LIST_BATCH
                )
            for msg in msgs:
                headers = msg.headers or {}
                if "KV-Operation" in headers or not msg.data:
                    continue  # a delete or purge marker
                subject = headers.get("Nats-Subject", msg.subject)
                try:
                    run = self._decode(msg.data, WorkflowRun, f"run record {subject}")
                except PersistenceError as exc:
                    # not riverrun's: one foreign write must not stop every worker's recovery
                    self._quarantine.report(
                        QuarantinedMessage(
                            subject=subject,
                            sequence=int(headers.get("Nats-Sequence", "0")),
                            reason=f"not a run record: {exc}",
                        )
                    )
                    continue
                if (workflow_id is None or run.workflow_id == workflow_id) and (
                    status is None or run.status == status
                ):
                    found.append(run)
            if not msgs or pending == 0:
                break
            start = int(headers["Nats-Sequence"]) + 1
        return sorted(found, key=lambda run: run.created_at)

    # -- chain heads -----------------------------------------------------------------------

    async def get_head(self, workflow_id: str) -> Versioned[ChainHead] | None:
        """The chain head of ``workflow_id`` and its revision, or ``None``."""
        return await self._get(self._heads, workflow_id, ChainHead, f"chain head {workflow_id}")

    async def put_head(self, head: ChainHead, *, expected_revision: int | None) -> int:
        """Create or compare-and-set a chain head, as ``put_run``."""
        return await self._cas(
            self._heads,
            head.workflow_id,
            head,
            expected_revision,
            f"chain head {head.workflow_id!r}",
        )

    async def delete_head(self, workflow_id: str) -> None:
        """Remove a chain head (nothing happens if there is none)."""
        await self._purge(self._heads, workflow_id, f"delete chain head {workflow_id}")

    # -- internals -------------------------------------------------------------------------

    async def _get_raw(self, kv: KeyValue, key: str) -> tuple[bytes, int] | None:
        return await self._conn.kv_get(self._bucket(kv), key)

    async def _get(self, kv: KeyValue, ident: str, cls: type[T], what: str) -> Versioned[T] | None:
        with translate_errors(self._conn, f"read {what}"):
            raw = await self._get_raw(kv, escape_token(ident))
        if raw is None:
            return None
        return Versioned(value=self._decode(raw[0], cls, what), revision=raw[1])

    def _bucket(self, kv: KeyValue) -> str:
        return self._names.runs_bucket if kv is self._runs else self._names.heads_bucket

    def _decode(self, data: bytes, cls: type[T], what: str) -> T:
        value: Any = self._codec.loads(data, what=what)
        if not isinstance(value, cls):
            raise PersistenceError(
                f"{what} holds a {type(value).__name__}, not a {cls.__name__}; the bucket "
                "was written by something other than riverrun"
            )
        return value

    async def _cas(
        self, kv: KeyValue, ident: str, value: Any, expected_revision: int | None, what: str
    ) -> int:
        data = self._codec.dumps(value, what=what)
        key = escape_token(ident)
        with translate_errors(self._conn, f"write {what}"):
            try:
                return await self._conn.kv_put(
                    self._bucket(kv), key, data, expected_revision=expected_revision
                )
            except JsApiError as exc:
                if exc.err_code not in WRONG_LAST_SEQUENCE:
                    raise
                if expected_revision is not None:
                    raise ConcurrencyConflict(
                        f"{what} is not at revision {expected_revision} (it was updated, deleted "
                        "or never created); another writer went first — reload and retry"
                    ) from exc
            # the key holds something: a value, or a delete or purge marker, over which nats-py's
            # create writes at the marker's revision
            try:
                return int(await kv.create(key, data))
            except nats.js.errors.KeyWrongLastSequenceError as exc:
                raise ConcurrencyConflict(
                    f"{what} already exists; read it and update it with its revision"
                ) from exc

    async def _purge(self, kv: KeyValue, ident: str, what: str) -> None:
        with translate_errors(self._conn, what):
            await kv.purge(escape_token(ident))
