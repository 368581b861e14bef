"""riverrun: durable, event-sourced workflow actors on asyncio and NATS JetStream.

The public API. Everything here is re-exported from private modules; ``__all__`` is frozen by
``tests/test_public_api.py``.
"""

from ._errors import (
    CancellationError as CancellationError,
    NonDeterminismError as NonDeterminismError,
    RiverrunError as RiverrunError,
    SerializationError as SerializationError,
    WorkflowAlreadyRunning as WorkflowAlreadyRunning,
    WorkflowFailed as WorkflowFailed,
    WorkflowNotFound as WorkflowNotFound,
    WorkflowNotRegistered as WorkflowNotRegistered,
    WorkflowNotRunning as WorkflowNotRunning,
)
from .persistence import RunStatus as RunStatus, WorkflowRun as WorkflowRun
from .runtime import (
    ChildHandle as ChildHandle,
    Client as Client,
    ContinueAsNew as ContinueAsNew,
    DataConverter as DataConverter,
    Event as Event,
    EventType as EventType,
    HistoryLimits as HistoryLimits,
    LogContextFilter as LogContextFilter,
    ParentClosePolicy as ParentClosePolicy,
    Retention as Retention,
    RetryPolicy as RetryPolicy,
    Runtime as Runtime,
    RuntimeOptions as RuntimeOptions,
    StepFailed as StepFailed,
    WorkflowHandle as WorkflowHandle,
    WorkflowInfo as WorkflowInfo,
    configure_logging as configure_logging,
    continue_as_new as continue_as_new,
    continue_as_new_versioned as continue_as_new_versioned,
    execute_child as execute_child,
    get_workflow_chain as get_workflow_chain,
    info as info,
    sleep as sleep,
    start_child as start_child,
    step as step,
    wait_for_signal as wait_for_signal,
    workflow as workflow,
)

ABANDON = ParentClosePolicy.ABANDON

__all__ = [
    "ABANDON",
    "CancellationError",
    "ChildHandle",
    "Client",
    "ContinueAsNew",
    "DataConverter",
    "Event",
    "EventType",
    "HistoryLimits",
    "LogContextFilter",
    "NonDeterminismError",
    "ParentClosePolicy",
    "Retention",
    "RetryPolicy",
    "RiverrunError",
    "RunStatus",
    "Runtime",
    "RuntimeOptions",
    "SerializationError",
    "StepFailed",
    "WorkflowAlreadyRunning",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowNotFound",
    "WorkflowNotRegistered",
    "WorkflowNotRunning",
    "WorkflowRun",
    "__version__",
    "configure_logging",
    "continue_as_new",
    "continue_as_new_versioned",
    "execute_child",
    "get_workflow_chain",
    "info",
    "sleep",
    "start_child",
    "step",
    "wait_for_signal",
    "workflow",
]

__version__ = "0.1.0"
