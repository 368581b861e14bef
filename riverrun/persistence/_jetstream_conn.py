"""The NATS connection shared by the JetStream stores, and the edge where nats errors are
translated into riverrun's.

Design note: the hot paths (append, direct get) talk to the server with ``nc.request`` /
raw subscriptions instead of ``js.publish`` / ``js.get_msg``: one request, the JSON ack parsed
once, no dataclass on the way. Failing fast matters as much as speed: while the client is
disconnected a request is refused at once with ``StoreUnavailable`` instead of sitting in the
reconnect buffer until its timeout (and then maybe being delivered later, unseen).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from .._errors import IncompatibleStoreConfig, PersistenceError, StoreUnavailable

__all__ = [
    "ERR_BATCH_DUPLICATE_MSG_ID",
    "ERR_WRONG_LAST_SEQUENCE",
    "ERR_WRONG_LAST_SEQUENCE_CONST",
    "JetStreamConnection",
    "JsApiError",
    "connect",
    "translate_errors",
]

_log = logging.getLogger("riverrun.persistence.jetstream")

#: JSStreamWrongLastSequenceErrF: the ``Nats-Expected-Last-Subject-Sequence`` check failed
ERR_WRONG_LAST_SEQUENCE: Final = 10071
#: JSStreamWrongLastSequenceConstantErr (same meaning, another wording)
ERR_WRONG_LAST_SEQUENCE_CONST: Final = 10164
#: an atomic batch carried a ``Nats-Msg-Id`` that the stream has already seen
ERR_BATCH_DUPLICATE_MSG_ID: Final = 10201

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


@contextmanager
def translate_errors(url: str, what: str) -> Iterator[None]:
    """Turn nats errors raised inside the block into riverrun errors (``raise ... from``)."""
    try:
        yield
    except PersistenceError:
        raise
    except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
        raise StoreUnavailable(
            f"{what}: no JetStream answered at {url} ({type(exc).__name__}); is JetStream "
            "enabled on that server (`nats-server -js`) and is it up? Retry later"
        ) from exc
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(
            f"{what}: NATS at {url} did not answer ({type(exc).__name__}); the store is "
            "unreachable or restarting — retry later"
        ) from exc
    except nats.js.errors.APIError as exc:
        if exc.code == 503:
            raise StoreUnavailable(
                f"{what}: JetStream at {url} is temporarily unavailable ({exc.description}); "
                "retry later"
            ) from exc
        raise PersistenceError(f"{what}: JetStream refused it: {exc.description}") from exc
    except JsApiError as exc:
        if exc.code == 503:
            raise StoreUnavailable(
                f"{what}: JetStream at {url} is temporarily unavailable ({exc.description}); "
                "retry later"
            ) from exc
        raise PersistenceError(f"{what}: JetStream refused it: {exc}") from exc
    except nats.errors.Error as exc:
        raise PersistenceError(f"{what}: NATS error: {exc!r}") from exc


class JetStreamConnection:
    """One NATS connection plus the low-level requests the stores need."""

    def __init__(self, nc: NatsClient, *, url: str, request_timeout: float) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=request_timeout)
        self.url = url
        self.timeout = request_timeout

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
            msg = await self.nc.request(subject, payload, timeout=self.timeout, headers=headers)
        except nats.errors.NoRespondersError:
            raise nats.js.errors.NoStreamResponseError from None
        return self._ack(msg)

    @staticmethod
    def _ack(msg: Msg) -> dict[str, Any]:
        ack: dict[str, Any] = json.loads(msg.data)
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
        msg = await self.nc.request(
            f"$JS.API.DIRECT.GET.{stream}.{subject}", b"", timeout=self.timeout
        )
        return self._direct_result(msg)

    async def direct_seq(self, stream: str, seq: int) -> Msg | None:
        """The message at stream sequence ``seq``, ``None`` if there is none."""
        self.check_connected(f"read message {seq} of {stream}")
        msg = await self.nc.request(
            f"$JS.API.DIRECT.GET.{stream}",
            json.dumps({"seq": seq}).encode(),
            timeout=self.timeout,
        )
        return self._direct_result(msg)

    @staticmethod
    def _direct_result(msg: Msg) -> Msg | None:
        headers = msg.headers
        # a stored message always has Nats-Sequence: a "Status" header on it is its own
        if not msg.data and headers is not None and "Nats-Sequence" not in headers:
            status = headers.get("Status")
            if status == "404":
                return None
            if status is not None:
                description = str(headers.get("Description", ""))
                raise JsApiError(int(status), 0, description or f"direct get status {status}")
        return msg

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
        out: list[Msg] = []
        end: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

        # A callback, not next_msg(): next_msg costs a task, a uuid and a wait_for per message.
        async def collect(msg: Msg) -> None:
            headers = msg.headers
            # (a stored message always has Nats-Sequence: a "Status" header on it is its own)
            if headers is None or "Status" not in headers or "Nats-Sequence" in headers:
                out.append(msg)
            elif not end.done():
                end.set_result(msg)

        sub = await self.nc.subscribe(self.nc.new_inbox(), cb=collect)
        try:
            request = {
                "seq": max(start_seq, 1),
                "next_by_subj": subject,
                "batch": batch,
                "max_bytes": max_bytes,
            }
            await self.nc.publish(
                f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=sub.subject
            )
            try:
                last = await asyncio.wait_for(end, self.timeout)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
        finally:
            await sub.unsubscribe()
        headers = last.headers or {}
        status = headers.get("Status")
        if status == "204":  # end of batch
            return out, int(headers.get("Nats-Num-Pending", "0"))
        if status == "404":  # nothing (more) on the subject
            return out, 0
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
        msg = await self.nc.request(
            f"$JS.API.STREAM.PURGE.{stream}", json.dumps(request).encode(), timeout=self.timeout
        )
        self._ack(msg)

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


async def connect(servers: list[str], *, connect_timeout: float, name: str) -> NatsClient:
    """Connect, trying every server once or twice within ``connect_timeout``; afterwards the
    client reconnects forever (a restarting server is an outage, not the end)."""
    errors: deque[str] = deque(maxlen=4)

    async def on_error(exc: Exception) -> None:
        # nats-py reports connection trouble here; the default callback logs at ERROR.
        errors.append(f"{type(exc).__name__}: {exc}")
        _log.debug("NATS connection error: %r", exc)

    try:
        nc = await nats.connect(
            servers,
            name=name,
            connect_timeout=max(1, int(connect_timeout)),
            reconnect_time_wait=0.25,  # seconds; a float works
            max_reconnect_attempts=1,
            error_cb=on_error,
            allow_reconnect=True,
            skip_subject_validation=True,  # our subjects are built from escaped tokens
        )
    except Exception as exc:
        detail = errors[-1] if errors else f"{type(exc).__name__}: {exc}"
        raise StoreUnavailable(
            f"cannot connect to NATS at {', '.join(servers)}: {detail}. Is nats-server running "
            "(with JetStream enabled) and reachable?"
        ) from exc
    # From now on, outages are waited out: reconnect forever, in the background.
    nc.options["max_reconnect_attempts"] = -1
    return nc
