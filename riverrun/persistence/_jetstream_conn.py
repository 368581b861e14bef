"""The NATS connection shared by the JetStream stores, and the edge where nats errors are
translated into riverrun's.

Design note: the hot paths (append, direct get) talk to the server with ``nc.request`` /
raw subscriptions instead of ``js.publish`` / ``js.get_msg``: one request, the JSON ack parsed
once, no dataclass on the way. Failing fast matters as much as speed: while the client is
disconnected a request is refused at once with ``StoreUnavailable`` instead of sitting in the
reconnect buffer until its timeout (and then maybe being delivered later, unseen).

Permission errors: the server answers a publish or subscribe that the user may not make with
an ``-ERR 'Permissions Violation ...'`` line, which nats-py hands to the error callback only;
the request itself just times out. :class:`ServerErrors` records those lines per connection,
and :func:`translate_errors` turns a timeout that follows one into ``StorePermissionDenied``
(naming the subject) instead of a retryable ``StoreUnavailable``. Every URL shown is redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from typing import Any, Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from .._errors import (
    IncompatibleStoreConfig,
    PersistenceError,
    StorePermissionDenied,
    StoreUnavailable,
)
from ._jetstream_requests import Reply, Requests, is_status
from ._redact import redact_url

__all__ = [
    "ANY_REVISION",
    "ERR_BATCH_DUPLICATE_MSG_ID",
    "ERR_WRONG_LAST_SEQUENCE",
    "ERR_WRONG_LAST_SEQUENCE_CONST",
    "WRONG_LAST_SEQUENCE",
    "JetStreamConnection",
    "JsApiError",
    "ServerErrors",
    "translate_errors",
]

_log = logging.getLogger("riverrun.persistence.jetstream")
_JSON = json.JSONDecoder()

#: JSStreamWrongLastSequenceErrF: the ``Nats-Expected-Last-Subject-Sequence`` check failed
ERR_WRONG_LAST_SEQUENCE: Final = 10071
#: JSStreamWrongLastSequenceConstantErr (same meaning, another wording)
ERR_WRONG_LAST_SEQUENCE_CONST: Final = 10164
#: either: a fenced write found another last sequence than it expected
WRONG_LAST_SEQUENCE: Final = (ERR_WRONG_LAST_SEQUENCE, ERR_WRONG_LAST_SEQUENCE_CONST)
#: ``kv_put``'s ``expected_revision`` for a write whatever the key holds
ANY_REVISION: Final = -1
#: an atomic batch carried a ``Nats-Msg-Id`` that the stream has already seen
ERR_BATCH_DUPLICATE_MSG_ID: Final = 10201
#: JSNotEnabledForAccountErr: the user's account has no JetStream
ERR_JS_NOT_ENABLED_FOR_ACCOUNT: Final = 10039

_VIOLATION = re.compile(r"permissions violation for (\w+) to \"?([^\"]*)\"?", re.IGNORECASE)

_UNAVAILABLE: Final = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.FlushTimeoutError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
    ConnectionError,
)


class JsApiError(Exception):
    """A JetStream API error reply (internal; translated before it leaves the backend)."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


class ServerErrors:
    """The errors the server reports on a connection without closing it (permission
    violations), kept so that a request that timed out can be told apart from a refused one."""

    def __init__(self, where: str = "") -> None:
        #: the server URL(s), redacted (they name the user, which helps with permissions)
        self.where = redact_url(where)
        #: how many permission violations the server reported so far
        self.violations = 0
        # the latest ones, numbered: (number, operation, subject)
        self._recent: deque[tuple[int, str, str]] = deque(maxlen=32)
        self._logged: set[tuple[str, str]] = set()

    def record(self, exc: BaseException) -> None:
        match = _VIOLATION.search(str(exc))
        if match is None:
            return
        operation, subject = match.group(1).lower(), match.group(2)
        self.violations += 1
        self._recent.append((self.violations, operation, subject))
        if (operation, subject) not in self._logged and len(self._logged) < 1000:
            self._logged.add((operation, subject))
            _log.error(
                "NATS at %s refused to let this user %s %r (permissions violation; nats-py "
                "reports subjects in lower case); give the user that permission in the "
                "server's authorization config (docs/deployment.md, least-privilege users)",
                self.where or "?",
                operation,
                subject,
            )

    def denied_since(self, count: int) -> tuple[str, str] | None:
        """The first violation reported after the first ``count`` ones (the cause; later
        ones may come from nats-py cleaning up after it), or ``None``."""
        for number, operation, subject in self._recent:
            if number > count:
                return operation, subject
        return None


