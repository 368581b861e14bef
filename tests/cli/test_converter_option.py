"""`riverrun worker --converter MODULE:ATTR` and a module's ``riverrun_converter``."""

from __future__ import annotations

import pytest

from riverrun.cli._exit import CliError
from riverrun.cli._worker import load_converter, load_workflows
from tests.cli.sample_modules import typed


def test_the_module_converter_is_found_without_the_option() -> None:
    load_workflows("tests.cli.sample_modules.typed")
    assert typed.riverrun_converter is load_converter("tests.cli.sample_modules.typed", None)


def test_the_option_names_a_converter() -> None:
    found = load_converter("tests.cli.workflows", "tests.cli.sample_modules.typed:riverrun_converter")
    assert typed.riverrun_converter is found


def test_a_module_without_one_uses_the_default() -> None:
    load_workflows("tests.cli.workflows")
    assert load_converter("tests.cli.workflows", None) is None


def test_the_option_refuses_what_is_not_a_converter() -> None:
    with pytest.raises(CliError, match=r"not a riverrun\.DataConverter"):
        load_converter("tests.cli.workflows", "tests.cli.sample_modules.typed:not_a_converter")
    with pytest.raises(CliError, match="expected MODULE:ATTR"):
        load_converter("tests.cli.workflows", "tests.cli.sample_modules.typed")
