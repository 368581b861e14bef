"""How riverrun proves who it is to NATS, and checks who NATS is: credentials and TLS.

The names follow nats-py's ``Client.connect`` (``user_credentials``, ``nkeys_seed``,
``tls``, ``tls_hostname``, ``user``, ``password``, ``token``, ``inbox_prefix``), plus ``tls_ca_file`` /
``tls_cert_file`` / ``tls_key_file`` for the common case of PEM files, which would otherwise
need an ``ssl.SSLContext`` built by hand.

Design note: everything is checked when the value is built, at the public entry point
(``Runtime.connect``, the command line), so that a wrong path is a ``ValueError`` naming the
file and what to do, not an error deep inside a reconnect loop. That matters more than it
seems: nats-py reads a creds file line by line until it finds the JWT header, and loops for
ever on a file that has none. Secrets (password, token, a seed given inline) never appear in
``repr``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import ssl
from pathlib import Path
from typing import Any, Final

import attrs

__all__ = ["NatsSecurity"]

#: an nkey seed: "S", the key type (U user, A account, O operator, ...), 56 base32 characters
_SEED = re.compile(r"^S[UAONCPX][A-Z2-7]{56}$")
#: subject tokens without wildcards, for the inbox prefix
_PREFIX = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$")
_CREDS_JWT: Final = "-----BEGIN NATS USER JWT-----"
_CREDS_SEED: Final = "BEGIN USER NKEY SEED"

PathLike = str | os.PathLike[str]


@attrs.frozen(kw_only=True)
class NatsSecurity:
    """Credentials and TLS settings for the NATS connection. Build it with :meth:`build`.

    At most one way of authenticating: a creds file (JWT + nkey seed, what ``nsc`` makes),
    an nkey seed, user and password, or a token. A URL may carry user/password or a token
    instead (``nats://user:password@host``); riverrun never shows them.
    """

    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    token: str | None = attrs.field(default=None, repr=False)
    #: path of a ``.creds`` file (user JWT and nkey seed)
    user_credentials: Path | None = None
    #: path of a file holding an nkey seed
    nkeys_seed: Path | None = None
    #: an nkey seed given inline (``SU...``)
    nkeys_seed_str: str | None = attrs.field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    #: the name the server's certificate is checked against (default: the URL's host)
    tls_hostname: str | None = None
    #: where replies come back (default ``_INBOX``): a prefix of its own per user lets the
    #: server's permissions keep users from reading each other's replies
    inbox_prefix: str | None = None

    @classmethod
    def build(
        cls,
        *,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        user_credentials: PathLike | None = None,
        nkeys_seed: PathLike | None = None,
        tls: ssl.SSLContext | bool | None = None,
        tls_ca_file: PathLike | None = None,
        tls_cert_file: PathLike | None = None,
        tls_key_file: PathLike | None = None,
        tls_hostname: str | None = None,
        inbox_prefix: str | None = None,
    ) -> NatsSecurity:
        """Check the settings and load what they point at.

        Args:
            user, password: user/password authentication (``authorization { users }``).
            token: token authentication (``authorization { token }``).
            user_credentials: a ``.creds`` file (decentralized JWT authentication; what
                ``nsc generate creds`` writes).
            nkeys_seed: a file holding an nkey seed, or the seed itself (``SU...``).
            tls: an ``ssl.SSLContext`` you built, or ``True`` for TLS that checks the server
                against the system's certificate authorities. The ``tls_*_file`` arguments
                build a context for you instead.
            tls_ca_file: PEM file of the authority that signed the server's certificate.
            tls_cert_file, tls_key_file: the client's certificate and key (PEM), for servers
                that verify clients (``tls { verify: true }``); give both.
            tls_hostname: check the server's certificate against this name instead of the
                URL's host.
            inbox_prefix: subject prefix of the reply subjects (default ``_INBOX``); give
                each user its own and allow it only ``<prefix>.>`` to subscribe.

        Raises:
            ValueError: contradicting settings, or a file that is missing, unreadable or not
                what it should be (the message names it and says what to do).
        """
        methods = [
            name
            for name, value in (
                ("user_credentials", user_credentials),
                ("nkeys_seed", nkeys_seed),
                ("user/password", user),
                ("token", token),
            )
            if value is not None
        ]
        if len(methods) > 1:
            raise ValueError(
                f"give one way of authenticating to NATS, not {' and '.join(methods)}"
            )
        if password is not None and user is None:
            raise ValueError("password needs a user (user=... and password=...)")
        for name, value in (("user", user), ("password", password), ("token", token)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string")
        creds = _check_creds_file(user_credentials) if user_credentials is not None else None
        seed_file, seed_str = _check_seed(nkeys_seed) if nkeys_seed is not None else (None, None)
        if (creds is not None or nkeys_seed is not None) and not _have_nkeys():
            raise ValueError(
                "creds-file and nkey authentication need the 'nkeys' package, which riverrun "
                "normally installs: pip install nkeys"
            )
        context = _tls_context(tls, tls_ca_file, tls_cert_file, tls_key_file)
        if tls_hostname is not None and (not isinstance(tls_hostname, str) or not tls_hostname):
            raise ValueError("tls_hostname must be a non-empty string")
        if inbox_prefix is not None and (
            not isinstance(inbox_prefix, str) or not _PREFIX.match(inbox_prefix)
        ):
            raise ValueError(
                f"inbox_prefix must be subject tokens without wildcards (e.g. "
                f"'_INBOX_orders_client'), got {inbox_prefix!r}"
            )
        return cls(
            user=user,
            password=password,
            token=token,
            user_credentials=creds,
            nkeys_seed=seed_file,
            nkeys_seed_str=seed_str,
            tls=context,
            tls_hostname=tls_hostname,
            inbox_prefix=inbox_prefix,
        )

    def connect_options(self) -> dict[str, Any]:
        """The keyword arguments for nats-py's ``connect`` (only those that are set)."""
        options: dict[str, Any] = {
            "user": self.user,
            "password": self.password,
            "token": self.token,
            "user_credentials": str(self.user_credentials) if self.user_credentials else None,
            "nkeys_seed": str(self.nkeys_seed) if self.nkeys_seed else None,
            "nkeys_seed_str": self.nkeys_seed_str,
            "tls": self.tls,
            "tls_hostname": self.tls_hostname,
            "inbox_prefix": self.inbox_prefix,
        }
        return {k: v for k, v in options.items() if v is not None}

    def describe(self) -> str:
        """How this connection authenticates, without any secret (for messages)."""
        parts = []
        if self.user_credentials is not None:
            parts.append(f"creds file {str(self.user_credentials)!r}")
        if self.nkeys_seed is not None:
            parts.append(f"nkey seed file {str(self.nkeys_seed)!r}")
        if self.nkeys_seed_str is not None:
            parts.append("an inline nkey seed")
        if self.user is not None:
            parts.append(f"user {self.user!r}")
        if self.token is not None:
            parts.append("a token")
        if self.tls is not None:
            parts.append("TLS")
        return ", ".join(parts)


def _readable_file(value: PathLike, what: str, hint: str) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ValueError(f"{what} must be a path, got {value!r}")
    path = Path(value).expanduser()
    if not path.exists():
        raise ValueError(f"{what} {str(path)!r} does not exist; {hint}")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} is not a file; {hint}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{what} {str(path)!r} is not readable by this process; fix its mode")
    return path


