"""riverrun.persistence: codec, event log, run records, inbox, payload and snapshot stores.

Never imports ``riverrun.runtime``. ``nats`` and ``aioboto3`` are imported only in their
backend modules.
"""

from .._errors import (
    CodecError as CodecError,
    ConcurrencyConflict as ConcurrencyConflict,
    IncompatibleStoreConfig as IncompatibleStoreConfig,
    NatsServerError as NatsServerError,
    NotFoundInStore as NotFoundInStore,
    PersistenceError as PersistenceError,
    StorePermissionDenied as StorePermissionDenied,
    StoreTLSError as StoreTLSError,
    StoreUnavailable as StoreUnavailable,
)
from ._backend import Backend as Backend
from ._clock import SystemClock as SystemClock
from ._codec import Codec as Codec, Upcaster as Upcaster
from ._embedded import EmbeddedNatsServer as EmbeddedNatsServer
from ._envelope import as_stored as as_stored
from ._jetstream import open_jetstream_backend as open_jetstream_backend
from ._memory import (
    MemoryPayloadStore as MemoryPayloadStore,
    MemorySnapshotStore as MemorySnapshotStore,
    open_memory_backend as open_memory_backend,
)
from ._memory_inbox import MemoryInbox as MemoryInbox
from ._memory_log import MemoryEventLog as MemoryEventLog
from ._memory_owners import MemoryOwnershipStore as MemoryOwnershipStore
from ._memory_runs import MemoryRunStore as MemoryRunStore
from ._model import (
    Append as Append,
    ChainHead as ChainHead,
    InboxMessage as InboxMessage,
    Lease as Lease,
    Member as Member,
    NewEvent as NewEvent,
    RunKey as RunKey,
    RunStatus as RunStatus,
    StoredEvent as StoredEvent,
    Versioned as Versioned,
    WorkflowRun as WorkflowRun,
)
from ._nats_security import NatsSecurity as NatsSecurity
from ._notes import (
    NOTES_KEPT as NOTES_KEPT,
    OperatorNote as OperatorNote,
    add_note as add_note,
    add_notes as add_notes,
    read_notes as read_notes,
)
from ._partitions import (
    DEFAULT_PARTITIONS as DEFAULT_PARTITIONS,
    DEFAULT_QUEUE as DEFAULT_QUEUE,
    check_queue as check_queue,
    partition_of as partition_of,
)
from ._protocols import (
    ChainEnds as ChainEnds,
    Clock as Clock,
    EventLog as EventLog,
    Inbox as Inbox,
    OwnershipStore as OwnershipStore,
    PayloadStore as PayloadStore,
    RunStore as RunStore,
    SnapshotStore as SnapshotStore,
)
from ._quarantine import Quarantine as Quarantine, QuarantinedMessage as QuarantinedMessage
from ._redact import redact_url as redact_url
from ._s3 import (
    S3PayloadStore as S3PayloadStore,
    S3SnapshotStore as S3SnapshotStore,
    open_s3_stores as open_s3_stores,
)

__all__ = [
    "Append",
    "Backend",
    "ChainEnds",
    "ChainHead",
    "Clock",
    "Codec",
    "CodecError",
    "ConcurrencyConflict",
    "DEFAULT_PARTITIONS",
    "DEFAULT_QUEUE",
    "EmbeddedNatsServer",
    "EventLog",
    "Inbox",
    "InboxMessage",
    "IncompatibleStoreConfig",
    "Lease",
    "Member",
    "MemoryEventLog",
    "MemoryInbox",
    "MemoryOwnershipStore",
    "MemoryPayloadStore",
    "MemoryRunStore",
    "MemorySnapshotStore",
    "NOTES_KEPT",
    "NatsSecurity",
    "NatsServerError",
    "NewEvent",
    "NotFoundInStore",
    "OperatorNote",
    "OwnershipStore",
    "PayloadStore",
    "PersistenceError",
    "Quarantine",
    "QuarantinedMessage",
    "RunKey",
    "RunStatus",
    "RunStore",
    "S3PayloadStore",
    "S3SnapshotStore",
    "SnapshotStore",
    "StorePermissionDenied",
    "StoreTLSError",
    "StoreUnavailable",
    "StoredEvent",
    "SystemClock",
    "Upcaster",
    "Versioned",
    "WorkflowRun",
    "add_note",
    "add_notes",
    "as_stored",
    "check_queue",
    "open_jetstream_backend",
    "open_memory_backend",
    "open_s3_stores",
    "partition_of",
    "read_notes",
    "redact_url",
]
