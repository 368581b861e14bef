"""``configure_logging``: text and JSON lines with the workflow context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from riverrun import configure_logging

log = logging.getLogger("riverrun.workflow")


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_is_one_object_per_line_with_the_context_fields() -> None:
    out = io.StringIO()
    configure_logging(level="info", format="json", stream=out)
    log.debug("not written")
    log.info("hello %s", "there", extra={"workflow_id": "wf-1", "run_id": "r-1", "depth": 3})
    try:
        raise KeyError("k")
    except KeyError:
        log.exception("it broke")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert {
        "level": "INFO",
        "logger": "riverrun.workflow",
        "message": "hello there",
        "workflow_id": "wf-1",
        "run_id": "r-1",
        "execution": None,
        "step": None,
        "attempt": None,
        "depth": 3,
    } == {k: v for k, v in first.items() if k != "time"}
    assert first["time"].endswith("Z")
    assert "ERROR" == second["level"] and "KeyError: 'k'" in second["exc_info"]


def test_text_lines_show_the_context_that_applies() -> None:
    out = io.StringIO()
    configure_logging(level=logging.DEBUG, stream=out)
    log.debug("step ran", extra={"workflow_id": "wf-1", "run_id": "r-1", "step": "s"})
    log.info("nothing to say")
    first, second = out.getvalue().splitlines()
    assert first.endswith(" DEBUG riverrun.workflow: step ran  wf=wf-1 run=r-1 step=s")
    assert second.endswith(" INFO riverrun.workflow: nothing to say")


def test_a_second_call_replaces_the_first_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(stream=second)
    log.warning("once")
    assert "" == first.getvalue() and 1 == len(second.getvalue().splitlines())


@pytest.mark.parametrize(
    ("kwargs", "word"), [({"level": "LOUD"}, "log level"), ({"format": "xml"}, "log format")]
)
def test_bad_arguments_say_what_is_allowed(kwargs: Any, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        configure_logging(**kwargs)
