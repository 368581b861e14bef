"""Connection settings shared by every command, and the options that set them.

``--servers``, ``--namespace`` and ``--json`` are accepted both before the command
(``riverrun --json runs list``) and after it (``riverrun runs list --json``), since users type
both; the value given closest to the command wins, then the environment, then the default.
The NATS credential and TLS options (``--creds``, ``--nkey-seed``, ``--user``, ``--tls-*``,
``--inbox-prefix``)
work the same way; a password or token is read from the environment only
(``RIVERRUN_PASSWORD``, ``RIVERRUN_TOKEN``), so that it never shows in ``ps`` or a shell's
history. Nothing here is checked until a command connects: then ``Runtime.connect`` checks the
files and a missing one is a usage error naming it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import click
from rich.console import Console

from riverrun.persistence import redact_url

from ._parsing import parse_servers
from ._runtime import S3Settings, open_runtime

if TYPE_CHECKING:
    from riverrun import Client

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVERS",
    "Settings",
    "connection_options",
    "json_option",
    "log_options",
    "open_client",
    "pass_settings",
]

DEFAULT_SERVERS = "nats://127.0.0.1:4222"
DEFAULT_NAMESPACE = "default"
#: seconds to wait for NATS before saying it is unreachable (the whole answer stays under 5 s)
DEFAULT_CONNECT_TIMEOUT = 3.0

F = TypeVar("F", bound=Callable[..., Any])

# the persistence layer's rule for namespaces (they name streams and subjects)
_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@attrs.define
class Settings:
    """What the global options resolved to, shared through the click context."""

    servers: list[str] = attrs.field(
        factory=lambda: parse_servers(DEFAULT_SERVERS), repr=lambda v: redact_url(repr(v))
    )
    namespace: str = DEFAULT_NAMESPACE
    json: bool = False
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    #: replicas of the streams and buckets riverrun creates if missing (3 on a cluster)
    replicas: int = 1
    #: payloads and snapshots in S3 instead of the JetStream object store (from the environment)
    s3: S3Settings | None = attrs.field(factory=S3Settings.from_env)
    #: NATS credentials and TLS: the keyword arguments of ``Runtime.connect`` that are set
    #: (``user_credentials``, ``nkeys_seed``, ``user``, ``password``, ``token``, ``tls_*``)
    security: dict[str, Any] = attrs.field(
        factory=lambda: _secrets_from_env(), repr=lambda v: repr(sorted(v))
    )

    @property
    def where(self) -> str:
        """The servers, comma-separated, without any secret a URL carries (for messages)."""
        return redact_url(", ".join(self.servers))

    def console(self) -> Console:
        """A console for human output; wide and plain when stdout is not a terminal."""
        if sys.stdout.isatty():
            return Console(highlight=False)
        return Console(highlight=False, width=200, color_system=None, soft_wrap=False)


def _secrets_from_env() -> dict[str, Any]:
    """``RIVERRUN_PASSWORD`` and ``RIVERRUN_TOKEN``: secrets have no option, so that they
    never show in ``ps`` or a shell's history."""
    found: dict[str, Any] = {}
    for key, env in (("password", "RIVERRUN_PASSWORD"), ("token", "RIVERRUN_TOKEN")):
        value = os.environ.get(env, "")
        if value:
            found[key] = value
    return found


pass_settings = click.make_pass_decorator(Settings, ensure=True)


def _set_servers(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Settings).servers = parse_servers(value)


def _set_namespace(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        if not _NAMESPACE.match(value):
            raise click.BadParameter(f"{value!r}: a namespace is 1-64 letters, digits, '_' or '-'")
        ctx.ensure_object(Settings).namespace = value


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Settings).json = True


