"""Claim check: values over the threshold are stored in the payload store, and the event
carries a ``PayloadRef`` instead. References survive continue-as-new unchanged."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import attrs

from .._errors import CodecError, SerializationError
from ..persistence import PayloadStore
from ..persistence._codec import Codec

__all__ = ["PayloadRef", "Payloads"]

#: keys of event data that may hold a user value (and so a claim-check reference)
VALUE_KEYS = ("args", "kwargs", "result", "payload")


@attrs.frozen(kw_only=True)
class PayloadRef:
    """Stands in an event for a value kept in the payload store."""

    ref: str
    size: int


@attrs.define(eq=False)
class Payloads:
    store: PayloadStore
    codec: Codec
    threshold: int

    def __attrs_post_init__(self) -> None:
        # a codec shared by several runtimes may have it registered already
        with contextlib.suppress(ValueError):
            self.codec.register_type(PayloadRef, name="riverrun.PayloadRef")

    def encode(self, value: object, what: str) -> bytes:
        """Encode a user value, turning codec failures into ``SerializationError``."""
        try:
            return self.codec.dumps(value, what=what)
        except CodecError as err:
            raise SerializationError(f"{what} cannot be serialized: {err}") from err

    def check(self, value: object, what: str) -> None:
        self.encode(value, what)

    async def pack(self, value: Any, what: str) -> Any:
        data = self.encode(value, what)
        if len(data) <= self.threshold:
            return value
        return PayloadRef(ref=await self.store.put(data), size=len(data))

    async def unpack(self, value: Any) -> Any:
        if isinstance(value, PayloadRef):
            return self.codec.loads(await self.store.get(value.ref), what=f"payload {value.ref}")
        return value

    async def pack_data(self, data: Mapping[str, Any], what: str) -> dict[str, Any]:
        packed = dict(data)
        for key in VALUE_KEYS:
            if key in packed:
                packed[key] = await self.pack(packed[key], f"{what} {key}")
        return packed

    async def unpack_data(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        if not any(isinstance(data.get(key), PayloadRef) for key in VALUE_KEYS):
            return data
        unpacked = dict(data)
        for key in VALUE_KEYS:
            if key in unpacked:
                unpacked[key] = await self.unpack(unpacked[key])
        return unpacked

    async def pack_signals(self, signals: list[tuple[str, Any, int]]) -> list[list[Any]]:
        return [[name, await self.pack(p, f"signal {name!r}"), seq] for name, p, seq in signals]

    async def unpack_signals(self, signals: Any) -> list[list[Any]]:
        return [[name, await self.unpack(p), seq] for name, p, seq in signals or ()]
