"""Fixtures for the security tests: a PKI made by the test (CA, server and client
certificates), nkey pairs, and nats-servers started with TLS, users or permissions.

Nothing here needs the network: certificates come from ``cryptography`` and nkeys from the
``nkeys`` package, both installed with riverrun's dependencies.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from riverrun.persistence import EmbeddedNatsServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@attrs.frozen(kw_only=True)
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1/localhost, a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_pki(directory: Path) -> Pki:
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("riverrun test CA"))
        .issuer_name(_name("riverrun test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, *, server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
        )
        if server:
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]
            builder = builder.add_extension(
                x509.SubjectAlternativeName(names), critical=False
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server_cert = leaf("nats-server", server=True)
    client_key, client_cert = leaf("riverrun-client", server=False)
    return Pki(
        ca=_write_cert(directory / "ca.pem", ca),
        server_cert=_write_cert(directory / "server.pem", server_cert),
        server_key=_write_key(directory / "server-key.pem", server_key),
        client_cert=_write_cert(directory / "client.pem", client_cert),
        client_key=_write_key(directory / "client-key.pem", client_key),
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@attrs.frozen(kw_only=True)
class NKey:
    seed: str
    public: str


def make_user_nkey() -> NKey:
    """A fresh user nkey pair (``SU...`` seed, ``U...`` public key)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    pair = nkeys.from_seed(bytearray(seed))
    return NKey(seed=seed.decode(), public=pair.public_key.decode())


def quoted(value: object) -> str:
    """A nats-server config string (JSON quoting is valid there)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


ServerFactory = Callable[..., EmbeddedNatsServer]


@pytest.fixture
def secured_server(nats_server_factory: ServerFactory) -> Callable[[str], EmbeddedNatsServer]:
    """``secured_server(config)``: a private nats-server with JetStream and ``config`` added."""

    def start(config: str) -> EmbeddedNatsServer:
        return nats_server_factory(extra_config=config)

    return start


# -- decentralized (JWT) authentication, made offline ------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@attrs.frozen(kw_only=True)
class SigningKey:
    seed: str
    public: str

    @classmethod
    def new(cls, prefix: int) -> SigningKey:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        return cls(seed=seed.decode(), public=nkeys.from_seed(bytearray(seed)).public_key.decode())

    def sign(self, data: bytes) -> bytes:
        signature: bytes = nkeys.from_seed(bytearray(self.seed.encode())).sign(data)
        return signature


def _jwt(issuer: SigningKey, subject: str, name: str, nats: dict[str, object]) -> str:
    """A NATS JWT (v2) as ``nsc`` makes it: ed25519-nkey signed claims."""
    claims: dict[str, object] = {
        "jti": "",
        "iat": int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    body = json.dumps(claims, separators=(",", ":")).encode()
    claims["jti"] = base64.b32encode(hashlib.new("sha512_256", body).digest()).decode().rstrip("=")
    header = _b64(b'{"typ":"JWT","alg":"ed25519-nkey"}')
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}.{_b64(issuer.sign(f'{header}.{payload}'.encode()))}"


_UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}


@attrs.frozen(kw_only=True)
class Operator:
    """An operator, a system account and an application account with JetStream, all signed
    here without ``nsc``: ``server_config`` for nats-server, ``creds`` files for users."""

    operator: SigningKey
    account: SigningKey
    server_config: str

    @classmethod
    def new(cls, *, jetstream: bool = True) -> Operator:
        operator = SigningKey.new(nkeys.PREFIX_BYTE_OPERATOR)
        account = SigningKey.new(nkeys.PREFIX_BYTE_ACCOUNT)
        system = SigningKey.new(nkeys.PREFIX_BYTE_ACCOUNT)
        operator_jwt = _jwt(
            operator, operator.public, "test-operator",
            {"type": "operator", "system_account": system.public},
        )  # fmt: skip
        size = -1 if jetstream else 0
        limits = {"mem_storage": size, "disk_storage": size, "streams": size, "consumer": size}
        no_defaults = {"pub": {}, "sub": {}}
        account_jwt = _jwt(
            operator, account.public, "ORDERS",
            {"type": "account", "limits": {**_UNLIMITED, **limits},
             "default_permissions": no_defaults},
        )  # fmt: skip
        system_jwt = _jwt(
            operator, system.public, "SYS",
            {"type": "account", "limits": _UNLIMITED, "default_permissions": no_defaults},
        )  # fmt: skip
        config = (
            f"operator: {quoted(operator_jwt)}\n"
            f"system_account: {quoted(system.public)}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {quoted(account.public)}: {quoted(account_jwt)}\n"
            f"  {quoted(system.public)}: {quoted(system_jwt)}\n"
            "}\n"
        )
        return cls(operator=operator, account=account, server_config=config)

    def creds(self, path: Path, *, name: str = "worker", signer: SigningKey | None = None) -> Path:
        """Write a ``.creds`` file for a new user of the account (signed by ``signer``, by
        default the account's own key)."""
        user = SigningKey.new(nkeys.PREFIX_BYTE_USER)
        signer = signer or self.account
        user_jwt = _jwt(
            signer, user.public, name,
            {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
             "issuer_account": self.account.public},
        )  # fmt: skip
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{user_jwt}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{user.seed}\n"
            "------END USER NKEY SEED------\n"
        )
        return path