def _set_security(key: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None and value != "":
            ctx.ensure_object(Settings).security[key] = str(value)

    return callback


#: (option, ``Runtime.connect`` keyword, environment variable, metavar, help)
_SECURITY_OPTIONS: list[tuple[str, str, str, str, str]] = [
    (
        "--creds",
        "user_credentials",
        "RIVERRUN_CREDS",
        "FILE",
        "NATS credentials file (.creds: user JWT and nkey seed, from `nsc`).",
    ),
    (
        "--nkey-seed",
        "nkeys_seed",
        "RIVERRUN_NKEY_SEED",
        "FILE",
        "File holding the user's nkey seed (the environment variable may hold the seed).",
    ),
    ("--user", "user", "RIVERRUN_USER", "NAME", "NATS user (password from RIVERRUN_PASSWORD)."),
    (
        "--tls-ca",
        "tls_ca_file",
        "RIVERRUN_TLS_CA",
        "FILE",
        "PEM file of the CA that signed the NATS server's certificate.",
    ),
    (
        "--tls-cert",
        "tls_cert_file",
        "RIVERRUN_TLS_CERT",
        "FILE",
        "Client certificate (PEM), for servers that verify clients; with --tls-key.",
    ),
    ("--tls-key", "tls_key_file", "RIVERRUN_TLS_KEY", "FILE", "Client key (PEM)."),
    (
        "--tls-hostname",
        "tls_hostname",
        "RIVERRUN_TLS_HOSTNAME",
        "NAME",
        "Check the server's certificate against NAME instead of the URL's host.",
    ),
    (
        "--inbox-prefix",
        "inbox_prefix",
        "RIVERRUN_INBOX_PREFIX",
        "PREFIX",
        "Subject prefix of NATS replies (default _INBOX), one per user.",
    ),
]


def _security_options(fn: F, *, envvar: bool) -> F:
    for option, key, env, metavar, text in reversed(_SECURITY_OPTIONS):
        fn = click.option(
            option,
            envvar=env if envvar else None,
            metavar=metavar,
            expose_value=False,
            callback=_set_security(key),
            help=f"{text} (env {env}).",
        )(fn)
    return fn


def connection_options(*, envvar: bool) -> Callable[[F], F]:
    """``--servers``, ``--namespace`` and the NATS credential and TLS options; the root group
    reads the environment variables."""

    def decorate(fn: F) -> F:
        fn = _security_options(fn, envvar=envvar)
        fn = click.option(
            "--namespace",
            envvar="RIVERRUN_NAMESPACE" if envvar else None,
            default=DEFAULT_NAMESPACE if envvar else None,
            show_default=envvar,
            metavar="NS",
            expose_value=False,
            callback=_set_namespace,
            help="Namespace: runs, streams and buckets of one application "
            "(env RIVERRUN_NAMESPACE).",
        )(fn)
        fn = click.option(
            "--servers",
            envvar="RIVERRUN_SERVERS" if envvar else None,
            default=DEFAULT_SERVERS if envvar else None,
            show_default=envvar,
            metavar="URLS",
            expose_value=False,
            callback=_set_servers,
            help="NATS server URL(s), comma-separated (env RIVERRUN_SERVERS).",
        )(fn)
        return fn

    return decorate


def json_option(fn: F) -> F:
    """``--json``: print one machine-readable JSON document instead of text."""
    return click.option(
        "--json",
        "json_output",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print machine-readable JSON (datetimes in ISO 8601).",
    )(fn)


#: ``--log-level`` / ``--log-format`` choices (riverrun.configure_logging's)
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


def log_options(fn: F) -> F:
    """``--log-level`` and ``--log-format`` (env ``RIVERRUN_LOG_LEVEL`` / ``RIVERRUN_LOG_FORMAT``),
    passed to the command as ``log_level`` and ``log_format``; the option beats the
    environment, which beats the default."""
    fn = click.option(
        "--log-format",
        envvar="RIVERRUN_LOG_FORMAT",
        type=click.Choice(LOG_FORMATS, case_sensitive=False),
        default="text",
        show_default=True,
        help="Log lines as readable text or as one JSON object per line "
        "(env RIVERRUN_LOG_FORMAT).",
    )(fn)
    fn = click.option(
        "--log-level",
        envvar="RIVERRUN_LOG_LEVEL",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="info",
        show_default=True,
        help="Least severe log records written to stderr (env RIVERRUN_LOG_LEVEL).",
    )(fn)
    return fn


@contextlib.asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[Client]:
    """A client connected to ``settings.servers``; hosts no workflows."""
    async with open_runtime(settings) as runtime:
        yield runtime.client
