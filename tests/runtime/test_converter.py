"""DataConverter on its own: every supported kind through the codec's bytes and back by its
hint, deterministic bytes, clear errors for values and hints it cannot take."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, NewType, Optional
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs
import pydantic
import pytest
from hypothesis import given, strategies as st

from riverrun import DataConverter, SerializationError

UserId = NewType("UserId", int)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Kind(enum.StrEnum):
    A = "a"


@dataclasses.dataclass
class Line:
    sku: str
    qty: int = 1


@attrs.define
class Basket:
    lines: list[Line]
    owner: UserId
    level: Level
    kind: Kind
    at: datetime
    extra: dict[str, Decimal] = attrs.field(factory=dict)
    parent: Basket | None = None
    renamed: int = attrs.field(default=0, alias="renamed_to")


class Model(pydantic.BaseModel):
    name: str
    at: datetime
    amounts: list[Decimal]


AT = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=ZoneInfo("Europe/Paris"))

CASES: list[tuple[Any, Any]] = [
    (None, None),
    (True, bool),
    (7, int),
    (2.5, float),
    ("s", str),
    (b"\x00b", bytes),
    (AT, datetime),
    (datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-3))), datetime),
    (date(2026, 1, 2), date),
    (timedelta(seconds=3), timedelta),
    (UUID(int=5), UUID),
    (Decimal("1.10"), Decimal),
    (Level.HIGH, Level),
    (Kind.A, Kind),
    ((1, "a"), tuple[int, str]),
    ((1, 2, 3), tuple[int, ...]),
    ({1, 2}, set[int]),
    (frozenset({"a", "b"}), frozenset[str]),
    ([Line("a")], list[Line]),
    ([Line("a")], Sequence[Line]),
    ({"a": Line("b", 2)}, dict[str, Line]),
    ({"a": Line("b", 2)}, Mapping[str, Line]),
    ({Level.LOW: [UUID(int=1)]}, dict[Level, list[UUID]]),
    (None, Line | None),
    (Line("x"), Optional[Line]),  # noqa: UP045 - the typing spelling is supported too
    ("high", Literal["low", "high"]),
    (3, Annotated[int, "meta"]),
    (UserId(4), UserId),
    (
        Basket(
            lines=[Line("a"), Line("b", 3)],
            owner=UserId(9),
            level=Level.LOW,
            kind=Kind.A,
            at=AT,
            extra={"tax": Decimal("0.2")},
            parent=Basket(lines=[], owner=UserId(1), level=Level.HIGH, kind=Kind.A, at=AT),
            renamed_to=5,
        ),
        Basket,
    ),
    (Model(name="m", at=AT, amounts=[Decimal("1.5")]), Model),
    ({"any": object}, Any),
]


@pytest.mark.parametrize(("value", "hint"), CASES, ids=[str(h) for _, h in CASES])
def test_each_kind_round_trips_through_bytes(value: Any, hint: Any) -> None:
    converter = DataConverter()
    data = converter.to_data(value, hint, what="v")
    if hint is Any:
        assert value is data  # untyped values pass untouched
        return
    decoded = converter.from_data(converter.codec.loads(converter.codec.dumps(data), what="v"), hint)
    assert value == decoded
    assert type(value) is type(decoded)


def test_bytes_like_values_fit_a_bytes_hint_as_bytes() -> None:
    converter = DataConverter()
    assert b"ab" == converter.to_data(bytearray(b"ab"), bytes)
    assert b"ab" == converter.to_data(memoryview(b"ab"), bytes)
    assert 2 == converter.to_data(2, float)


def test_encoding_is_deterministic_for_sets_of_strings() -> None:
    converter = DataConverter()
    words = [f"w{i}" for i in range(50)]
    forward = converter.codec.dumps(converter.to_data(set(words), set[str]))
    backward = converter.codec.dumps(converter.to_data(set(reversed(words)), set[str]))
    assert forward == backward


@given(st.lists(st.tuples(st.text(max_size=5), st.integers()), max_size=20))
def test_dataclass_lists_round_trip(pairs: list[tuple[str, int]]) -> None:
    converter = DataConverter()
    value = [Line(sku, qty) for sku, qty in pairs]
    data = converter.codec.loads(converter.codec.dumps(converter.to_data(value, list[Line])), what="v")
    assert value == converter.from_data(data, list[Line])


def test_a_value_that_does_not_fit_names_the_path() -> None:
    converter = DataConverter()
    with pytest.raises(SerializationError) as caught:
        converter.to_data([Line("a", "2")], list[Line], what="argument 'lines' of step 's'")  # type: ignore[arg-type]
    assert "argument 'lines' of step 's'[0].qty: expected int, got str" == str(caught.value)
    with pytest.raises(SerializationError, match="expected one of"):
        converter.to_data("mid", Literal["low", "high"])
    with pytest.raises(SerializationError, match=re.escape("expected Line | None, got int")):
        converter.to_data(3, Line | None)


def test_a_naive_datetime_is_refused_both_ways() -> None:
    converter = DataConverter()
    with pytest.raises(SerializationError, match="naive datetime"):
        converter.to_data(datetime(2026, 1, 1), datetime)
    with pytest.raises(SerializationError, match="naive datetime"):
        converter.from_data(datetime(2026, 1, 1), datetime)


def test_data_that_does_not_decode_names_what() -> None:
    converter = DataConverter()
    with pytest.raises(SerializationError) as caught:
        converter.from_data({"sku": 1}, Line, what="result of step 's'")
    assert "result of step 's'.sku: expected str, got int" == str(caught.value)
    with pytest.raises(SerializationError, match="'purple' is not a Level"):
        converter.from_data("purple", Level)
    with pytest.raises(SerializationError, match="does not validate as Model"):
        converter.from_data({"name": 1}, Model)


def test_json_like_data_decodes_into_hints() -> None:
    """What a start by name from the command line carries: strings for datetimes, UUIDs,
    decimals, lists for tuples and sets."""
    converter = DataConverter()
    assert datetime(2026, 1, 1, tzinfo=UTC) == converter.from_data(
        "2026-01-01T00:00:00+00:00", datetime
    )
    assert UUID(int=1) == converter.from_data(str(UUID(int=1)), UUID)
    assert Decimal("0.1") == converter.from_data("0.1", Decimal)
    assert (1, 2) == converter.from_data([1, 2], tuple[int, int])
    assert {1, 2} == converter.from_data([1, 2], set[int])
    assert Line("a", 1) == converter.from_data({"sku": "a", "gone": True}, Line)  # old field


def test_plain_turns_unknown_classes_into_data_and_keeps_registered_ones() -> None:
    @attrs.frozen
    class Registered:
        x: int

    converter = DataConverter(types=[Registered])
    assert {"sku": "a", "qty": 1} == converter.to_plain(Line("a"))
    assert [Registered(x=1), "a"] == converter.to_plain([Registered(x=1), Kind.A])


def test_check_hint_refuses_types_it_cannot_handle() -> None:
    class Plain:
        pass

    converter = DataConverter()
    with pytest.raises(TypeError, match="cannot handle the type hint Plain"):
        converter.check_hint(list[Plain], "argument 'x' of workflow 'w'")
    with pytest.raises(TypeError, match="a class is not a value"):
        converter.check_hint(type[int], "argument 'x' of workflow 'w'")
    converter.register(Plain, encode=lambda _: None, decode=lambda _: Plain())
    converter.check_hint(list[Plain], "argument 'x' of workflow 'w'")


def test_a_failing_hook_is_a_serialization_error_naming_the_path() -> None:
    class Plain:
        pass

    def broken(_: Plain) -> Any:
        raise ValueError("nope")

    converter = DataConverter()
    converter.register(Plain, encode=broken, decode=lambda _: Plain())
    with pytest.raises(SerializationError) as caught:
        converter.to_data([Plain()], list[Plain], what="r")
    assert "r[0]: the Plain hook failed: ValueError('nope')" == str(caught.value)
    assert 1 == converter.to_data(1, Annotated[int, {"unhashable": []}])


def test_an_object_hint_carries_any_value_like_any() -> None:
    # `-> dict[str, object]` is a common annotation for JSON-like results
    converter = DataConverter()
    value = {"status": "shipped", "total": 3, "items": [1, 2]}
    data = converter.to_data(value, dict[str, object], what="v")
    assert value == converter.from_data(data, dict[str, object])
    converter.check_hint(dict[str, object], "result of workflow 'w'")