def _check_creds_file(value: PathLike) -> Path:
    hint = "give the path of the .creds file `nsc generate creds` wrote for this user"
    path = _readable_file(value, "NATS credentials file", hint)
    text = path.read_text(errors="replace")
    if _CREDS_JWT not in text or _CREDS_SEED not in text:
        raise ValueError(
            f"NATS credentials file {str(path)!r} is not a creds file (it needs a "
            f"'{_CREDS_JWT}' block and a 'USER NKEY SEED' block); {hint}"
        )
    return path


def _check_seed(value: PathLike) -> tuple[Path | None, str | None]:
    if isinstance(value, str) and _SEED.match(value.strip()):
        return None, value.strip()
    hint = "give the path of a file holding the user's nkey seed (SU...), or the seed itself"
    path = _readable_file(value, "nkey seed file", hint)
    if not _SEED.match(path.read_text(errors="replace").strip()):
        raise ValueError(f"nkey seed file {str(path)!r} does not hold an nkey seed; {hint}")
    return path, None


def _have_nkeys() -> bool:
    return importlib.util.find_spec("nkeys") is not None


def _tls_context(
    tls: ssl.SSLContext | bool | None,
    ca_file: PathLike | None,
    cert_file: PathLike | None,
    key_file: PathLike | None,
) -> ssl.SSLContext | None:
    files = ca_file is not None or cert_file is not None or key_file is not None
    if isinstance(tls, ssl.SSLContext):
        if files:
            raise ValueError(
                "give either tls=<ssl.SSLContext> or the tls_*_file paths, not both (load "
                "the files into your context yourself)"
            )
        return tls
    if tls is not None and not isinstance(tls, bool):
        raise ValueError(f"tls must be an ssl.SSLContext, True, False or None, got {tls!r}")
    if tls is False:
        if files:
            raise ValueError("tls=False contradicts the tls_*_file paths given")
        return None
    if not tls and not files:
        return None
    if (cert_file is None) != (key_file is None):
        raise ValueError(
            "a client certificate needs both tls_cert_file and tls_key_file (PEM files)"
        )
    cafile = None
    if ca_file is not None:
        cafile = _readable_file(
            ca_file,
            "TLS CA file",
            "give the PEM file of the authority that signed the server's certificate",
        )
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except ssl.SSLError as exc:
        raise ValueError(f"TLS CA file {str(cafile)!r} is not a PEM certificate: {exc}") from None
    if cert_file is not None and key_file is not None:
        hint = "give the client's certificate and key as PEM files"
        cert = _readable_file(cert_file, "TLS certificate file", hint)
        key = _readable_file(key_file, "TLS key file", hint)
        try:
            context.load_cert_chain(str(cert), str(key))
        except ssl.SSLError as exc:
            raise ValueError(
                f"TLS certificate {str(cert)!r} and key {str(key)!r} could not be loaded "
                f"(not PEM, or they do not match): {exc}"
            ) from None
    return context
