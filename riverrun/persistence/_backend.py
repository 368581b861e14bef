"""A backend: one object bundling the stores a runtime needs."""

from __future__ import annotations

import attrs

from ._ends import LocalChainEnds
from ._partitions import DEFAULT_PARTITIONS
from ._protocols import (
    ChainEnds,
    Clock,
    EventLog,
    Inbox,
    OwnershipStore,
    PayloadStore,
    RunStore,
    SnapshotStore,
)
from ._quarantine import Quarantine

__all__ = ["Backend"]


@attrs.define(eq=False)
class Backend:
    """The stores one runtime uses, all from the same namespace.

    Backends are opened by ``open_*`` async context managers (``open_memory_backend``,
    ``open_jetstream_backend``) that close what they opened on exit.
    """

    name: str
    events: EventLog
    runs: RunStore
    inbox: Inbox
    payloads: PayloadStore
    snapshots: SnapshotStore
    clock: Clock
    #: partition leases, worker membership, the index of running chains
    owners: OwnershipStore
    #: partitions per queue (the namespace's setting, as read when the backend opened)
    partitions: int = DEFAULT_PARTITIONS
    #: the largest single message the log accepts (NATS max_payload); events over it are refused
    max_event_bytes: int = 1024 * 1024
    #: where the stores and the runtime report messages they skip as undecodable or unusable
    quarantine: Quarantine = attrs.field(factory=Quarantine)
    #: word that a chain has ended, for result waiters in other processes (best effort)
    ends: ChainEnds = attrs.field(factory=LocalChainEnds)

    def __repr__(self) -> str:
        return f"<Backend {self.name}>"
