"""README's set-up commands are what CI runs, and its code block runs as a program."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [c.strip() for c in re.findall(r"```\n(.*?)\n\s*```", section, re.S)]


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = setup_commands()
    assert 2 == len(commands)
    assert commands[0].endswith("riverrun demo")


def test_ci_runs_the_readme_test_command() -> None:
    test_command = setup_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()[6] or test_command in ci
    assert "mypy --strict riverrun" in ci
    assert "ruff check" in ci


def readme_program() -> str:
    """The README's one python code block."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert 1 == len(blocks)
    return str(blocks[0])


def test_readme_code_block_runs_as_a_file(tmp_path: Path) -> None:
    # a program as written, run the way a reader runs it: `python file.py` in a fresh process,
    # with a real embedded nats-server
    program = tmp_path / "readme_example.py"
    program.write_text(readme_program())
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERRUN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(program)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Processed 1000 total items"
