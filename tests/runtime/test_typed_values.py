"""Typed values: arguments, results and signal payloads decoded by type hints, on memory and
on real JetStream; a value that does not fit its hint is an error naming the parameter."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import attrs
import pydantic
import pytest

from riverrun import (
    DataConverter,
    EventType,
    Runtime,
    SerializationError,
    WorkflowFailed,
    continue_as_new,
    execute_child,
    start_child,
    step,
    wait_for_signal,
    workflow,
)
from riverrun.testing import wait_until

from .conftest import RuntimeFactory

pytestmark = pytest.mark.anyio

#: what steps saw, by test key (steps run live only, never on replay)
_SEEN: dict[str, list[Any]] = {}


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Item:
    sku: str
    qty: int
    color: Color = Color.RED


@attrs.frozen
class Order:
    id: UUID
    placed_at: datetime
    items: list[Item]
    total: Decimal
    tags: frozenset[str]
    dims: tuple[int, int]
    seen: set[int]
    by_sku: dict[str, Item]
    note: str | None = None
    priority: Literal["low", "high"] = "low"


class Address(pydantic.BaseModel):
    street: str
    since: datetime


ORDER = Order(
    id=UUID("12345678-1234-5678-1234-567812345678"),
    placed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    items=[Item("a", 1), Item("b", 2, Color.BLUE)],
    total=Decimal("12.50"),
    tags=frozenset({"x", "y"}),
    dims=(3, 4),
    seen={1, 2, 3},
    by_sku={"a": Item("a", 1)},
    note=None,
    priority="high",
)


@step()
async def observe(key: str, value: Any) -> None:
    _SEEN.setdefault(key, []).append(value)


@step()
async def summarize(order: Order, factor: Decimal) -> tuple[Item, Color]:
    assert isinstance(order, Order), order  # decoded before the step's code runs
    assert isinstance(order.items[1], Item)
    return Item(sku=order.items[0].sku, qty=int(order.total * factor)), Color.BLUE


@workflow()
async def ship(key: str, order: Order) -> Order:
    assert isinstance(order, Order) and isinstance(order.placed_at, datetime)
    first, color = await summarize(order, Decimal(2))
    await observe(key, (order, first, color))
    return attrs.evolve(order, note=f"{first.sku}x{first.qty} {color.value}")


@workflow()
async def await_item(key: str) -> Item:
    item = await wait_for_signal("item", type=Item)
    untyped = await wait_for_signal("raw")
    await observe(key, (item, untyped))
    return item


@workflow()
async def child_order(order: Order) -> list[Item]:
    return list(order.items)


@workflow()
async def parent(key: str, order: Order) -> list[Item]:
    items = await execute_child(child_order, order, workflow_id=f"{key}.a")
    handle = await start_child(child_order, order, workflow_id=f"{key}.b")
    again = await handle.result()
    await observe(key, (items, again))
    return items


@workflow()
async def replayed(key: str, order: Order) -> Order:
    first, _ = await summarize(order, Decimal(1))
    await wait_for_signal("go")  # the instance passivates here: what follows is a replay
    await observe(key, (order, first))
    return order


@workflow()
async def with_model(address: Address) -> Address:
    assert isinstance(address, Address)
    return address.model_copy(update={"street": address.street.upper()})


@step()
async def needs_order(order: Order) -> None:
    return None


@workflow()
async def misuses_step() -> str:
    try:
        await needs_order("not an order")  # type: ignore[arg-type]
    except SerializationError as err:
        return str(err)
    return "no error"


@workflow()
async def untyped(value: Any) -> Any:
    return value


def _key(namespace_key: str) -> str:
    return "t-" + "".join(c if c.isalnum() else "-" for c in namespace_key)[-120:]


async def test_workflow_and_step_values_round_trip_typed(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    async with make_runtime(workflows=[ship]) as rt:
        handle = await rt.client.start(ship, key, ORDER, workflow_id=key)
        result = await handle.result(timeout=60)
    [(seen_order, first, color)] = _SEEN.pop(key)
    assert ORDER == seen_order
    assert Item("a", 25) == first
    assert Color.BLUE is color
    assert attrs.evolve(ORDER, note="ax25 blue") == result
    assert isinstance(result.seen, set) and isinstance(result.tags, frozenset)
    assert isinstance(result.dims, tuple) and isinstance(result.items[0], Item)


async def test_signal_payload_decoded_by_its_type(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    async with make_runtime(workflows=[await_item]) as rt:
        handle = await rt.client.start(await_item, key, workflow_id=key)
        await handle.signal("item", Item("s", 3, Color.BLUE))
        await handle.signal("raw", Item("r", 1))
        result = await handle.result(timeout=60)
    [(item, raw)] = _SEEN.pop(key)
    assert Item("s", 3, Color.BLUE) == item == result
    # without type=, the workflow sees plain data (the hint lives with the receiver)
    assert {"sku": "r", "qty": 1, "color": "red"} == raw


async def test_child_arguments_and_results_round_trip_typed(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    async with make_runtime(workflows=[parent, child_order]) as rt:
        handle = await rt.client.start(parent, key, ORDER, workflow_id=key)
        result = await handle.result(timeout=60)
    [(items, again)] = _SEEN.pop(key)
    assert ORDER.items == items == again == result
    assert all(isinstance(i, Item) for i in items + again)


async def test_replay_sees_the_same_typed_values(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    async with make_runtime(
        workflows=[replayed], passivate_after=timedelta(seconds=0.05)
    ) as rt:
        worker = rt.worker
        assert worker is not None
        passivated = worker.statistics().passivated
        handle = await rt.client.start(replayed, key, ORDER, workflow_id=key)

        async def passivated_since() -> bool:
            return worker.statistics().passivated > passivated

        await wait_until(passivated_since, timeout=60)
        await handle.signal("go")
        result = await handle.result(timeout=60)
    [(order, first)] = _SEEN.pop(key)  # seen by the code after replaying its history
    assert ORDER == order == result
    assert Item("a", 12) == first


async def test_pydantic_model_round_trip(make_runtime: RuntimeFactory) -> None:
    since = datetime(2025, 5, 6, tzinfo=UTC)
    async with make_runtime(workflows=[with_model]) as rt:
        handle = await rt.client.start(with_model, Address(street="main st", since=since))
        result = await handle.result(timeout=60)
    assert Address(street="MAIN ST", since=since) == result


async def test_start_with_a_value_that_does_not_fit_names_the_parameter(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[ship]) as rt:
        with pytest.raises(SerializationError) as caught:
            await rt.client.start(ship, "k", "not an order")
        with pytest.raises(SerializationError) as nested:
            await rt.client.start(ship, "k", attrs.evolve(ORDER, items=[Item("a", "1")]))  # type: ignore[arg-type]
        with pytest.raises(SerializationError) as naive:
            await rt.client.start(ship, "k", attrs.evolve(ORDER, placed_at=datetime(2026, 1, 1)))
        runs = await rt.client.list_runs()
    assert "argument 'order' of workflow 'ship': expected Order, got str" == str(caught.value)
    assert "argument 'order' of workflow 'ship'.items[0].qty: expected int, got str" == str(
        nested.value
    )
    assert "naive datetime" in str(naive.value)
    assert [] == runs  # nothing was started


async def test_step_called_with_a_value_that_does_not_fit_names_the_parameter(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[misuses_step]) as rt:
        handle = await rt.client.start(misuses_step)
        message = await handle.result(timeout=60)
    assert "argument 'order' of step 'needs_order': expected Order, got str" == message


async def test_stored_arguments_that_no_longer_decode_fail_the_run_once(
    make_runtime: RuntimeFactory, namespace_key: str
) -> None:
    key = _key(namespace_key)
    async with make_runtime(workflows=[ship]) as rt:
        # as written by older code, whose `order` was a string
        services = rt._services
        assert services is not None
        await services.start_chain("ship", ("k", "o-17"), {}, workflow_id=key)
        with pytest.raises(WorkflowFailed) as caught:
            await rt.client.get_handle(key).result(timeout=60)
        events = await rt.client.get_handle(key).events()
    assert "argument 'order' of workflow 'ship': expected Order, got str" in str(caught.value)
    assert [EventType.WORKFLOW_STARTED, EventType.WORKFLOW_FAILED] == [e.type for e in events]


async def test_unregistered_class_without_a_hint_is_refused_at_start(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[untyped]) as rt:
        with pytest.raises(SerializationError) as caught:
            await rt.client.start(untyped, Item("a", 1))
    assert "cannot encode object of type Item" in str(caught.value)
    assert "type hint" in str(caught.value)


async def test_types_registers_attrs_classes_for_untyped_values(
    make_runtime: RuntimeFactory,
) -> None:
    point = Point(x=1, y=2)
    async with make_runtime(workflows=[untyped], types=[Point, Color]) as rt:
        result = await (await rt.client.start(untyped, [point, Color.RED])).result(timeout=60)
    assert [point, Color.RED] == result


@attrs.frozen
class Point:
    x: int
    y: int


class Money:
    """Not a dataclass: travels through a hook registered with the converter."""

    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents

    __hash__ = None  # type: ignore[assignment]


@workflow()
async def doubled(amount: Money) -> Money:
    return Money(amount.cents * 2)


async def test_a_data_converter_hook_carries_a_custom_type(
    make_runtime: RuntimeFactory,
) -> None:
    converter = DataConverter()
    converter.register(Money, encode=lambda m: m.cents, decode=Money)
    async with make_runtime(workflows=[doubled], data_converter=converter) as rt:
        result = await (await rt.client.start(doubled, Money(21))).result(timeout=60)
    assert Money(42) == result


def test_a_hint_the_converter_cannot_handle_is_refused_at_registration() -> None:
    with pytest.raises(TypeError) as caught:
        Runtime.in_memory(workflows=[doubled])
    assert "argument 'amount' of workflow 'doubled'" in str(caught.value)
    assert "Money" in str(caught.value)


@workflow()
async def counting(item: Item, runs: list[Item]) -> list[Item]:
    runs = [*runs, item]
    if len(runs) < 3:
        continue_as_new(Item(item.sku, item.qty + 1), runs)
    return runs


async def test_continue_as_new_carries_typed_arguments(make_runtime: RuntimeFactory) -> None:
    async with make_runtime(workflows=[counting]) as rt:
        handle = await rt.client.start(counting, Item("a", 1), [])
        result = await handle.result(timeout=60)
    assert [Item("a", 1), Item("a", 2), Item("a", 3)] == result


def test_auto_continue_as_new_refuses_class_arguments_at_registration() -> None:
    @workflow(auto_continue_as_new=True)
    async def auto_typed(state: Item) -> None:
        return None

    with pytest.raises(TypeError, match="argument 'state' of workflow 'auto_typed'"):
        Runtime.in_memory(workflows=[auto_typed])


@step()
async def takes_money(amount: Money) -> None:
    return None


@workflow()
async def calls_takes_money() -> str:
    try:
        await takes_money(Money(1))
    except SerializationError as err:
        return str(err)
    return "no error"


async def test_a_step_hint_the_converter_cannot_handle_is_an_error_at_the_call(
    make_runtime: RuntimeFactory,
) -> None:
    async with make_runtime(workflows=[calls_takes_money]) as rt:
        message = await (await rt.client.start(calls_takes_money)).result(timeout=60)
    assert "argument 'amount' of step 'takes_money': cannot handle the type hint Money" == message


async def test_a_start_by_name_from_another_process_is_decoded_by_the_worker(
    nats_server: Any, namespace: str
) -> None:
    """A client that does not register the workflow sends plain data; the worker's hints
    decode it. The handle, without the function, gets the result as plain data."""
    key = f"by-name-{namespace}"
    async with (
        Runtime.connect(nats_server.url, namespace=namespace, workflows=[ship]),
        Runtime.connect(nats_server.url, namespace=namespace, worker=False) as client_rt,
    ):
        handle = await client_rt.client.start("ship", key, ORDER, workflow_id=key)
        result = await handle.result(timeout=60)
    [(seen_order, _, _)] = _SEEN.pop(key)
    assert ORDER == seen_order
    assert "ax25 blue" == result["note"]
    assert [{"sku": "a", "qty": 1, "color": "red"}, {"sku": "b", "qty": 2, "color": "blue"}] == (
        result["items"]
    )
