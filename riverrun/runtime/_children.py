"""Child workflows from inside a workflow: ``start_child`` and ``execute_child``."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import attrs

from ..persistence import check_queue
from ._commands import ParentClosePolicy, StartChild
from ._context import current_scope, run_command
from ._definitions import definition_of, is_workflow
from ._hints import CallHints
from ._machine import ChildHandle
from ._options import MAX_WORKFLOW_ID, validate_workflow_id
from ._typed_calls import active_converter

__all__ = ["default_child_id", "execute_child", "start_child"]


def default_child_id(parent_id: str, run_id: str, position: int) -> str:
    """``<parent id>.child-<run id[:8]>-<position>``, always a valid id: when the parent's id
    is too long for that, its head is kept and its tail replaced by a hash of the whole
    (deterministic, so the same on replay; distinct parents keep distinct child ids)."""
    suffix = f".child-{run_id[:8]}-{position}"
    if len(parent_id) + len(suffix) <= MAX_WORKFLOW_ID:
        return parent_id + suffix
    digest = hashlib.sha256(parent_id.encode()).hexdigest()[:16]
    keep = MAX_WORKFLOW_ID - len(suffix) - len(digest) - 1
    return f"{parent_id[:keep]}.{digest}{suffix}"


async def start_child(
    wf: Any,
    *args: Any,
    workflow_id: str | None = None,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.CANCEL,
    queue: str | None = None,
    **kwargs: Any,
) -> ChildHandle:
    """Start a child workflow chain and return its handle once it is recorded.

    The child is cancelled when this run closes (including when it continues as new) unless
    ``parent_close_policy=ParentClosePolicy.ABANDON``. A child that continues as new is still
    running; ``await handle.result()`` waits for its chain's final result.

    ``workflow_id``, ``parent_close_policy`` and ``queue`` are this call's own keywords, never
    the child's. ``queue``: the task queue the child's chain is served on; ``None``: the
    child's ``@workflow(queue=...)`` (by name: the queue of the definition registered on this
    worker, else ``default``), never the parent's.

    Raises:
        ValueError: ``workflow_id`` is not a valid workflow id, or ``queue`` not a valid
            queue name (checked here, at the call).
        WorkflowAlreadyRunning: a chain with that ``workflow_id`` is running.
    """
    scope = current_scope("start_child()")
    if queue is not None:
        check_queue(queue)
    if is_workflow(wf):
        name = definition_of(wf).name
        hints = definition_of(wf).hints.get()
        queue = queue or definition_of(wf).queue
    elif isinstance(wf, str) and wf:
        name, hints = wf, None
    else:
        raise TypeError(f"start_child() needs a @workflow function or name, not {wf!r}")
    policy = ParentClosePolicy(parent_close_policy)
    # by the child's hints (by name: plain data, which the child decodes by its own hints)
    args, kwargs = active_converter().encode_call(hints, args, kwargs)
    scope.check_serializable({"args": list(args), "kwargs": kwargs}, f"child {name}() arguments")
    info = scope.info()
    make_id = None
    if workflow_id is None:
        # from the command's position, set when it is issued: children started together
        # (asyncio.gather) get distinct ids, the same ones on replay
        child_id = ""
        make_id = functools.partial(default_child_id, info.workflow_id, info.run_id)
    else:
        # here, in the workflow's code: an invalid id must not reach the worker's start
        child_id = validate_workflow_id(workflow_id)
    handle: ChildHandle = await run_command(
        StartChild(
            workflow_name=name,
            args=args,
            kwargs=dict(kwargs),
            workflow_id=child_id,
            parent_close_policy=policy,
            make_id=make_id,
            queue=queue,
        )
    )
    if hints is not None and hints.typed_result:
        return TypedChildHandle(
            workflow_id=handle.workflow_id, first_run_id=handle.first_run_id, hints=hints
        )
    return handle


@attrs.define(eq=False)
class TypedChildHandle(ChildHandle):
    """A child started with its function: ``result()`` decodes by its return hint."""

    hints: CallHints = attrs.field(repr=False)

    async def result(self) -> Any:
        data = await super().result()
        return active_converter().decode_result(self.hints, data)


async def execute_child(
    wf: Any,
    *args: Any,
    workflow_id: str | None = None,
    parent_close_policy: ParentClosePolicy = ParentClosePolicy.CANCEL,
    queue: str | None = None,
    **kwargs: Any,
) -> Any:
    """Start a child workflow and wait for its final result (see ``start_child``)."""
    handle = await start_child(
        wf,
        *args,
        workflow_id=workflow_id,
        parent_close_policy=parent_close_policy,
        queue=queue,
        **kwargs,
    )
    return await handle.result()
