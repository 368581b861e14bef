"""Global options: where each setting comes from (option, environment, default)."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from riverrun.cli import cli
from riverrun.cli._settings import Settings, connection_options, json_option, pass_settings

seen: list[Settings] = []


@click.command("probe")
@json_option
@connection_options(envvar=False)
@pass_settings
def probe(settings: Settings) -> None:
    seen.append(settings)


def settings_for(*args: str, **env: Any) -> Settings:
    seen.clear()
    result = CliRunner().invoke(
        cli,
        [*args],
        env={
            "RIVERRUN_SERVERS": None,
            "RIVERRUN_NAMESPACE": None,
            "RIVERRUN_REPLICAS": None,
            "RIVERRUN_S3_BUCKET": None,
            **env,
        },
    )
    assert 0 == result.exit_code, result.output
    (settings,) = seen
    return settings


@pytest.fixture(autouse=True, scope="module")
def _probe_command() -> Any:
    """A command that records the resolved settings, added to the real group for this module."""
    cli.add_command(probe)
    yield
    cli.commands.pop("probe", None)


def test_defaults() -> None:
    settings = settings_for("probe")
    assert ["nats://127.0.0.1:4222"] == settings.servers
    assert "default" == settings.namespace
    assert not settings.json
    assert 1 == settings.replicas
    assert settings.s3 is None


def test_environment() -> None:
    settings = settings_for(
        "probe",
        RIVERRUN_SERVERS="nats://a:1,nats://b:2",
        RIVERRUN_NAMESPACE="prod",
        RIVERRUN_REPLICAS="3",
        RIVERRUN_S3_BUCKET="payloads",
    )
    assert ["nats://a:1", "nats://b:2"] == settings.servers
    assert "prod" == settings.namespace
    assert 3 == settings.replicas
    assert settings.s3 is not None and "payloads" == settings.s3.bucket


def test_options_beat_the_environment_and_the_closest_wins() -> None:
    settings = settings_for(
        "--servers",
        "nats://global:1",
        "--namespace",
        "global",
        "probe",
        "--servers",
        "nats://local:1",
        RIVERRUN_SERVERS="nats://env:1",
        RIVERRUN_NAMESPACE="env",
    )
    assert ["nats://local:1"] == settings.servers
    assert "global" == settings.namespace


def test_json_before_or_after_the_command() -> None:
    assert settings_for("--json", "probe").json
    assert settings_for("probe", "--json").json
