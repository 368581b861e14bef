"""The worker: hosts workflow instances, routes inbox messages to them, supervises them.

Design note. One shared inbox subscription per worker (``Inbox.watch``), never one consumer
per workflow: the worker routes each message to the instance hosting that workflow id,
spawning (rehydrating) it if it is not in memory. An instance that fails with an
infrastructure error (the store unreachable, a timeout) is restarted from its history with
exponential backoff; a workflow's own exception is recorded by the instance as
``workflow.failed`` and never reaches here. ``NonDeterminismError`` parks the workflow: it is
logged and left untouched until the worker is restarted with code that matches the history.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
from anyio.abc import TaskGroup, TaskStatus

from .._errors import ConcurrencyConflict, NonDeterminismError
from ..persistence import InboxMessage, RunStatus
from ._instance import WorkflowInstance
from ._services import Services

__all__ = ["Worker", "WorkerStatistics"]

log = logging.getLogger("riverrun.worker")


@attrs.frozen(kw_only=True)
class WorkerStatistics:
    active: int
    started: int
    restarts: int
    passivated: int
    parked: int


class Worker:
    """Hosts every workflow of one namespace that this process runs."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._instances: dict[str, WorkflowInstance] = {}
        self._rerun: set[str] = set()
        self._parked: dict[str, str] = {}
        self._tg: TaskGroup | None = None
        self._started = 0
        self._restarts = 0
        self._passivated = 0

    def __repr__(self) -> str:
        return f"<Worker active={len(self._instances)} parked={len(self._parked)}>"

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            active=len(self._instances),
            started=self._started,
            restarts=self._restarts,
            passivated=self._passivated,
            parked=len(self._parked),
        )

    @property
    def parked(self) -> dict[str, str]:
        """Workflow ids parked on non-determinism, with the error message."""
        return dict(self._parked)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        inbox = self.services.backend.inbox
        async with anyio.create_task_group() as tg:
            self._tg = tg
            async with inbox.watch() as messages:
                await self._recover()
                task_status.started()
                await self._route(messages)

    async def _route(self, messages: AsyncIterator[InboxMessage]) -> None:
        async for message in messages:
            self.deliver(message.workflow_id, message)

    async def _recover(self) -> None:
        """Resume every running workflow in the namespace (after a crash or a restart)."""
        for run in await self.services.backend.runs.list_runs(status=RunStatus.RUNNING):
            self.deliver(run.workflow_id, None)

    def deliver(self, workflow_id: str, message: InboxMessage | None) -> None:
        if workflow_id in self._parked:
            return
        instance = self._instances.get(workflow_id)
        if instance is not None:
            if instance.finished:
                self._rerun.add(workflow_id)
            instance.notify(message)
            return
        assert self._tg is not None
        instance = WorkflowInstance(self.services, workflow_id)
        self._instances[workflow_id] = instance
        self._started += 1
        self._tg.start_soon(self._supervise, instance, name=f"riverrun workflow {workflow_id}")

    async def _supervise(self, instance: WorkflowInstance) -> None:
        workflow_id = instance.workflow_id
        options = self.services.options
        delay = options.restart_backoff
        try:
            while True:
                try:
                    await instance.run()
                    if not instance.finished:
                        self._passivated += 1
                    return
                except NonDeterminismError as err:
                    log.error("workflow %s parked: %s", workflow_id, err)
                    self._parked[workflow_id] = str(err)
                    return
                except ConcurrencyConflict as err:
                    # another worker owns the workflow now (its append won the fence)
                    log.warning("workflow %s: lost ownership: %s", workflow_id, err)
                    return
                except Exception as err:
                    self._restarts += 1
                    log.warning(
                        "workflow %s crashed (%s: %s); restarting from its history in %.2fs",
                        workflow_id,
                        type(err).__name__,
                        err,
                        delay,
                    )
                    await anyio.sleep(delay * (0.5 + random.random() / 2))
                    delay = min(delay * 2, options.restart_backoff_max)
                    instance = WorkflowInstance(self.services, workflow_id)
                    self._instances[workflow_id] = instance
        finally:
            if self._instances.get(workflow_id) is instance:
                del self._instances[workflow_id]
            if workflow_id in self._rerun:
                self._rerun.discard(workflow_id)
                self.deliver(workflow_id, None)

    def cancel_all(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def instance(self, workflow_id: str) -> Any:
        return self._instances.get(workflow_id)
