"""Authentication against a real nats-server: user/password, token and nkeys run a workflow;
wrong credentials are ``StorePermissionDenied`` at once; bad paths are ``ValueError`` before
anything connects."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from riverrun import Runtime
from riverrun.persistence import EmbeddedNatsServer, NatsSecurity, StorePermissionDenied
from riverrun.testing._nats import unique_namespace

from .conftest import NKey, make_user_nkey, quoted
from .workflows import approval, doubler

pytestmark = pytest.mark.anyio

HANG = 30
PASSWORD = "alice-pw-1c9e"


@pytest.fixture(scope="module")
def nkey() -> NKey:
    return make_user_nkey()


@pytest.fixture
def users_server(
    secured_server: Callable[[str], EmbeddedNatsServer], nkey: NKey
) -> EmbeddedNatsServer:
    return secured_server(
        "authorization {\n  users = [\n"
        f"    {{ user: alice, password: {quoted(PASSWORD)} }}\n"
        f"    {{ nkey: {quoted(nkey.public)} }}\n"
        "  ]\n}\n"
    )


async def run_one(rt: Runtime) -> None:
    handle = await rt.client.start(approval, 7)
    await handle.signal("decide", "yes")
    assert "7: yes" == await handle.result(timeout=HANG)


async def test_user_and_password_options(users_server: EmbeddedNatsServer) -> None:
    async with Runtime.connect(
        users_server.url,
        namespace=unique_namespace(),
        workflows=[approval],
        user="alice",
        password=PASSWORD,
    ) as rt:
        assert PASSWORD not in repr(rt)
        await run_one(rt)


async def test_user_and_password_in_the_url(users_server: EmbeddedNatsServer) -> None:
    url = users_server.url.replace("nats://", f"nats://alice:{PASSWORD}@")
    async with Runtime.connect(url, namespace=unique_namespace(), workflows=[approval]) as rt:
        await run_one(rt)


async def test_nkey_seed_file(
    users_server: EmbeddedNatsServer, nkey: NKey, tmp_path: Path
) -> None:
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(nkey.seed + "\n")
    async with Runtime.connect(
        users_server.url, namespace=unique_namespace(), workflows=[approval], nkeys_seed=seed_file
    ) as rt:
        await run_one(rt)


async def test_nkey_seed_inline(users_server: EmbeddedNatsServer, nkey: NKey) -> None:
    async with Runtime.connect(
        users_server.url, namespace=unique_namespace(), workflows=[doubler], nkeys_seed=nkey.seed
    ) as rt:
        assert nkey.seed not in repr(rt)
        assert 6 == await (await rt.client.start(doubler, 3)).result(timeout=HANG)


@pytest.mark.parametrize(
    "credentials",
    [
        {"user": "alice", "password": "wrong"},
        {"nkeys_seed": "unknown"},  # replaced by a seed the server does not know
        {},
    ],
    ids=["wrong-password", "unknown-nkey", "none"],
)
async def test_wrong_credentials_are_permission_denied(
    users_server: EmbeddedNatsServer, credentials: dict[str, str]
) -> None:
    if "nkeys_seed" in credentials:
        credentials = {"nkeys_seed": make_user_nkey().seed}
    with anyio.fail_after(HANG), pytest.raises(StorePermissionDenied) as caught:
        async with Runtime.connect(
            users_server.url, namespace=unique_namespace(), connect_timeout=HANG, **credentials
        ):
            pass
    message = str(caught.value)
    assert "Authorization Violation" in message
    assert f"127.0.0.1:{users_server.port}" in message
    assert "wrong" not in message
    assert caught.value.subject is None


# -- checked at the entry point -----------------------------------------------------------


def test_a_missing_creds_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "worker.creds"
    with pytest.raises(ValueError, match=re.escape("worker.creds")) as caught:
        Runtime.connect("nats://127.0.0.1:4222", user_credentials=missing)
    assert "does not exist" in str(caught.value) and "nsc generate creds" in str(caught.value)


def test_a_file_that_is_not_a_creds_file_is_refused(tmp_path: Path) -> None:
    # nats-py would loop for ever looking for the JWT in it
    not_creds = tmp_path / "worker.creds"
    not_creds.write_text("just some text\n")
    with pytest.raises(ValueError, match="is not a creds file"):
        Runtime.connect("nats://127.0.0.1:4222", user_credentials=not_creds)


def test_a_missing_seed_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape("user.nk")):
        Runtime.connect("nats://127.0.0.1:4222", nkeys_seed=tmp_path / "user.nk")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"user": "a", "token": "t"}, "one way of authenticating"),
        ({"password": "p"}, "needs a user"),
        ({"tls_cert_file": "c.pem"}, "both tls_cert_file and tls_key_file"),
        ({"tls_ca_file": "no-such-ca.pem"}, "no-such-ca.pem' does not exist"),
        ({"tls": False, "tls_ca_file": "ca.pem"}, "contradicts"),
        ({"inbox_prefix": "_INBOX.>"}, "without wildcards"),
    ],
)
def test_contradicting_or_missing_settings_are_value_errors(
    options: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Runtime.connect("nats://127.0.0.1:4222", **options)


def test_secrets_are_not_in_the_repr_and_reach_nats_py(tmp_path: Path, nkey: NKey) -> None:
    creds = tmp_path / "u.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\neyJ0eXAi.e30.sig\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{nkey.seed}\n------END USER NKEY SEED------\n"
    )
    security = NatsSecurity.build(user_credentials=creds, tls=True, tls_hostname="nats.example")
    assert {
        "user_credentials": str(creds),
        "tls": security.tls,
        "tls_hostname": "nats.example",
    } == security.connect_options()
    inline = NatsSecurity.build(nkeys_seed=nkey.seed)
    assert {"nkeys_seed_str": nkey.seed} == inline.connect_options()
    assert nkey.seed not in repr(inline)
    password = NatsSecurity.build(user="alice", password="hunter2")
    assert "hunter2" not in repr(password) and "alice" in repr(password)
