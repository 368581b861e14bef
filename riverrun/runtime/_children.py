"""Child workflows from inside a workflow: ``start_child`` and ``execute_child``."""

from __future__ import annotations

from typing import Any

from ._commands import ParentClosePolicy, StartChild, command_awaitable
from ._context import current_scope
from ._definitions import definition_of, is_workflow
from ._machine import ChildHandle

__all__ = ["execute_child", "start_child"]


async def start_child(
    wf: Any,
    *args: Any,
    workflow_id: str | None = None,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.CANCEL,
    **kwargs: Any,
) -> ChildHandle:
    """Start a child workflow chain and return its handle once it is recorded.

    The child is cancelled when this run closes (including when it continues as new) unless
    ``parent_close_policy=ParentClosePolicy.ABANDON``. A child that continues as new is still
    running; ``await handle.result()`` waits for its chain's final result.
    """
    scope = current_scope("start_child()")
    if is_workflow(wf):
        name = definition_of(wf).name
    elif isinstance(wf, str) and wf:
        name = wf
    else:
        raise TypeError(f"start_child() needs a @workflow function or name, not {wf!r}")
    policy = ParentClosePolicy(parent_close_policy)
    scope.check_serializable({"args": list(args), "kwargs": kwargs}, f"child {name}() arguments")
    info = scope.info()
    child_id = workflow_id or f"{info.workflow_id}.child-{info.run_id[:8]}-{info.history_length}"
    handle: ChildHandle = await command_awaitable(
        StartChild(
            workflow_name=name,
            args=args,
            kwargs=dict(kwargs),
            workflow_id=child_id,
            parent_close_policy=policy,
        )
    )
    return handle


async def execute_child(
    wf: Any,
    *args: Any,
    workflow_id: str | None = None,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.CANCEL,
    **kwargs: Any,
) -> Any:
    """Start a child workflow and wait for its final result."""
    handle = await start_child(
        wf, *args, workflow_id=workflow_id, parent_close_policy=parent_close_policy, **kwargs
    )
    return await handle.result()