def _permission_denied(what: str, url: str, violation: tuple[str, str]) -> StorePermissionDenied:
    operation, subject = violation
    return StorePermissionDenied(
        f"{what}: NATS at {url} refused to let this user {operation} {subject!r} (permissions "
        "violation). Retrying will not help: give the user that permission in the server's "
        "authorization config (docs/deployment.md has least-privilege templates), or connect "
        "as a user that has it",
        subject=subject,
    )


def translate_errors(where: JetStreamConnection | str, what: str) -> _Translating:
    """Turn nats errors raised inside the block into riverrun errors (``raise ... from``).

    ``where`` is the connection (or, for messages only, its URL): with the connection, a
    timeout that follows a permission violation becomes ``StorePermissionDenied``.
    (A class, not a generator: every store operation enters one.)
    """
    return _Translating(where, what)


class _Translating:
    __slots__ = ("_seen", "_what", "_where")

    def __init__(self, where: JetStreamConnection | str, what: str) -> None:
        self._where = where
        self._what = what
        self._seen = where.server_errors.violations if isinstance(where, JetStreamConnection) else 0

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None and not isinstance(exc, PersistenceError):
            _translate(exc, self._where, self._what, self._seen)


def _translate(
    exc: BaseException, where: JetStreamConnection | str, what: str, seen: int
) -> None:
    """Raise the riverrun error for a nats error ``exc``; return for anything else."""
    if isinstance(where, JetStreamConnection):
        url, server_errors = where.url, where.server_errors
    else:
        url, server_errors = redact_url(where), None
    if isinstance(exc, (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError)):
        if getattr(exc, "err_code", None) == ERR_JS_NOT_ENABLED_FOR_ACCOUNT:
            _raise_api_error(what, url, 503, ERR_JS_NOT_ENABLED_FOR_ACCOUNT, str(exc), exc)
        raise StoreUnavailable(
            f"{what}: no JetStream answered at {url} ({type(exc).__name__}); is JetStream "
            "enabled on that server (`nats-server -js`) and is it up? Retry later"
        ) from exc
    if isinstance(exc, _UNAVAILABLE):
        violation = server_errors.denied_since(seen) if server_errors is not None else None
        if violation is not None:
            raise _permission_denied(what, url, violation) from exc
        raise StoreUnavailable(
            f"{what}: NATS at {url} did not answer ({type(exc).__name__}); the store is "
            "unreachable or restarting — retry later"
        ) from exc
    if isinstance(exc, nats.js.errors.APIError):
        _raise_api_error(what, url, exc.code, exc.err_code, exc.description, exc)
    if isinstance(exc, JsApiError):
        _raise_api_error(what, url, exc.code, exc.err_code, exc.description, exc)
    if isinstance(exc, nats.errors.Error):
        raise PersistenceError(f"{what}: NATS error: {redact_url(repr(exc))}") from exc


def _raise_api_error(
    what: str, url: str, code: int | None, err_code: int | None, description: str | None,
    exc: Exception,
) -> None:
    if err_code == ERR_JS_NOT_ENABLED_FOR_ACCOUNT:
        raise StorePermissionDenied(
            f"{what}: JetStream at {url} is not enabled for this user's account "
            f"({description}); enable it in the account's config (`jetstream: enabled`, or "
            "JetStream limits in the account JWT)"
        ) from exc
    if code == 503:
        raise StoreUnavailable(
            f"{what}: JetStream at {url} is temporarily unavailable ({description}); "
            "retry later"
        ) from exc
    raise PersistenceError(f"{what}: JetStream refused it: {description or exc}") from exc


