"""A ``.creds`` file (decentralized JWT authentication), with an operator, accounts and users
signed by the test itself (what ``nsc`` would make), against a real nats-server in operator
mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from riverrun import Runtime
from riverrun.persistence import EmbeddedNatsServer, StorePermissionDenied
from riverrun.testing._nats import unique_namespace
from tests.cli.conftest import base_env, run_riverrun

from .conftest import Operator, SigningKey
from .workflows import approval

pytestmark = pytest.mark.anyio

HANG = 30


@pytest.fixture
def operator() -> Operator:
    return Operator.new()


@pytest.fixture
def operator_server(
    operator: Operator, secured_server: Callable[[str], EmbeddedNatsServer]
) -> EmbeddedNatsServer:
    return secured_server(operator.server_config)


async def test_a_creds_file_runs_a_workflow(
    operator: Operator, operator_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    creds = operator.creds(tmp_path / "worker.creds")
    async with Runtime.connect(
        operator_server.url,
        namespace=unique_namespace(),
        workflows=[approval],
        user_credentials=creds,
    ) as rt:
        handle = await rt.client.start(approval, 9)
        await handle.signal("decide", "go")
        assert "9: go" == await handle.result(timeout=HANG)


async def test_creds_signed_by_an_unknown_account_are_refused(
    operator: Operator, operator_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    import nkeys

    stranger = SigningKey.new(nkeys.PREFIX_BYTE_ACCOUNT)
    creds = operator.creds(tmp_path / "stranger.creds", signer=stranger)
    with anyio.fail_after(HANG), pytest.raises(StorePermissionDenied) as caught:
        async with Runtime.connect(
            operator_server.url,
            namespace=unique_namespace(),
            connect_timeout=HANG,
            user_credentials=creds,
        ):
            pass
    assert "stranger.creds" in str(caught.value)  # says what it connected with


def test_the_command_line_with_a_creds_file(
    operator: Operator, operator_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    creds = operator.creds(tmp_path / "cli.creds", name="cli")
    env = base_env(RIVERRUN_SERVERS=operator_server.url, RIVERRUN_CREDS=str(creds))
    result = run_riverrun("runs", "list", "--json", env=env, timeout=30)
    assert 0 == result.code, result.describe()
    without = run_riverrun(
        "runs", "list", env=base_env(RIVERRUN_SERVERS=operator_server.url), timeout=30
    )
    assert 1 == without.code, without.describe()
    assert "refused the credentials" in without.stderr


async def test_an_account_without_jetstream_is_told_so(
    secured_server: Callable[[str], EmbeddedNatsServer], tmp_path: Path
) -> None:
    operator = Operator.new(jetstream=False)
    server = secured_server(operator.server_config)
    creds = operator.creds(tmp_path / "worker.creds")
    with anyio.fail_after(HANG), pytest.raises(StorePermissionDenied) as caught:
        async with Runtime.connect(server.url, namespace=unique_namespace(), user_credentials=creds):
            pass
    assert "not enabled for this user's account" in str(caught.value)
