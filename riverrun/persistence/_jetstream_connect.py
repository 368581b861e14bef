"""Opening the NATS connection: credentials and TLS, and telling a refusal from an outage.

Design note: nats-py's ``connect`` reports why a server refused only through the error
callback, and on an untrusted server certificate it keeps trying until the timeout. So the
callback records what the server said, and a refusal that retrying cannot cure (wrong
credentials, a failed TLS handshake) ends the attempt at once with an error that says what to
change, instead of "no answer" after the whole connect timeout. Every URL shown is redacted.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from typing import Any

import anyio
import nats.errors
from nats.aio.client import Client as NatsClient

from .._errors import PersistenceError, StorePermissionDenied, StoreTLSError, StoreUnavailable
from ._jetstream_conn import ServerErrors
from ._nats_security import NatsSecurity
from ._redact import redact_url

__all__ = ["connect"]

_log = logging.getLogger("riverrun.persistence.jetstream")


async def connect(
    servers: list[str],
    *,
    connect_timeout: float,
    name: str,
    security: NatsSecurity | None = None,
    server_errors: ServerErrors | None = None,
) -> NatsClient:
    """Connect, trying every server once or twice within ``connect_timeout``; afterwards the
    client reconnects forever (a restarting server is an outage, not the end).

    A refusal that retrying cannot cure ends the attempt at once: wrong credentials
    (``StorePermissionDenied``), a TLS handshake that failed (``StoreTLSError``; nats-py
    would otherwise wait on an untrusted server certificate until the timeout).

    Raises:
        StoreUnavailable: no server answered within ``connect_timeout``.
        StorePermissionDenied: the server refused the credentials.
        StoreTLSError: the TLS handshake failed.
    """
    where = redact_url(", ".join(servers))
    errors: deque[BaseException] = deque(maxlen=4)
    fatal = asyncio.Event()

    connected = False
    logged: set[str] = set()

    async def on_error(exc: Exception) -> None:
        # nats-py reports connection trouble here; the default callback logs at ERROR.
        errors.append(exc)
        if server_errors is not None:
            server_errors.record(exc)
        refusal = _refusal(exc)
        if refusal is not None:
            fatal.set()
            if connected and refusal not in logged:
                # credentials revoked or a certificate changed while we were connected: the
                # client keeps reconnecting (every call fails fast meanwhile); say why, once
                logged.add(refusal)
                _log.error(
                    "NATS at %s refused this client on reconnect (%s); calls fail until the "
                    "credentials or TLS settings are fixed",
                    where,
                    redact_url(f"{type(exc).__name__}: {exc}"),
                )
        _log.debug("NATS connection error: %s", redact_url(repr(exc)))

    options: dict[str, Any] = {
        "name": name,
        "connect_timeout": max(1, int(connect_timeout)),
        "reconnect_time_wait": 0.25,  # seconds; typed int, but a float works
        "max_reconnect_attempts": 1,
        "error_cb": on_error,
        "allow_reconnect": True,
        "skip_subject_validation": True,  # our subjects are built from escaped tokens
    }
    if security is not None:
        options.update(security.connect_options())
    nc = NatsClient()
    connecting = asyncio.ensure_future(nc.connect(servers, **options))
    refused = asyncio.ensure_future(fatal.wait())
    try:
        await asyncio.wait(
            {connecting, refused}, timeout=connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        refused.cancel()
        if not connecting.done():
            connecting.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({connecting}, timeout=5.0)  # let it unwind
                await _close_quietly(nc)
    failure: BaseException | None = None
    if connecting.done() and not connecting.cancelled():
        failure = connecting.exception()
        if failure is None:
            # From now on, outages are waited out: reconnect forever, in the background.
            nc.options["max_reconnect_attempts"] = -1
            connected = True
            return nc
        await _close_quietly(nc)
    raise _connect_error(where, list(errors), failure, connect_timeout, security) from failure


async def _close_quietly(nc: NatsClient) -> None:
    try:
        await nc.close()
    except Exception:
        _log.debug("closing a NATS client that never connected failed", exc_info=True)


def _refusal(exc: BaseException) -> str | None:
    """``"auth"`` or ``"tls"`` if ``exc`` is a refusal that retrying cannot cure."""
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    text = str(exc).lower()
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text:
        return "auth"
    if "authentication" in text and ("expired" in text or "timeout" in text):
        return "auth"
    return None


def _connect_error(
    where: str,
    errors: list[BaseException],
    failure: BaseException | None,
    connect_timeout: float,
    security: NatsSecurity | None,
) -> PersistenceError:
    how = security.describe() if security is not None else ""
    for exc in reversed(errors):
        kind = _refusal(exc)
        detail = redact_url(f"{type(exc).__name__}: {exc}")
        if kind == "auth":
            return StorePermissionDenied(
                f"NATS at {where} refused the credentials ({detail}); check the user and "
                "password, token, nkey seed or creds file"
                + (f" (connecting with {how})" if how else "")
                + " against the server's authorization config"
            )
        if kind == "tls":
            if "certificate required" in str(exc).lower():
                advice = (
                    "the server verifies clients: give a client certificate and key "
                    "(tls_cert_file= and tls_key_file=, --tls-cert / --tls-key)"
                )
            elif isinstance(exc, ssl.SSLCertVerificationError | ssl.CertificateError):
                advice = (
                    "the server's certificate is not trusted or not issued for this host: give "
                    "the CA that signed it (tls_ca_file=, --tls-ca), or the name it was issued "
                    "for (tls_hostname=, --tls-hostname)"
                )
            else:
                advice = (
                    "check that the server speaks TLS and that the CA, certificate and key "
                    "given are the right ones"
                )
            return StoreTLSError(f"TLS handshake with NATS at {where} failed ({detail}); {advice}")
    if errors:
        last = errors[-1]
        detail = redact_url(f"{type(last).__name__}: {last}")
    elif failure is not None:
        detail = redact_url(f"{type(failure).__name__}: {failure}")
    else:
        detail = f"no answer within {connect_timeout:g} s"
    return StoreUnavailable(
        f"cannot connect to NATS at {where}: {detail}. Is nats-server running (with "
        "JetStream enabled) and reachable?"
    )
