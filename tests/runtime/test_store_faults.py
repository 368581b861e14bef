"""Store faults at awkward moments of the runtime's multi-write operations, on memory and
JetStream: the operation is redone after the fault and nothing is left unannounced."""

from __future__ import annotations

from typing import Any

import pytest

from riverrun import execute_child, step, workflow
from riverrun.persistence import StoreUnavailable

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio


@step()
async def triple(x: int) -> int:
    return 3 * x


@workflow()
async def faulty_child(x: int) -> int:
    return await triple(x)


@workflow()
async def faulty_parent(x: int) -> int:
    return await execute_child(faulty_child, x, workflow_id=f"fp-{x}-child") + 1


async def test_a_child_start_cut_before_its_start_message_still_runs_the_child(
    make_runtime: RuntimeFactory,
) -> None:
    # The store goes away after the child's chain head was committed and before its "start"
    # message was sent (a nats-server killed at that moment): the parent's instance fails,
    # restarts from its history and redoes the child start, which finds the chain already
    # there. It must still announce the chain, or no worker ever hosts the child and the
    # parent waits for ever.
    faults: list[str] = []
    async with make_runtime(workflows=[faulty_parent, faulty_child]) as rt:
        inbox = rt.backend.inbox
        send = inbox.send

        async def cut_once(workflow_id: str, kind: str, data: Any, **kwargs: Any) -> int:
            if kind == "start" and workflow_id == "fp-7-child" and not faults:
                faults.append(workflow_id)
                raise StoreUnavailable("injected: the server went away before the start message")
            return await send(workflow_id, kind, data, **kwargs)

        inbox.send = cut_once  # type: ignore[method-assign]
        handle = await rt.client.start(faulty_parent, 7, workflow_id="fp-7")

        assert 22 == await handle.result(timeout=30)
    assert ["fp-7-child"] == faults
