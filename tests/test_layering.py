"""The layering rule: actors <- persistence <- runtime <- facade, checked on the source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "riverrun"
STDLIB = set(sys.stdlib_module_names)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module imported by ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return found


def files_of(subpackage: str) -> list[Path]:
    return sorted((PACKAGE / subpackage).rglob("*.py"))


@pytest.mark.parametrize("path", files_of("actors"), ids=lambda p: p.name)
def test_actors_import_only_anyio_attrs_and_stdlib(path: Path) -> None:
    allowed_roots = {"anyio", "attrs", *STDLIB}
    bad = {
        name
        for name in imported_modules(path)
        if name.split(".")[0] not in allowed_roots
        and not name.startswith("riverrun.actors")
        and name != "riverrun._errors"
    }
    assert set() == bad


@pytest.mark.parametrize("path", files_of("persistence"), ids=lambda p: p.name)
def test_persistence_never_imports_runtime(path: Path) -> None:
    bad = {
        name
        for name in imported_modules(path)
        if name.startswith(("riverrun.runtime", "riverrun.testing", "riverrun.cli"))
    }
    assert set() == bad


@pytest.mark.parametrize("path", files_of("persistence"), ids=lambda p: p.name)
def test_nats_and_aioboto3_only_in_their_backend_modules(path: Path) -> None:
    names = {name.split(".")[0] for name in imported_modules(path)}
    if "nats" in names:
        assert "jetstream" in path.name or "nats" in path.name or "embedded" in path.name
    if "aioboto3" in names or "botocore" in names:
        assert "s3" in path.name


def test_the_layering_check_sees_real_imports() -> None:
    # Guard against a vacuous test: the resolver must find what a known module imports.
    found = imported_modules(PACKAGE / "persistence" / "_backend.py")
    assert {"riverrun.persistence._protocols", "attrs"} <= found
