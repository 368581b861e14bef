"""TLS against a real nats-server with certificates made by the test: mutual TLS runs a
workflow; a missing CA or client certificate is a clear ``StoreTLSError``, not a hang."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import anyio
import pytest

from riverrun import Runtime
from riverrun.persistence import EmbeddedNatsServer, StoreTLSError
from riverrun.testing._nats import unique_namespace

from .conftest import Pki, quoted
from .workflows import doubler

pytestmark = pytest.mark.anyio

#: bounds a hang; the failures under test come back at once
HANG = 30


def tls_config(pki: Pki, *, verify: bool) -> str:
    return (
        "tls {\n"
        f"  cert_file: {quoted(pki.server_cert)}\n"
        f"  key_file: {quoted(pki.server_key)}\n"
        f"  ca_file: {quoted(pki.ca)}\n"
        f"  verify: {'true' if verify else 'false'}\n"
        "}\n"
    )


@pytest.fixture
def mtls_server(pki: Pki, secured_server: Callable[[str], EmbeddedNatsServer]) -> EmbeddedNatsServer:
    """A server that requires TLS and verifies client certificates."""
    return secured_server(tls_config(pki, verify=True))


async def test_mutual_tls_with_pem_files_runs_a_workflow(
    mtls_server: EmbeddedNatsServer, pki: Pki
) -> None:
    async with Runtime.connect(
        mtls_server.url,
        namespace=unique_namespace(),
        workflows=[doubler],
        tls_ca_file=pki.ca,
        tls_cert_file=pki.client_cert,
        tls_key_file=pki.client_key,
    ) as rt:
        handle = await rt.client.start(doubler, 21)
        assert 42 == await handle.result(timeout=HANG)


async def test_mutual_tls_with_an_ssl_context_runs_a_workflow(
    mtls_server: EmbeddedNatsServer, pki: Pki
) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    async with Runtime.connect(
        mtls_server.url.replace("nats://127.0.0.1", "tls://localhost"),
        namespace=unique_namespace(),
        workflows=[doubler],
        tls=context,
    ) as rt:
        handle = await rt.client.start(doubler, 5)
        assert 10 == await handle.result(timeout=HANG)


async def test_without_the_ca_the_server_is_not_trusted(
    mtls_server: EmbeddedNatsServer, pki: Pki
) -> None:
    with anyio.fail_after(HANG), pytest.raises(StoreTLSError) as caught:
        async with Runtime.connect(
            mtls_server.url,
            namespace=unique_namespace(),
            connect_timeout=HANG,
            tls_cert_file=pki.client_cert,
            tls_key_file=pki.client_key,
        ):
            pass
    message = str(caught.value)
    assert "certificate verify failed" in message
    assert "tls_ca_file" in message and f"127.0.0.1:{mtls_server.port}" in message


async def test_a_plain_client_is_told_the_server_wants_tls(
    mtls_server: EmbeddedNatsServer,
) -> None:
    # the server asks for TLS; nats-py tries the system's CAs, which do not know ours
    with anyio.fail_after(HANG), pytest.raises(StoreTLSError) as caught:
        async with Runtime.connect(
            mtls_server.url, namespace=unique_namespace(), connect_timeout=HANG
        ):
            pass
    assert "tls_ca_file" in str(caught.value)


async def test_without_a_client_certificate_a_verifying_server_refuses(
    mtls_server: EmbeddedNatsServer, pki: Pki
) -> None:
    with anyio.fail_after(HANG), pytest.raises(StoreTLSError) as caught:
        async with Runtime.connect(
            mtls_server.url,
            namespace=unique_namespace(),
            connect_timeout=HANG,
            tls_ca_file=pki.ca,
        ):
            pass
    assert "tls_cert_file" in str(caught.value)


async def test_a_certificate_for_another_name_is_refused_and_tls_hostname_fixes_it(
    pki: Pki, secured_server: Callable[[str], EmbeddedNatsServer]
) -> None:
    server = secured_server(tls_config(pki, verify=False))
    # the certificate names localhost and 127.0.0.1, not "nats.internal"
    with anyio.fail_after(HANG), pytest.raises(StoreTLSError):
        async with Runtime.connect(
            server.url,
            namespace=unique_namespace(),
            connect_timeout=HANG,
            tls_ca_file=pki.ca,
            tls_hostname="nats.internal",
        ):
            pass
    async with Runtime.connect(
        server.url,
        namespace=unique_namespace(),
        workflows=[doubler],
        tls_ca_file=pki.ca,
        tls_hostname="localhost",
    ) as rt:
        assert 4 == await (await rt.client.start(doubler, 2)).result(timeout=HANG)
