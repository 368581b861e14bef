"""The package as a type checker sees it from a user's project (mypy --strict, outside the repo).

`client.start` checks the workflow's arguments, `WorkflowHandle[T].result()` is the workflow's
result type, steps keep their signatures, and the README's `pip install -e .` is visible to
mypy.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import riverrun

PACKAGE_ROOT = Path(riverrun.__file__).resolve().parent.parent

USER_CODE = """\
from riverrun import Client, step, workflow


@step
async def double(x: int) -> int:
    return 2 * x


@workflow()
async def total(count: int, label: str = "sum") -> list[int]:
    return [await double(count)]


@workflow()
async def keyed(count: int, *, label: str) -> str:
    return label * count


async def main(client: Client) -> None:
    handle = await client.start(total, 3)
    reveal_type(await handle.result())
    with_id = await client.start(total, 3, "x", workflow_id="t-1")
    reveal_type(with_id)
    await client.start(keyed, 2, label="a")
    on_b = await client.start(total, 3, queue="b")
    reveal_type(on_b)
    await client.start(total, 3, "x", workflow_id="t-3", queue="b")
    await client.start("total", 3, queue="b")
    by_name = await client.start("total", 3, workflow_id="t-2")
    reveal_type(await by_name.result())
    reveal_type(client.get_handle("t-1"))
    reveal_type(double)
"""

BAD_CODE = """\
from riverrun import Client, workflow


@workflow()
async def total(count: int) -> int:
    return count


async def main(client: Client) -> None:
    await client.start(total, "not-an-int")  # line 10
    await client.start(total, "not-an-int", workflow_id="t-1")  # line 11
    await client.start(total, 1, extra=2)  # line 12
    await client.start(total)  # line 13
    await client.start(total, "not-an-int", queue="b")  # line 14
    await client.start(total, 1, queue=2)  # line 15
"""


def _mypy(tmp_path: Path, code: str, *, python: str | None = None) -> tuple[int, str]:
    user = tmp_path / "user_project"
    user.mkdir(exist_ok=True)
    (user / "app.py").write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    args = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "app.py"]
    if python is not None:
        args += ["--python-executable", python]
    elif str(PACKAGE_ROOT) not in site.getsitepackages():
        # a source checkout (the editable install, or a worktree on PYTHONPATH): check the
        # copy that this test imported, its own errors silenced as an installed package's are
        env["MYPYPATH"] = str(PACKAGE_ROOT)
        (user / "mypy.ini").write_text("[mypy]\n[mypy-riverrun.*]\nfollow_imports = silent\n")
    done = subprocess.run(args, cwd=user, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_a_correct_user_file_type_checks_and_results_are_typed(tmp_path: Path) -> None:
    code, out = _mypy(tmp_path, USER_CODE)
    assert 0 == code, out
    revealed = [line.split("Revealed type is ", 1)[1] for line in out.splitlines() if "Revealed" in line]
    assert [
        '"list[int]"',
        '"riverrun.runtime._client.WorkflowHandle[list[int]]"',
        '"riverrun.runtime._client.WorkflowHandle[list[int]]"',
        '"Any"',
        '"riverrun.runtime._client.WorkflowHandle[Any]"',
        '"def (x: int) -> typing.Coroutine[Any, Any, int]"',
    ] == revealed


def test_wrong_arguments_to_start_are_type_errors(tmp_path: Path) -> None:
    code, out = _mypy(tmp_path, BAD_CODE)
    assert 1 == code, out
    lines = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    assert {10, 11, 12, 13, 14, 15} == lines, out
    assert "Cannot find implementation" not in out


@pytest.mark.slow
@pytest.mark.skipif(
    not (PACKAGE_ROOT / "pyproject.toml").exists(), reason="needs the source tree to install"
)
def test_the_editable_install_is_visible_to_mypy(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    # the README's command (without the dependencies, which the check does not need)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(PACKAGE_ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    code, out = _mypy(
        tmp_path, "import riverrun\n\nreveal_type(riverrun.Client)\n", python=python
    )
    assert "Cannot find implementation" not in out, out
    assert "riverrun.runtime._client.Client" in out, out
    assert 0 == code, out
