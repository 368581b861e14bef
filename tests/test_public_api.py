"""The public facade: the names DESIGN.md fixes are there, and the list is frozen."""

from __future__ import annotations

import riverrun

FROZEN = [
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
    "deprecate_patch",
    "execute_child",
    "get_workflow_chain",
    "info",
    "patched",
    "sleep",
    "start_child",
    "step",
    "wait_for_signal",
    "workflow",
]

DESIGN_NAMES = ["workflow", "step", "continue_as_new", "continue_as_new_versioned", "sleep", "wait_for_signal", "start_child", "execute_child", "info", "get_workflow_chain", "Runtime", "Client", "WorkflowHandle", "WorkflowRun", "RunStatus", "EventType", "Event", "RetryPolicy", "CancellationError", "ContinueAsNew", "RiverrunError"]


def test_all_is_frozen_and_sorted() -> None:
    assert FROZEN == riverrun.__all__
    assert sorted(riverrun.__all__) == riverrun.__all__


def test_every_name_exists() -> None:
    for name in riverrun.__all__:
        assert getattr(riverrun, name) is not None, name


def test_design_names_are_public() -> None:
    assert set(DESIGN_NAMES) <= set(riverrun.__all__)


def test_enum_values_are_the_design_strings() -> None:
    assert [
        "running",
        "suspended",
        "completed",
        "failed",
        "cancelled",
        "continued_as_new",
    ] == [s.value for s in riverrun.RunStatus]
    assert "workflow.continued_as_new" == riverrun.EventType.WORKFLOW_CONTINUED_AS_NEW.value
    # the seventeen DESIGN.md fixes, then the ones added since (values never change)
    assert 20 == len(riverrun.EventType)  # + workflow.patched, step.cancelled, timer.cancelled
    assert "workflow.patched" == riverrun.EventType.WORKFLOW_PATCHED.value


def test_error_tree() -> None:
    for name in ("WorkflowAlreadyRunning", "WorkflowFailed", "CancellationError"):
        assert issubclass(getattr(riverrun, name), riverrun.RiverrunError)
    assert issubclass(riverrun.WorkflowNotFound, LookupError)
    assert issubclass(riverrun.ContinueAsNew, BaseException)
    assert not issubclass(riverrun.ContinueAsNew, Exception)
