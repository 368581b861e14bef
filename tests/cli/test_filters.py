"""`runs logs --filter`: event types matched the way users type them."""

from __future__ import annotations

import pytest

from riverrun.cli._filters import EventFilter, normalise_event_type

TYPES = [
    "workflow.started",
    "workflow.completed",
    "workflow.failed",
    "workflow.cancelled",
    "workflow.continued_as_new",
    "step.started",
    "step.completed",
    "step.failed",
    "step.retrying",
    "timer.started",
    "timer.fired",
    "signal.received",
    "child.started",
    "child.completed",
    "child.failed",
    "child.cancelled",
    "cancellation.requested",
]


def matching(*patterns: str) -> list[str]:
    event_filter = EventFilter(patterns)
    return [t for t in TYPES if event_filter.matches(t)]


def test_normalise() -> None:
    assert normalise_event_type("Workflow_Continued-As.New") == "workflow.continued.as.new"
    assert normalise_event_type(" STEP_COMPLETED ") == "step.completed"


@pytest.mark.parametrize(
    "pattern",
    [
        "continued",
        "continued_as_new",
        "continued-as-new",
        "workflow.continued_as_new",
        "WORKFLOW_CONTINUED_AS_NEW",
    ],
)
def test_ways_to_ask_for_continue_as_new(pattern: str) -> None:
    assert matching(pattern) == ["workflow.continued_as_new"]


@pytest.mark.parametrize("pattern", ["step.completed", "step_completed", "STEP_COMPLETED"])
def test_ways_to_ask_for_step_completed(pattern: str) -> None:
    assert matching(pattern) == ["step.completed"]


def test_a_prefix_selects_a_family() -> None:
    assert matching("step") == ["step.started", "step.completed", "step.failed", "step.retrying"]


def test_a_suffix_selects_across_families() -> None:
    assert matching("completed") == ["workflow.completed", "step.completed", "child.completed"]


def test_globs() -> None:
    assert matching("timer.*") == ["timer.started", "timer.fired"]
    assert matching("*.failed") == ["workflow.failed", "step.failed", "child.failed"]


def test_several_filters_are_or() -> None:
    assert matching("continued", "signal") == ["workflow.continued_as_new", "signal.received"]


def test_an_empty_filter_matches_everything() -> None:
    assert matching() == TYPES
    assert not EventFilter()


def test_unmatched_reports_typos_as_typed() -> None:
    assert EventFilter(["step", "contnued"]).unmatched(TYPES) == ["contnued"]
    assert EventFilter(["step_completed"]).unmatched(TYPES) == []
