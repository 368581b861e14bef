"""``Runtime``: one object that owns a backend, a client and (optionally) a worker.

``Runtime.embedded()`` starts its own nats-server, ``Runtime.connect()`` uses an existing NATS
(cluster), ``Runtime.in_memory()`` uses the memory backend. Each is an async context manager;
a closed runtime refuses reuse (STYLE 17).
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from .._errors import RuntimeClosed
from ..actors import ActorSystem
from ..persistence import Backend, Clock, NatsSecurity, redact_url
from ..persistence._codec import Codec
from ._client import Client
from ._converter import DataConverter
from ._definitions import WorkflowRegistry
from ._machine import WorkflowMachine
from ._options import RuntimeOptions
from ._payloads import Payloads
from ._services import Services
from ._telemetry import Telemetry
from ._typed_calls import check_workflow_hints
from ._worker import Worker

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["Runtime", "current_runtime"]

BackendFactory = Callable[[Codec], contextlib.AbstractAsyncContextManager[Backend]]

_current: ContextVar[Runtime | None] = ContextVar("riverrun_runtime", default=None)


def current_runtime() -> Runtime:
    runtime = _current.get()
    if runtime is None:
        raise RuntimeClosed(
            "no riverrun Runtime is active here; use it inside `async with Runtime...() as rt:` "
            "or call rt.client.get_workflow_chain(...)"
        )
    return runtime


class Runtime:
    """A riverrun runtime: backend + client + worker. Use one of the constructors."""

    def __init__(
        self,
        backend_factory: BackendFactory,
        *,
        workflows: Iterable[Any] = (),
        worker: bool = True,
        options: RuntimeOptions | None = None,
        description: str = "",
        force_continue: Callable[[WorkflowMachine], str | None] | None = None,
        passivation: bool = True,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        data_converter: DataConverter | None = None,
        types: Iterable[type[Any]] = (),
    ) -> None:
        """Args (every constructor takes these as keywords too):
            data_converter: turns typed values (arguments, results, signal payloads) into
                the codec's data and back by their type hints (default: ``DataConverter()``).
                Every process of a namespace should use an equivalent one.
            types: attrs classes and enums to register with the codec, so that they travel
                where no type hint names them (``Any`` parameters, signals without ``type=``).
            meter_provider: where riverrun's metrics go (default: the global OpenTelemetry
                meter provider, a no-op until an SDK sets one).
            tracer_provider: where riverrun's spans go (default: the global tracer provider,
                as set when the runtime is created).
        """
        self._factory = backend_factory
        self._telemetry = Telemetry(meter_provider=meter_provider, tracer_provider=tracer_provider)
        self.registry = WorkflowRegistry.of(workflows)
        self.data_converter = data_converter if data_converter is not None else DataConverter()
        for cls in types:
            self.data_converter.register_type(cls)
        check_workflow_hints(self.registry, self.data_converter)
        self._run_worker = worker
        self.options = options or RuntimeOptions()
        self._description = description
        self._force_continue = force_continue
        self._passivation = passivation
        self._state = "new"
        self._stack: contextlib.AsyncExitStack | None = None
        self._services: Services | None = None
        self._client: Client | None = None
        self._worker: Worker | None = None
        self._token: Token[Runtime | None] | None = None
        #: the server URL(s), without any secret they carry (set once known)
        self.url: str | None = None

    def __repr__(self) -> str:
        worker = self._worker.statistics() if self._worker else None
        return f"<Runtime {redact_url(self._description)} state={self._state} worker={worker}>"

    # -- constructors ----------------------------------------------------------------------

    @classmethod
    def in_memory(
        cls,
        *,
        workflows: Iterable[Any] = (),
        clock: Clock | None = None,
        worker: bool = True,
        **opts: Any,
    ) -> Runtime:
        """A runtime on the memory backend: for unit tests and ``riverrun.testing``."""
        from ..persistence import open_memory_backend

        own = _split(opts)

        def factory(codec: Codec) -> contextlib.AbstractAsyncContextManager[Backend]:
            return open_memory_backend(
                codec=codec, clock=clock, partitions=own["options"].partitions
            )

        return cls(factory, workflows=workflows, worker=worker, description="memory", **own)

    @classmethod
    def connect(
        cls,
        servers: str | Sequence[str] | None = None,
        *,
        workflows: Iterable[Any] = (),
        namespace: str = "default",
        worker: bool | None = None,
        connect_timeout: float = 5.0,
        replicas: int = 1,
        user_credentials: str | os.PathLike[str] | None = None,
        nkeys_seed: str | os.PathLike[str] | None = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        tls: ssl.SSLContext | bool | None = None,
        tls_ca_file: str | os.PathLike[str] | None = None,
        tls_cert_file: str | os.PathLike[str] | None = None,
        tls_key_file: str | os.PathLike[str] | None = None,
        tls_hostname: str | None = None,
        inbox_prefix: str | None = None,
        **opts: Any,
    ) -> Runtime:
        """A runtime on an existing NATS server or cluster (JetStream enabled).

        Credentials and TLS follow nats-py's names; give at most one way of authenticating
        (or none, or put ``user:password@`` / ``token@`` in the URLs). Secrets never appear in
        ``repr``, ``rt.url`` or error messages.

        Args:
            servers: NATS URL(s); default ``$RIVERRUN_SERVERS`` or ``nats://127.0.0.1:4222``.
            worker: host the given workflows here (default: when ``workflows`` are given).
            replicas: stream replicas; use 3 on a cluster.
            user_credentials: path of a ``.creds`` file (JWT + nkey seed, from ``nsc``).
            nkeys_seed: path of a file holding an nkey seed, or the seed itself (``SU...``).
            user, password: user/password authentication.
            token: token authentication.
            tls: an ``ssl.SSLContext``, or ``True`` for TLS checked against the system's CAs.
            tls_ca_file: PEM file of the CA that signed the server's certificate.
            tls_cert_file, tls_key_file: client certificate and key (PEM), for servers that
                verify clients.
            tls_hostname: the name the server's certificate is checked against.
            inbox_prefix: prefix of reply subjects (default ``_INBOX``); one per user keeps
                users from reading each other's replies (see docs/deployment.md).

        Raises:
            ValueError: contradicting options, or a file that is missing or not what it
                should be (checked here, before anything connects).
        """
        from ..persistence import open_jetstream_backend

        security = NatsSecurity.build(
            user_credentials=user_credentials,
            nkeys_seed=nkeys_seed,
            user=user,
            password=password,
            token=token,
            tls=tls,
            tls_ca_file=tls_ca_file,
            tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file,
            tls_hostname=tls_hostname,
            inbox_prefix=inbox_prefix,
        )
        servers = servers or os.environ.get("RIVERRUN_SERVERS", "nats://127.0.0.1:4222")
        workflows = list(workflows)
        own = _split(opts, namespace=namespace)

        def factory(codec: Codec) -> contextlib.AbstractAsyncContextManager[Backend]:
            return open_jetstream_backend(
                servers,
                namespace=namespace,
                codec=codec,
                replicas=replicas,
                connect_timeout=connect_timeout,
                security=security,
                partitions=own["options"].partitions,
            )

        where = redact_url(servers if isinstance(servers, str) else ",".join(servers))
        runtime = cls(
            factory,
            workflows=workflows,
            worker=bool(workflows) if worker is None else worker,
            description=f"nats {where} ns={namespace}",
            **own,
        )
        runtime.url = where
        return runtime

    @classmethod
    def embedded(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        workflows: Iterable[Any] = (),
        namespace: str = "default",
        worker: bool = True,
        sync_interval: str | None = "always",
        **opts: Any,
    ) -> Runtime:
        """A runtime that starts its own nats-server (JetStream, syncing every write).

        Args:
            data_dir: where the server keeps its data; a temporary directory when omitted.
        """
        from ..persistence import EmbeddedNatsServer, open_jetstream_backend

        runtime: Runtime
        own = _split(opts, namespace=namespace)

        @contextlib.asynccontextmanager
        async def factory(codec: Codec) -> Any:
            async with EmbeddedNatsServer(data_dir=data_dir, sync_interval=sync_interval) as server:
                runtime.url = server.url
                async with open_jetstream_backend(
                    server.url,
                    namespace=namespace,
                    codec=codec,
                    partitions=own["options"].partitions,
                ) as backend:
                    yield backend

        runtime = cls(
            factory,
            workflows=workflows,
            worker=worker,
            description=f"embedded ns={namespace}",
            **own,
        )
        return runtime

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        if self._state != "new":
            raise RuntimeClosed(f"this Runtime is {self._state}; create a new one")
        self._state = "starting"
        stack = contextlib.AsyncExitStack()
        try:
            codec = self.data_converter.codec
            backend = await stack.enter_async_context(self._factory(codec))
            payloads = Payloads(
                store=backend.payloads,
                codec=codec,
                threshold=self.options.payload_threshold,
                converter=self.data_converter,
            )
            self._services = Services(
                backend=backend,
                codec=codec,
                registry=self.registry,
                options=self.options,
                payloads=payloads,
                force_continue=self._force_continue,
                passivation_enabled=self._passivation,
                local_worker=self._run_worker,
                telemetry=self._telemetry,
            )
            self._client = Client(self._services)
            if self._run_worker:
                # the actor system outlives the routing task: exits run in reverse order
                system = await stack.enter_async_context(ActorSystem(grace=2.0))
                tg: TaskGroup = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(tg.cancel_scope.cancel)
                self._worker = Worker(self._services)
                self._telemetry.observe_worker(self._worker, self._services.worker_id)
                await tg.start(self._worker.run, system)
        except BaseException:
            await stack.aclose()
            self._state = "closed"
            raise
        self._stack = stack
        self._token = _current.set(self)
        self._state = "running"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "closed"
        if self._token is not None:
            with contextlib.suppress(ValueError):
                _current.reset(self._token)
        if self._stack is not None:
            await self._stack.aclose()

    @property
    def client(self) -> Client:
        if self._client is None or self._state != "running":
            raise RuntimeClosed(f"this Runtime is {self._state}; use it inside `async with`")
        return self._client

    @property
    def worker(self) -> Worker | None:
        return self._worker

    @property
    def backend(self) -> Backend:
        if self._services is None:
            raise RuntimeClosed("this Runtime has not been entered")
        return self._services.backend

    async def serve_forever(self) -> None:
        """Keep hosting workflows until cancelled (Ctrl-C, SIGTERM)."""
        self.client  # noqa: B018 - raises if not running
        await anyio.sleep_forever()


_OWN = (
    "force_continue",
    "passivation",
    "options",
    "meter_provider",
    "tracer_provider",
    "data_converter",
    "types",
)


def _split(opts: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """Route keyword options: Runtime's own vs RuntimeOptions fields."""
    own: dict[str, Any] = {k: opts.pop(k) for k in _OWN if k in opts}
    if "options" not in own:
        fields = {**defaults, **opts}
        own["options"] = RuntimeOptions(**fields)
    elif opts:
        raise TypeError(f"pass either options= or option keywords, not both: {sorted(opts)}")
    return own
