"""A module with a typed workflow and a ``riverrun_converter``, for `riverrun worker`."""

from __future__ import annotations

from riverrun import DataConverter, workflow


class Cents:
    def __init__(self, value: int) -> None:
        self.value = value


@workflow()
async def add_tax(amount: Cents) -> Cents:
    return Cents(amount.value * 12 // 10)


riverrun_converter = DataConverter()
riverrun_converter.register(Cents, encode=lambda c: c.value, decode=Cents)

not_a_converter = 3
