"""docs/actors.md stays true: its supervision example runs and prints what the page says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "actors.md"


def fenced_block_after(marker: str) -> str:
    text = DOC.read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    match = re.match(r"\s*```[a-z]*\n(.*?)\n```", after, re.S)
    assert match is not None, f"no fenced block after {marker!r}"
    return match.group(1)


def test_the_supervision_example_prints_what_the_doc_says() -> None:
    code = fenced_block_after("example: supervision")
    expected = fenced_block_after("output: supervision")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "docs_example"})
    assert expected.splitlines() == out.getvalue().splitlines()
