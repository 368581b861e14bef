"""The docs are the users' own: they never point at the project's internal design file."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_doc_cites_the_internal_design_file() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    citing = [page.name for page in pages if "DESIGN.md" in page.read_text()]
    assert [] == citing
