"""Module-level ``get_workflow_chain``: uses the runtime of the enclosing ``async with``."""

from __future__ import annotations

from ..persistence import WorkflowRun
from ._runtime import current_runtime

__all__ = ["get_workflow_chain"]


async def get_workflow_chain(run_id: str) -> list[WorkflowRun]:
    """Every run of the chain ``run_id`` belongs to, first to last; ``[]`` if unknown."""
    return await current_runtime().client.get_workflow_chain(run_id)
