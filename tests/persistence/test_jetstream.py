"""The JetStream backend passes every contract suite, against a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from riverrun.persistence import (
    ChainEnds,
    EmbeddedNatsServer,
    EventLog,
    Inbox,
    OwnershipStore,
    PayloadStore,
    RunStore,
    SnapshotStore,
    open_jetstream_backend,
)
from riverrun.persistence._codec import Codec

from .contract import (
    ChainEndsContract,
    EventLogContract,
    InboxContract,
    OwnershipStoreContract,
    PayloadStoreContract,
    RunStoreContract,
    SnapshotStoreContract,
)

pytestmark = pytest.mark.anyio


class TestJetStreamEventLog(EventLogContract):
    @pytest.fixture
    async def event_log(
        self, codec: Codec, nats_server: EmbeddedNatsServer, namespace: str
    ) -> AsyncIterator[EventLog]:
        async with open_jetstream_backend(nats_server.url, namespace=namespace, codec=codec) as b:
            yield b.events


class TestJetStreamRunStore(RunStoreContract):
    @pytest.fixture
    async def run_store(
        self, nats_server: EmbeddedNatsServer, namespace: str
    ) -> AsyncIterator[RunStore]:
        async with open_jetstream_backend(nats_server.url, namespace=namespace) as backend:
            yield backend.runs


class TestJetStreamOwnershipStore(OwnershipStoreContract):
    @pytest.fixture
    async def owners(
        self, nats_server: EmbeddedNatsServer, namespace: str
    ) -> AsyncIterator[OwnershipStore]:
        async with open_jetstream_backend(nats_server.url, namespace=namespace) as backend:
            yield backend.owners


class TestJetStreamInbox(InboxContract):
    @pytest.fixture
    async def inbox(self, nats_server: EmbeddedNatsServer, namespace: str) -> AsyncIterator[Inbox]:
        async with open_jetstream_backend(nats_server.url, namespace=namespace) as backend:
            yield backend.inbox


class TestJetStreamPayloadStore(PayloadStoreContract):
    @pytest.fixture
    async def payload_store(
        self, nats_server: EmbeddedNatsServer, namespace: str
    ) -> AsyncIterator[PayloadStore]:
        async with open_jetstream_backend(nats_server.url, namespace=namespace) as backend:
            yield backend.payloads


class TestJetStreamSnapshotStore(SnapshotStoreContract):
    @pytest.fixture
    async def snapshot_store(
        self, nats_server: EmbeddedNatsServer, namespace: str
    ) -> AsyncIterator[SnapshotStore]:
        async with open_jetstream_backend(nats_server.url, namespace=namespace) as backend:
            yield backend.snapshots


class TestJetStreamChainEnds(ChainEndsContract):
    @pytest.fixture
    async def chain_ends(
        self, nats_server: EmbeddedNatsServer, namespace: str
    ) -> AsyncIterator[tuple[ChainEnds, ChainEnds]]:
        async with (
            open_jetstream_backend(nats_server.url, namespace=namespace) as one,
            open_jetstream_backend(nats_server.url, namespace=namespace) as other,
        ):
            yield one.ends, other.ends
