"""riverrun.runtime: workflows, steps, continue-as-new, timers, signals, children, client,
worker and the Runtime that ties them together."""

from ._chain import get_workflow_chain as get_workflow_chain
from ._children import execute_child as execute_child, start_child as start_child
from ._client import Client as Client, WorkflowHandle as WorkflowHandle
from ._commands import ParentClosePolicy as ParentClosePolicy
from ._context import (
    ContinueAsNew as ContinueAsNew,
    WorkflowInfo as WorkflowInfo,
    continue_as_new as continue_as_new,
    continue_as_new_versioned as continue_as_new_versioned,
    info as info,
    parse_duration as parse_duration,
    sleep as sleep,
    wait_for_signal as wait_for_signal,
)
from ._converter import DataConverter as DataConverter
from ._definitions import (
    RetryPolicy as RetryPolicy,
    is_workflow as is_workflow,
    step as step,
    workflow as workflow,
)
from ._events import Event as Event, EventType as EventType
from ._logcontext import LogContextFilter as LogContextFilter
from ._logsetup import configure_logging as configure_logging
from ._machine import (
    ChildHandle as ChildHandle,
    HistoryLimits as HistoryLimits,
    StepFailed as StepFailed,
)
from ._options import Retention as Retention, RuntimeOptions as RuntimeOptions
from ._patching import deprecate_patch as deprecate_patch, patched as patched
from ._runtime import Runtime as Runtime

__all__ = [
    "ChildHandle",
    "Client",
    "ContinueAsNew",
    "DataConverter",
    "Event",
    "EventType",
    "HistoryLimits",
    "LogContextFilter",
    "ParentClosePolicy",
    "Retention",
    "RetryPolicy",
    "Runtime",
    "RuntimeOptions",
    "StepFailed",
    "WorkflowHandle",
    "WorkflowInfo",
    "continue_as_new",
    "configure_logging",
    "continue_as_new_versioned",
    "deprecate_patch",
    "execute_child",
    "get_workflow_chain",
    "info",
    "is_workflow",
    "parse_duration",
    "patched",
    "sleep",
    "start_child",
    "step",
    "wait_for_signal",
    "workflow",
]
