"""The runtime every command talks through, built from the resolved settings.

Usually ``Runtime.connect``. When ``RIVERRUN_S3_BUCKET`` is set, payloads and snapshots go to
S3 instead of the JetStream object store; every process of a namespace (workers *and* the
command line reading results) must then use the same bucket, which is why this is read from
the environment by every command rather than being a worker option.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from riverrun import Runtime
    from riverrun.persistence import Backend, Codec

    from ._settings import Settings

__all__ = ["S3Settings", "open_runtime"]


@attrs.frozen(kw_only=True)
class S3Settings:
    """Where payloads and snapshots go when S3 replaces the JetStream object store."""

    bucket: str
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    prefix: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings | None:
        """``RIVERRUN_S3_BUCKET`` (required), ``RIVERRUN_S3_ENDPOINT_URL``,
        ``RIVERRUN_S3_REGION`` (or ``AWS_REGION``), ``RIVERRUN_S3_PREFIX``; ``None`` without
        a bucket. Credentials come from the usual AWS chain (``AWS_ACCESS_KEY_ID``, ...)."""
        env = os.environ if env is None else env
        bucket = env.get("RIVERRUN_S3_BUCKET", "").strip()
        if not bucket:
            return None
        return cls(
            bucket=bucket,
            endpoint_url=env.get("RIVERRUN_S3_ENDPOINT_URL") or None,
            region_name=env.get("RIVERRUN_S3_REGION") or env.get("AWS_REGION") or "us-east-1",
            prefix=env.get("RIVERRUN_S3_PREFIX", ""),
        )


def open_runtime(
    settings: Settings,
    *,
    workflows: Sequence[Any] = (),
    worker: bool = False,
    **runtime_options: Any,
) -> Runtime:
    """A runtime on ``settings.servers`` (not entered yet: use ``async with``).

    ``runtime_options``: more ``Runtime`` keywords (``meter_provider``, ...).

    Raises:
        ValueError: a credential or TLS file that is missing or not what it should be.
    """
    from riverrun import Runtime

    if settings.s3 is None:
        return Runtime.connect(
            settings.servers,
            workflows=workflows,
            namespace=settings.namespace,
            worker=worker,
            connect_timeout=settings.connect_timeout,
            replicas=settings.replicas,
            **runtime_options,
            **settings.security,
        )
    from riverrun import RuntimeOptions
    from riverrun.persistence import NatsSecurity, redact_url

    s3 = settings.s3
    security = NatsSecurity.build(**settings.security)

    @contextlib.asynccontextmanager
    async def backend_with_s3(codec: Codec) -> AsyncIterator[Backend]:
        from riverrun.persistence import open_jetstream_backend, open_s3_stores

        async with (
            open_jetstream_backend(
                settings.servers,
                namespace=settings.namespace,
                codec=codec,
                replicas=settings.replicas,
                connect_timeout=settings.connect_timeout,
                security=security,
            ) as backend,
            open_s3_stores(
                s3.bucket,
                endpoint_url=s3.endpoint_url,
                region_name=s3.region_name,
                prefix=s3.prefix or f"{settings.namespace}/",
            ) as (payloads, snapshots),
        ):
            yield attrs.evolve(backend, payloads=payloads, snapshots=snapshots)

    return Runtime(
        backend_with_s3,
        workflows=workflows,
        worker=worker,
        options=RuntimeOptions(
            namespace=settings.namespace, queues=runtime_options.pop("queues", None)
        ),
        description=(
            f"nats {redact_url(','.join(settings.servers))} + s3 {s3.bucket} "
            f"ns={settings.namespace}"
        ),
        **runtime_options,
    )