class JetStreamConnection:
    """One NATS connection plus the low-level requests the stores need."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        url: str,
        request_timeout: float,
        server_errors: ServerErrors | None = None,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=request_timeout)
        #: the server URL(s), secrets redacted: safe for messages
        self.url = redact_url(url)
        self.timeout = request_timeout
        self.server_errors = server_errors if server_errors is not None else ServerErrors()
        self._requests = Requests(nc) if Requests.supported(nc) else None

    def __repr__(self) -> str:
        state = "connected" if self.nc.is_connected else "disconnected"
        return f"<JetStreamConnection {self.url} {state}>"

    def check_connected(self, what: str) -> None:
        """Fail fast with ``StoreUnavailable`` while the client is (re)connecting."""
        if not self.nc.is_connected:
            state = "closed" if self.nc.is_closed else "reconnecting"
            raise StoreUnavailable(
                f"{what}: not connected to NATS at {self.url} ({state}); retry later"
            )

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    async def request(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> Reply:
        """One request on the lean path (``Requests``): the reply's body and headers.

        Raises nats-py's errors (``TimeoutError``, ``NoRespondersError``, ...), translated by
        the caller's ``translate_errors``.
        """
        if self._requests is not None:
            return await self._requests.request(subject, payload, headers, self.timeout)
        msg = await self.nc.request(subject, payload, timeout=self.timeout, headers=headers)
        return msg.data, msg.headers

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None
    ) -> dict[str, Any]:
        """A JetStream publish; returns the ack as a dict (``seq``, maybe ``duplicate``).

        Raises:
            JsApiError: the stream refused the message (e.g. 10071).
        """
        if not self.nc.is_connected:
            self.check_connected(f"publish to {subject}")
        try:
            data, _ = await self.request(subject, payload, headers)
        except nats.errors.NoRespondersError:
            raise nats.js.errors.NoStreamResponseError from None
        return self._ack(data)

    @staticmethod
    def _ack(data: bytes) -> dict[str, Any]:
        # raw_decode of the text: json.loads of bytes first sniffs their encoding, and its
        # whole-document check costs as much again (an ack is one small JSON object)
        ack: dict[str, Any] = _JSON.raw_decode(data.decode())[0]
        error = ack.get("error")
        if error is not None:
            raise JsApiError(
                int(error.get("code", 0)),
                int(error.get("err_code", 0)),
                error.get("description", ""),
            )
        return ack

    async def direct_last(self, stream: str, subject: str) -> Msg | None:
        """The last message on ``subject`` (direct get), ``None`` if there is none."""
        self.check_connected(f"read the last message of {subject}")
        reply = await self.request(f"$JS.API.DIRECT.GET.{stream}.{subject}", b"")
        return self._direct_result(subject, reply)

    async def direct_seq(self, stream: str, seq: int) -> Msg | None:
        """The message at stream sequence ``seq``, ``None`` if there is none."""
        self.check_connected(f"read message {seq} of {stream}")
        reply = await self.request(
            f"$JS.API.DIRECT.GET.{stream}", json.dumps({"seq": seq}).encode()
        )
        return self._direct_result("", reply)

    def _direct_result(self, subject: str, reply: Reply) -> Msg | None:
        data, headers = reply
        if not data and headers is not None and is_status(headers):
            status = headers["Status"]
            if status == "404":
                return None
            description = str(headers.get("Description", ""))
            raise JsApiError(int(status), 0, description or f"direct get status {status}")
        return self._stored(subject, reply)

    def _stored(self, subject: str, reply: Reply) -> Msg:
        """A stored message read by a direct get, under the subject it was stored on."""
        data, headers = reply
        if headers is not None:
            subject = headers.get("Nats-Subject", subject)
        return Msg(_client=self.nc, subject=subject, data=data, headers=headers)

    async def kv_get(self, bucket: str, key: str) -> tuple[bytes, int] | None:
        """A KV entry's value and revision (one direct get), ``None`` if absent, deleted or
        purged. ``key`` is already a valid KV key."""
        msg = await self.direct_last(f"KV_{bucket}", f"$KV.{bucket}.{key}")
        if msg is None:
            return None
        headers = msg.headers or {}
        if headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None
        return msg.data, int(headers.get("Nats-Sequence", "0"))

    async def kv_put(
        self, bucket: str, key: str, value: bytes, *, expected_revision: int | None
    ) -> int:
        """Write a KV entry: unconditionally (``ANY_REVISION``), only if the key holds
        nothing (``None``: ``JsApiError`` 10071 if it holds anything, a delete or purge marker
        included), or only at that revision. Returns the new revision."""
        headers = (
            None
            if expected_revision == ANY_REVISION
            else {"Nats-Expected-Last-Subject-Sequence": str(expected_revision or 0)}
        )
        ack = await self.publish(f"$KV.{bucket}.{key}", value, headers)
        return int(ack["seq"])

    async def direct_batch(
        self,
        stream: str,
        subject: str,
        *,
        start_seq: int,
        batch: int,
        max_bytes: int = 8 * 1024 * 1024,
    ) -> tuple[list[Msg], int]:
        """Batch direct get: up to ``batch`` messages on ``subject`` from stream sequence
        ``start_seq`` on, and how many more there are after them (``Nats-Num-Pending``)."""
        self.check_connected(f"read {subject}")
        request = {
            "seq": max(start_seq, 1),
            "next_by_subj": subject,
            "batch": batch,
            "max_bytes": max_bytes,
        }
        if self._requests is not None:
            replies, status_headers = await self._requests.request_many(
                f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), self.timeout
            )
            return [self._stored(subject, reply) for reply in replies], self._batch_end(
                status_headers
            )
        out: list[Msg] = []
        end: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

        # A callback, not next_msg(): next_msg costs a task, a uuid and a wait_for per message.
        async def collect(msg: Msg) -> None:
            if not is_status(msg.headers):
                out.append(msg)
            elif not end.done():
                end.set_result(msg)

        sub = await self.nc.subscribe(self.nc.new_inbox(), cb=collect)
        try:
            await self.nc.publish(
                f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=sub.subject
            )
            try:
                last = await asyncio.wait_for(end, self.timeout)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
        finally:
            await sub.unsubscribe()
        return out, self._batch_end(last.headers or {})

    @staticmethod
    def _batch_end(headers: dict[str, str]) -> int:
        """What the status message that ended a batch direct get says: how many more
        messages there are (0 when nothing more is on the subject), or the error it is."""
        status = headers.get("Status")
        if status == "204":  # end of batch
            return int(headers.get("Nats-Num-Pending", "0"))
        if status == "404":  # nothing (more) on the subject
            return 0
        if status == "408":  # the batch request timed out server side
            raise nats.errors.TimeoutError
        raise JsApiError(int(status or 0), 0, str(headers.get("Description", "")))

    async def purge(
        self, stream: str, *, subject: str, keep: int | None = None, seq: int | None = None
    ) -> None:
        """Purge ``subject`` (all of it, all but the last ``keep``, or below ``seq``)."""
        self.check_connected(f"purge {subject}")
        request: dict[str, Any] = {"filter": subject}
        if keep is not None:
            request["keep"] = keep
        if seq is not None:
            request["seq"] = seq
        data, _ = await self.request(
            f"$JS.API.STREAM.PURGE.{stream}", json.dumps(request).encode()
        )
        self._ack(data)

    async def ensure_stream(
        self, config: StreamConfig, *, required: dict[str, Any], what: str
    ) -> None:
        """Create the stream, or check that the existing one has the ``required`` settings.

        Raises:
            IncompatibleStoreConfig: the stream exists with different required settings.
        """
        assert config.name is not None
        try:
            info = await self.js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(config)
                return
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != 10058:  # "stream name already in use": lost a creation race
                    raise IncompatibleStoreConfig(
                        f"could not create the {what} stream {config.name!r} at {self.url}: "
                        f"{exc.description}"
                    ) from exc
            info = await self.js.stream_info(config.name)
        differences = []
        for field, want in required.items():
            have = getattr(info.config, field)
            if field == "subjects":
                have, want = sorted(have or []), sorted(want)
            if have != want:
                differences.append(f"{field} is {have!r}, riverrun needs {want!r}")
        if differences:
            raise IncompatibleStoreConfig(
                f"the {what} stream {config.name!r} at {self.url} exists with settings "
                f"riverrun cannot use: {'; '.join(differences)}. Delete it (`nats stream rm "
                f"{config.name}`, losing its data), fix it with `nats stream edit`, or use "
                "another namespace."
            )
