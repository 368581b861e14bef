"""The command line's NATS credential and TLS options: where each comes from, and what the
real command does with them against secured servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from riverrun.cli import cli
from riverrun.cli._settings import Settings, connection_options, pass_settings
from riverrun.persistence import EmbeddedNatsServer
from tests.cli.conftest import base_env, run_riverrun

from .conftest import NKey, Pki, make_user_nkey, quoted
from .test_tls import tls_config

seen: list[Settings] = []

ENV_CLEAN = {
    name: None
    for name in (
        "RIVERRUN_SERVERS",
        "RIVERRUN_CREDS",
        "RIVERRUN_NKEY_SEED",
        "RIVERRUN_USER",
        "RIVERRUN_PASSWORD",
        "RIVERRUN_TOKEN",
        "RIVERRUN_TLS_CA",
        "RIVERRUN_TLS_CERT",
        "RIVERRUN_TLS_KEY",
        "RIVERRUN_TLS_HOSTNAME",
        "RIVERRUN_INBOX_PREFIX",
        "RIVERRUN_S3_BUCKET",
    )
}


@click.command("security-probe")
@connection_options(envvar=False)
@pass_settings
def probe(settings: Settings) -> None:
    seen.append(settings)


@pytest.fixture(autouse=True, scope="module")
def _probe_command() -> Iterator[None]:
    cli.add_command(probe)
    yield
    cli.commands.pop("security-probe", None)


def security_for(*args: str, **env: Any) -> dict[str, Any]:
    seen.clear()
    result = CliRunner().invoke(cli, [*args], env={**ENV_CLEAN, **env})
    assert 0 == result.exit_code, result.output
    (settings,) = seen
    return settings.security


def test_no_security_by_default() -> None:
    assert {} == security_for("security-probe")


def test_options_before_or_after_the_command() -> None:
    expected = {
        "user_credentials": "w.creds",
        "tls_ca_file": "ca.pem",
        "tls_cert_file": "c.pem",
        "tls_key_file": "k.pem",
        "tls_hostname": "nats.internal",
        "inbox_prefix": "_INBOX_ORDERS_CLIENT",
    }
    args = [
        "--inbox-prefix", "_INBOX_ORDERS_CLIENT",
        "--creds", "w.creds", "--tls-ca", "ca.pem", "--tls-cert", "c.pem",
        "--tls-key", "k.pem", "--tls-hostname", "nats.internal",
    ]  # fmt: skip
    assert expected == security_for(*args, "security-probe")
    assert expected == security_for("security-probe", *args)
    assert {"nkeys_seed": "u.nk", "user": "bob"} == security_for(
        "security-probe", "--nkey-seed", "u.nk", "--user", "bob"
    )


def test_environment_and_the_closest_option_wins() -> None:
    env = {
        "RIVERRUN_CREDS": "env.creds",
        "RIVERRUN_TLS_CA": "env-ca.pem",
        "RIVERRUN_USER": "env-user",
        "RIVERRUN_PASSWORD": "env-pw",
        "RIVERRUN_TOKEN": "env-token",
        "RIVERRUN_NKEY_SEED": "SUxxxx",
    }
    assert {
        "user_credentials": "env.creds",
        "tls_ca_file": "env-ca.pem",
        "user": "env-user",
        "password": "env-pw",
        "token": "env-token",
        "nkeys_seed": "SUxxxx",
    } == security_for("security-probe", **env)
    got = security_for("--creds", "global.creds", "security-probe", "--creds", "local.creds", **env)
    assert "local.creds" == got["user_credentials"]


def test_a_password_has_no_option_and_is_not_in_the_settings_repr() -> None:
    result = CliRunner().invoke(cli, ["--password", "x", "security-probe"], env=ENV_CLEAN)
    assert 2 == result.exit_code
    seen.clear()
    CliRunner().invoke(cli, ["security-probe"], env={**ENV_CLEAN, "RIVERRUN_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(seen[0])


# -- the real command, against secured servers ----------------------------------------------


def test_a_missing_creds_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "worker.creds"
    result = run_riverrun("runs", "list", "--creds", str(missing), env=base_env(), timeout=30)
    assert 2 == result.code, result.describe()
    assert str(missing) in result.stderr and "does not exist" in result.stderr
    assert 1 == len(result.stderr.strip().splitlines())


def test_mutual_tls_from_the_environment(
    pki: Pki, secured_server: Callable[[str], EmbeddedNatsServer]
) -> None:
    server = secured_server(tls_config(pki, verify=True))
    env = base_env(
        RIVERRUN_SERVERS=server.url,
        RIVERRUN_TLS_CA=str(pki.ca),
        RIVERRUN_TLS_CERT=str(pki.client_cert),
        RIVERRUN_TLS_KEY=str(pki.client_key),
    )
    ok = run_riverrun("runs", "list", "--json", env=env, timeout=30)
    assert [] == json.loads(ok.stdout), ok.describe()
    env.pop("RIVERRUN_TLS_CA")
    refused = run_riverrun("runs", "list", env=env, timeout=30)
    assert 1 == refused.code, refused.describe()
    assert "TLS handshake" in refused.stderr and "--tls-ca" in refused.stderr
    assert 1 == len(refused.stderr.strip().splitlines())


@pytest.fixture
def users_server(secured_server: Callable[[str], EmbeddedNatsServer]) -> tuple[EmbeddedNatsServer, NKey]:
    nkey = make_user_nkey()
    server = secured_server(
        "authorization {\n  users = [\n"
        f"    {{ user: alice, password: {quoted('alice-pw')} }}\n"
        f"    {{ nkey: {quoted(nkey.public)} }}\n"
        "  ]\n}\n"
    )
    return server, nkey


def test_user_password_and_nkey_from_the_environment(
    users_server: tuple[EmbeddedNatsServer, NKey], tmp_path: Path
) -> None:
    server, nkey = users_server
    base = base_env(RIVERRUN_SERVERS=server.url)
    for extra in (
        {"RIVERRUN_USER": "alice", "RIVERRUN_PASSWORD": "alice-pw"},
        {"RIVERRUN_NKEY_SEED": nkey.seed},
    ):
        result = run_riverrun("runs", "list", "--json", env={**base, **extra}, timeout=30)
        assert 0 == result.code, result.describe()
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(nkey.seed)
    result = run_riverrun("runs", "list", "--nkey-seed", str(seed_file), env=base, timeout=30)
    assert 0 == result.code, result.describe()


def test_wrong_credentials_are_one_line_without_the_password(
    users_server: tuple[EmbeddedNatsServer, NKey],
) -> None:
    server, _ = users_server
    env = base_env(
        RIVERRUN_SERVERS=server.url, RIVERRUN_USER="alice", RIVERRUN_PASSWORD="not-alice-pw"
    )
    result = run_riverrun("runs", "list", env=env, timeout=30)
    assert 1 == result.code, result.describe()
    assert "refused the credentials" in result.stderr
    assert "not-alice-pw" not in result.stderr + result.stdout
    assert 1 == len(result.stderr.strip().splitlines())
