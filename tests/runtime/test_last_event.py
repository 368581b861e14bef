"""``Client.last_event``: a run's last event read alone, its sequence the history length."""

from __future__ import annotations

import pytest

from riverrun import EventType, WorkflowNotFound

from .conftest import RuntimeFactory
from .workflows import batch_processor

pytestmark = pytest.mark.anyio


async def test_last_event_of_a_truncated_run_is_its_link(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[batch_processor]) as rt:
        handle = await rt.client.start(batch_processor, 0, 100, 200, workflow_id="last-event")
        assert await handle.result(timeout=30)
        chain = await rt.client.get_workflow_chain((await handle.describe()).run_id)
        first = chain[0]
        # truncated to its link, which keeps the sequence its whole history reached
        assert len(await rt.client.events(first.run_id)) == 1
        link = await rt.client.last_event(first.run_id)
        assert link is not None
        assert link.type == EventType.WORKFLOW_CONTINUED_AS_NEW
        assert link.sequence == 3  # started, step.completed, continued_as_new
        assert link.data["new_run_id"] == chain[1].run_id
        current = await rt.client.last_event(chain[-1].run_id, workflow_id="last-event")
        assert current is not None and current.type == EventType.WORKFLOW_COMPLETED
        with pytest.raises(WorkflowNotFound):
            await rt.client.last_event("no-such-run")
