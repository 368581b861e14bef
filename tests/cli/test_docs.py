"""docs/quickstart.md works as written: its Python file runs, and its commands run against a
real nats-server with a worker hosting that file."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from riverrun.persistence import EmbeddedNatsServer
from riverrun.testing._nats import unique_namespace

from .conftest import COMMAND_TIMEOUT, ROOT, WorkerProcess, base_env, run_riverrun

QUICKSTART = ROOT / "docs" / "quickstart.md"


def code_blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced blocks of ``text`` (of one language if given), in order."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
    return [body for lang, body in blocks if language is None or lang == language]


def section(title: str) -> str:
    text = QUICKSTART.read_text()
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_the_quickstart_starts_with_the_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    readme_commands = [c.strip() for c in re.findall(r"```\n(.*?)\n\s*```", readme, re.S)]
    blocks = [b.strip() for b in code_blocks(section("1. The demo"))]
    assert readme_commands == blocks


def write_orders(tmp_path: Path) -> Path:
    (source,) = code_blocks(section("2. A first workflow, embedded"), "python")
    path = tmp_path / "orders.py"
    path.write_text(source)
    return path


def test_the_embedded_example_prints_what_the_doc_says(tmp_path: Path) -> None:
    path = write_orders(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        cwd=tmp_path,
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr
    documented = code_blocks(section("2. A first workflow, embedded"))[-1].splitlines()
    printed = proc.stdout.splitlines()
    assert documented[:2] == printed[:2]
    # run ids differ from run to run: compare execution numbers and statuses
    assert [line.split()[:2] for line in documented[2:]] == [
        line.split()[:2] for line in printed[2:]
    ]


def test_the_service_commands_run_against_a_worker(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    write_orders(tmp_path)
    blocks = code_blocks(section("3. The same workflows, as a service"))
    assert ["riverrun dev"] == blocks[0].split("\n")[:1]
    assert "riverrun worker orders" == blocks[1].strip()
    commands = [shlex.split(line) for line in blocks[2].strip().splitlines()]
    env = base_env(RIVERRUN_SERVERS=nats_server.url, RIVERRUN_NAMESPACE=unique_namespace("qs"))

    worker = WorkerProcess("orders", env, cwd=tmp_path)
    try:
        worker.wait_ready()
        outputs = {}
        for command in commands:
            assert "riverrun" == command[0]
            result = run_riverrun(*command[1:], env=env, cwd=tmp_path)
            assert 0 == result.code, result.describe()
            outputs[" ".join(command[1:3])] = result.stdout
    finally:
        assert 0 == worker.stop(), worker.output
    assert "UPS" in outputs["runs result"]
    assert "Chain length: 6 run(s)" in outputs["runs chain"]
    assert "workflow.completed" in outputs["runs logs"]


DOCS = ROOT / "docs"
MINE = ("index.md", "quickstart.md", "cli.md", "configuration.md", "deployment.md")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_the_index_links_every_doc() -> None:
    index = (DOCS / "index.md").read_text()
    linked = set(re.findall(r"\]\(([\w\-]+\.md)\)", index))
    assert {p.name for p in DOCS.glob("*.md")} - {"index.md"} <= linked


def test_links_in_these_docs_resolve() -> None:
    broken = []
    for name in MINE:
        text = (DOCS / name).read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target:
                continue
            file_part, _, anchor = target.partition("#")
            path = (DOCS / file_part).resolve() if file_part else DOCS / name
            if not path.exists():
                broken.append(f"{name}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{name}: {target} (no such heading)")
    assert [] == broken
