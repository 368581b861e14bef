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
    StoreUnavailable as StoreUnavailable,
)
from ._backend import Backend as Backend
from ._model import (
    Append as Append,
    ChainHead as ChainHead,
    InboxMessage as InboxMessage,
    Lease as Lease,
    NewEvent as NewEvent,
    RunKey as RunKey,
    RunStatus as RunStatus,
    StoredEvent as StoredEvent,
    Versioned as Versioned,
    WorkflowRun as WorkflowRun,
)
from ._protocols import (
    Clock as Clock,
    EventLog as EventLog,
    Inbox as Inbox,
    PayloadStore as PayloadStore,
    RunStore as RunStore,
    SnapshotStore as SnapshotStore,
)

__all__ = [
    "Append",
    "Backend",
    "ChainHead",
    "Clock",
    "CodecError",
    "ConcurrencyConflict",
    "EventLog",
    "Inbox",
    "IncompatibleStoreConfig",
    "InboxMessage",
    "Lease",
    "NatsServerError",
    "NewEvent",
    "NotFoundInStore",
    "PayloadStore",
    "PersistenceError",
    "RunKey",
    "RunStatus",
    "RunStore",
    "SnapshotStore",
    "StoreUnavailable",
    "StoredEvent",
    "Versioned",
    "WorkflowRun",
]
