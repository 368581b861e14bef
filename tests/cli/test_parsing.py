"""What users type: JSON arguments, dates, server lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from riverrun.cli._exit import CliError, ExitCode
from riverrun.cli._parsing import (
    parse_call_arguments,
    parse_datetime,
    parse_json,
    parse_servers,
)


def test_a_json_list_is_positional_arguments() -> None:
    assert parse_call_arguments("[0, 100]", None) == ([0, 100], {})


def test_a_json_object_is_keyword_arguments() -> None:
    assert parse_call_arguments('{"offset": 0, "batch_size": 50}', None) == (
        [],
        {"offset": 0, "batch_size": 50},
    )


def test_any_other_json_value_is_one_positional_argument() -> None:
    assert parse_call_arguments('"hello"', None) == (["hello"], {})
    assert parse_call_arguments("5", None) == ([5], {})
    assert parse_call_arguments("null", None) == ([None], {})


def test_kwargs_add_to_positional_arguments() -> None:
    assert parse_call_arguments("[1]", '{"b": 2}') == ([1], {"b": 2})


def test_no_arguments() -> None:
    assert parse_call_arguments(None, None) == ([], {})


def test_a_keyword_given_twice_is_a_usage_error() -> None:
    with pytest.raises(CliError) as info:
        parse_call_arguments('{"a": 1, "b": 2}', '{"b": 3}')
    assert info.value.exit_code == ExitCode.USAGE
    assert "b" in info.value.message


def test_kwargs_must_be_an_object() -> None:
    with pytest.raises(CliError) as info:
        parse_call_arguments(None, "[1, 2]")
    assert info.value.exit_code == ExitCode.USAGE
    assert "not a list" in info.value.message


def test_malformed_json_says_line_and_column() -> None:
    with pytest.raises(CliError) as info:
        parse_json('{"offset": 0,\n "size": }', what="ARGS")
    assert info.value.exit_code == ExitCode.USAGE
    assert "line 2, column 10" in info.value.message
    assert "ARGS is not valid JSON" in info.value.message
    assert "\n" not in info.value.message


def test_an_unquoted_word_gets_a_quoting_hint() -> None:
    with pytest.raises(CliError) as info:
        parse_json("hello", what="PAYLOAD")
    assert "line 1, column 1" in info.value.message
    assert "'\"hello\"'" in info.value.message


def test_iso_dates_and_datetimes() -> None:
    assert datetime(2025, 1, 15, 10, 30, tzinfo=UTC) == parse_datetime("2025-01-15T10:30:00Z")
    day = parse_datetime("2025-01-15")
    assert day.tzinfo is not None
    assert (day.year, day.month, day.day) == (2025, 1, 15)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_ages_are_relative_to_now(text: str, ago: timedelta) -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    assert now - ago == parse_datetime(text, now=now)


def test_a_bad_date_is_a_usage_error() -> None:
    with pytest.raises(CliError) as info:
        parse_datetime("last tuesday")
    assert info.value.exit_code == ExitCode.USAGE
    assert "ISO 8601" in info.value.message


def test_servers_are_split_and_get_a_scheme() -> None:
    assert parse_servers("a:4222, tls://b:4222 nats://c:4222") == [
        "nats://a:4222",
        "tls://b:4222",
        "nats://c:4222",
    ]


def test_empty_servers_is_a_usage_error() -> None:
    with pytest.raises(CliError):
        parse_servers(" , ")


def test_json_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "args.json"
    path.write_text('{"offset": 5}')
    assert parse_call_arguments(f"@{path}", None) == ([], {"offset": 5})


def test_json_from_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(CliError) as info:
        parse_json(f"@{tmp_path / 'nope.json'}", what="ARGS")
    assert info.value.exit_code == ExitCode.USAGE
    assert "cannot read ARGS" in info.value.message


def test_malformed_json_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[1,\n2,,]")
    with pytest.raises(CliError) as info:
        parse_json(f"@{path}", what="ARGS")
    assert str(path) in info.value.message
    assert "line 2, column 3" in info.value.message
