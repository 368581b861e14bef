"""Claim check: values over the threshold are stored in the payload store, and the event
carries a ``PayloadRef`` instead. References survive continue-as-new unchanged.

Design note. Workflow code only ever sees values as the codec carries them: ``pack`` hands
back a small value decoded from its own encoding, and whatever an event stores (a value or a
reference) the instance resolves through ``unpack_data`` on the live path and on replay
alike. Resolving a reference this process has just stored would read back what it still
holds, so the encoded bytes of recently stored or read payloads are kept in a small cache
bounded in bytes; being content-addressed, a cached entry can never be stale.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs

from .._errors import CodecError, SerializationError
from ..persistence import PayloadStore
from ..persistence._codec import Codec
from ._converter import DataConverter

__all__ = ["PayloadRef", "Payloads"]

#: keys of event data that may hold a user value (and so a claim-check reference)
VALUE_KEYS = ("args", "kwargs", "result", "payload")

#: the payload bytes kept in memory for references resolved soon after (see the module note)
_CACHE_BYTES = 32 * 1024 * 1024
_CACHE_ITEM_BYTES = 8 * 1024 * 1024


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
    #: turns typed values into data the codec carries (by type hints), and back
    converter: DataConverter = attrs.field(
        default=attrs.Factory(lambda self: DataConverter(codec=self.codec), takes_self=True),
        kw_only=True,
    )
    _recent: OrderedDict[str, bytes] = attrs.field(init=False, factory=OrderedDict)
    _recent_bytes: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        # a codec shared by several runtimes may have it registered already
        with contextlib.suppress(ValueError):
            self.codec.register_type(PayloadRef, name="riverrun.PayloadRef")

    def encode(self, value: object, what: str) -> bytes:
        """Encode a user value, turning codec failures into ``SerializationError``."""
        try:
            return self.codec.dumps(value, what=what)
        except CodecError as err:
            raise SerializationError(
                f"{what} cannot be serialized: {err}. Use values the codec carries: "
                "builtins, timezone-aware datetimes, UUID, Decimal, registered attrs classes "
                "and enums (Runtime(types=[...])); a dataclass, attrs class or pydantic model "
                "travels where a type hint names it"
            ) from err

    def check(self, value: object, what: str) -> None:
        self.encode(value, what)

    async def pack(self, value: Any, what: str, *, force: bool = False) -> Any:
        """``value`` as the codec carries it (decoded from its encoding, as every reader will
        see it: a ``bytearray`` is ``bytes``), or a reference to it in the payload store if
        its encoding is over the threshold (or ``force``).

        Raises:
            SerializationError: the codec cannot carry ``value`` (the message names the path).
        """
        data = self.encode(value, what)
        if len(data) <= self.threshold and not force:
            try:
                return self.codec.loads(data, what=what)
            except CodecError as err:  # e.g. a registered class whose __init__ refuses it
                raise SerializationError(
                    f"{what} does not decode from its own encoding: {err}"
                ) from err
        ref = await self.store.put(data)
        self._remember(ref, data)
        return PayloadRef(ref=ref, size=len(data))

    async def pack_result(self, definition: Any, result: Any) -> Any:
        """A step's result, encoded by its return hint, then as :meth:`pack`."""
        hints = definition.hints.get()
        data = self.converter.encode_result(hints, result)
        return await self.pack(data, f"step {definition.name!r} result")

    async def unpack(self, value: Any) -> Any:
        if isinstance(value, PayloadRef):
            data = self._recent.get(value.ref)
            if data is None:
                data = await self.store.get(value.ref)
                self._remember(value.ref, data)
            else:
                self._recent.move_to_end(value.ref)
            return self.codec.loads(data, what=f"payload {value.ref}")
        return value

    async def pack_data(
        self, data: Mapping[str, Any], what: str, *, force: bool = False
    ) -> dict[str, Any]:
        packed = dict(data)
        for key in VALUE_KEYS:
            if key in packed:
                packed[key] = await self.pack(packed[key], f"{what} {key}", force=force)
        return packed

    @staticmethod
    def has_refs(data: Mapping[str, Any]) -> bool:
        """Whether ``data`` holds a reference for :meth:`unpack_data` to resolve."""
        return any(isinstance(data.get(key), PayloadRef) for key in VALUE_KEYS)

    async def unpack_data(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        if not self.has_refs(data):
            return data
        unpacked = dict(data)
        for key in VALUE_KEYS:
            if key in unpacked:
                unpacked[key] = await self.unpack(unpacked[key])
        return unpacked

    async def pack_signals(
        self, signals: list[tuple[str, Any, int]], *, force: bool = False
    ) -> list[list[Any]] | PayloadRef:
        """Signals carried across continue-as-new: each payload over the threshold by
        reference; with ``force``, the whole list by one reference too (however many)."""
        packed = [[name, await self.pack(p, f"signal {name!r}"), seq] for name, p, seq in signals]
        if force and packed:
            ref: PayloadRef = await self.pack(packed, "carried signals", force=True)
            return ref
        return packed

    async def unpack_signals(self, signals: Any) -> list[list[Any]]:
        if isinstance(signals, PayloadRef):
            signals = await self.unpack(signals)
        return [[name, await self.unpack(p), seq] for name, p, seq in signals or ()]

    def _remember(self, ref: str, data: bytes) -> None:
        if len(data) > _CACHE_ITEM_BYTES or ref in self._recent:
            return
        self._recent[ref] = data
        self._recent_bytes += len(data)
        while self._recent_bytes > _CACHE_BYTES:
            _, dropped = self._recent.popitem(last=False)
            self._recent_bytes -= len(dropped)
