
"""The codec: exact round-trips (types included), clear errors, schema upcasting."""

from __future__ import annotations

import contextlib
import enum
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import attrs
import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from riverrun.persistence import CodecError, RunStatus, WorkflowRun
from riverrun.persistence._codec import Codec, _datetime_parts, _utc_datetime_payload


@attrs.frozen(kw_only=True)
class Point:
    x: int
    y: int = 0
    _label: str = "p"


@attrs.frozen(kw_only=True)
class Line:
    start: Point
    end: Point
    tags: tuple[str, ...] = ()


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Opaque:
    pass


def make_codec() -> Codec:
    codec = Codec()
    codec.register_type(Point, name="test.Point")
    codec.register_type(Line)
    codec.register_type(Color)
    return codec


CODEC = make_codec()


def same(a: Any, b: Any) -> bool:
    """Equality that also demands equal types (and tzinfo) all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):
        return bool(a == b and a.tzinfo == b.tzinfo and a.utcoffset() == b.utcoffset())
    return bool(a == b)


# -- strategies ---------------------------------------------------------------------------------

zones = st.sampled_from([UTC, ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")]) | (
    st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
)
hashable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.binary()
    | st.uuids()
    | st.dates()
    | st.timedeltas()
    | st.datetimes(timezones=zones),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=5,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.datetimes(timezones=zones)
    | st.dates()
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.sampled_from(Color)
    | st.builds(Point, x=st.integers(), y=st.integers(), label=st.text())
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(hashable, inner, max_size=4)
        | st.sets(hashable, max_size=4)
        | st.frozensets(hashable, max_size=4)
        | st.builds(
            Line,
            start=st.builds(Point, x=st.integers()),
            end=st.builds(Point, x=st.integers()),
            tags=st.lists(st.text(), max_size=2).map(tuple),
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_supported_value_round_trips_exactly(value: Any) -> None:
    decoded = CODEC.loads(CODEC.dumps(value), what="test value")
    assert same(value, decoded), (value, decoded)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_codec_error(data: bytes) -> None:
    try:
        CODEC.loads(data, what="garbage")
    except CodecError as exc:
        assert "garbage" in str(exc)


@settings(max_examples=200, deadline=None)
@given(values, st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_corrupted_encodings_only_ever_raise_codec_error(value: Any, pos: int, byte: int) -> None:
    data = bytearray(CODEC.dumps(value))
    data[pos % len(data)] = byte
    with contextlib.suppress(CodecError):
        CODEC.loads(bytes(data), what="corrupt")


# -- examples -----------------------------------------------------------------------------------


def test_tuples_stay_tuples_and_lists_stay_lists() -> None:
    value = {"t": (1, [2, (3,)]), (1, 2): "tuple key", frozenset({1}): "frozenset key"}
    decoded = CODEC.loads(CODEC.dumps(value), what="v")
    assert same(value, decoded)


@pytest.mark.parametrize(
    "value",
    [2**63 - 1, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**40, -(10**40)],
    ids=str,
)
def test_integers_of_any_size(value: int) -> None:
    assert value == CODEC.loads(CODEC.dumps(value), what="int")


def test_datetime_keeps_its_zone() -> None:
    paris = datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris"))
    offset = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=45)))

    got_paris, got_offset = CODEC.loads(CODEC.dumps([paris, offset]), what="dt")

    assert (ZoneInfo("Europe/Paris"), 1) == (got_paris.tzinfo, got_paris.fold)
    assert paris.utcoffset() == got_paris.utcoffset()
    assert timedelta(hours=5, minutes=45) == got_offset.utcoffset()


@given(
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from([0, 1, 127, 128, 255, 256, 65535, 65536, 999_999]),
    st.sampled_from([1, 127, 128, 255, 256, 2026, 9999]),
)
def test_a_utc_datetime_is_packed_by_hand_as_msgpack_would(
    value: datetime, microsecond: int, year: int
) -> None:
    # the hand-written path for UTC writes the very bytes of the general one
    for moment in (value, value.replace(microsecond=microsecond), value.replace(year=year, day=1)):
        hand = _utc_datetime_payload(moment)
        assert msgpack.packb(_datetime_parts(moment)) == hand
        decoded = CODEC.loads(CODEC.dumps(moment), what="dt")
        assert (moment, moment.fold, UTC) == (decoded, decoded.fold, decoded.tzinfo)


def test_other_scalars() -> None:
    value = [date(2024, 2, 29), timedelta(days=-1, microseconds=7), Decimal("1.10")]
    value.append(UUID("12345678-1234-5678-1234-567812345678"))
    decoded = CODEC.loads(CODEC.dumps(value), what="v")
    assert same(value, decoded)
    assert "1.10" == str(decoded[2])


def test_registered_attrs_classes_and_enums() -> None:
    line = Line(start=Point(x=1, label="a"), end=Point(x=2, y=3), tags=("t",))
    assert line == CODEC.loads(CODEC.dumps(line), what="line")
    assert Color.BLUE is CODEC.loads(CODEC.dumps(Color.BLUE), what="color")


def test_persistence_model_values_are_registered() -> None:
    run = WorkflowRun(
        run_id="r",
        workflow_id="w",
        workflow_name="n",
        status=RunStatus.CONTINUED_AS_NEW,
        execution=2,
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        result={"items": (1, 2)},
    )
    decoded = Codec().loads(Codec().dumps(run), what="run")
    assert run == decoded
    assert RunStatus.CONTINUED_AS_NEW is decoded.status


def test_unknown_type_name_on_decode() -> None:
    data = CODEC.dumps(Point(x=1))
    with pytest.raises(CodecError, match=r"run wf-1/abc event #7.*'test\.Point'"):
        Codec().loads(data, what="run wf-1/abc event #7")


def test_dumps_names_the_offending_path() -> None:
    with pytest.raises(CodecError) as caught:
        CODEC.dumps([1, {"x": Opaque()}], what="args")
    assert "args[1]['x']: cannot encode object of type Opaque" == str(caught.value)


def test_dumps_names_a_bad_field_of_an_attrs_value() -> None:
    with pytest.raises(CodecError, match=r"^value\.start\.x: cannot encode object of type Opaque"):
        CODEC.dumps(Line(start=Point(x=Opaque()), end=Point(x=1)))  # type: ignore[arg-type]


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(CodecError, match=r"^kwargs\['when'\]: .*timezone-aware"):
        CODEC.dumps({"when": datetime(2030, 1, 1)}, what="kwargs")


def test_unregistered_class_and_pickle_bait_are_refused() -> None:
    with pytest.raises(CodecError, match="cannot encode object of type"):
        CODEC.dumps(Opaque())
    with pytest.raises(CodecError):
        CODEC.dumps(lambda: None)


def test_a_value_that_contains_itself_is_a_codec_error_naming_where() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(CodecError) as caught:
        CODEC.dumps({"args": [cyclic]}, what="f() arguments")
    assert str(caught.value).startswith("f() arguments['args'][0][0]: the value contains itself")
    looped: dict[str, Any] = {}
    looped["x"] = (looped,)  # through a tuple (an extension type) as well
    with pytest.raises(CodecError, match=r"^m\['x'\]\[0\]: the value contains itself"):
        CODEC.dumps(looped, what="m")


def test_a_value_nested_too_deeply_is_a_codec_error() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(5_000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(CodecError, match="nested"):
        CODEC.dumps(deep, what="deep")


def test_other_mappings_encode_as_dict() -> None:
    from types import MappingProxyType

    assert {"a": 1} == CODEC.loads(CODEC.dumps(MappingProxyType({"a": 1})), what="m")


def test_bytearray_and_memoryview_encode_as_bytes() -> None:
    value = [bytearray(b"ab"), memoryview(b"cd")]
    assert [b"ab", b"cd"] == CODEC.loads(CODEC.dumps(value), what="b")


def test_garbage_names_what() -> None:
    with pytest.raises(CodecError, match="run wf-1/abc event #7"):
        CODEC.loads(b"\xc1\xc1\xc1", what="run wf-1/abc event #7")
    with pytest.raises(CodecError, match="trailing"):
        CODEC.loads(b"\x01\x02", what="trailing")


def test_register_type_refuses_non_attrs_classes_and_name_clashes() -> None:
    codec = Codec()
    with pytest.raises(TypeError):
        codec.register_type(Opaque)
    codec.register_type(Point, name="shared")
    with pytest.raises(ValueError, match="already registered"):
        codec.register_type(Line, name="shared")


# -- event schema versions -----------------------------------------------------------------------


def versioned_codec() -> Codec:
    codec = Codec()
    codec.register_event("order.placed", 3)
    codec.register_upcaster("order.placed", 1, lambda d: {**d, "currency": "EUR"})
    codec.register_upcaster(
        "order.placed", 2, lambda d: {"amount": {"value": d["amount"], "currency": d["currency"]}}
    )
    return codec


def test_current_version_defaults_to_one() -> None:
    codec = versioned_codec()
    assert (3, 1) == (codec.current_version("order.placed"), codec.current_version("other"))


def test_upcast_applies_the_chain() -> None:
    codec = versioned_codec()
    assert ({"amount": {"value": 5, "currency": "EUR"}}, 3) == codec.upcast(
        "order.placed", 1, {"amount": 5}
    )
    assert ({"amount": {"value": 5, "currency": "USD"}}, 3) == codec.upcast(
        "order.placed", 2, {"amount": 5, "currency": "USD"}
    )
    assert ({"x": 1}, 1) == codec.upcast("other", 1, {"x": 1})


def test_missing_upcaster_is_a_codec_error() -> None:
    codec = Codec()
    codec.register_event("e", 3)
    codec.register_upcaster("e", 1, lambda d: d)
    with pytest.raises(CodecError, match="from schema version 2 to 3"):
        codec.upcast("e", 1, {})


def test_newer_version_than_known_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="schema version 4"):
        versioned_codec().upcast("order.placed", 4, {})


def test_failing_upcaster_is_a_codec_error() -> None:
    codec = Codec()
    codec.register_event("e", 2)
    codec.register_upcaster("e", 1, lambda d: {"x": d["missing"]})
    with pytest.raises(CodecError, match="upcaster"):
        codec.upcast("e", 1, {})


def test_nested_extensions_and_a_failure_between_encodes_leave_no_trace() -> None:
    """Packers are reused per nesting level: a failed encode (deep inside extensions) must
    not leave bytes behind for the next one, and a large value's buffer is not kept."""
    codec = Codec()
    value = {"at": [datetime(2026, 1, 2, tzinfo=UTC), (1, {2, 3})], "big": 10**30}
    expected = codec.dumps(value)
    with pytest.raises(CodecError):
        codec.dumps({"at": [(1, datetime(2026, 1, 2))]})  # naive datetime inside a tuple
    assert expected == codec.dumps(value)
    assert value == codec.loads(codec.dumps(value), what="value")
    large = codec.dumps({"blob": b"x" * (2 << 20), "when": (datetime(2026, 1, 2, tzinfo=UTC),)})
    assert 2 << 20 < len(large)
    assert expected == codec.dumps(value)
    assert all(len(p.bytes()) == 0 for p in codec._packers.stack)


def test_one_codec_encodes_in_several_threads_at_once() -> None:
    import concurrent.futures

    codec = Codec()
    values = [{"i": i, "at": datetime(2026, 1, 1 + i % 28, tzinfo=UTC), "t": (i, str(i))}
              for i in range(200)]
    expected = [codec.dumps(v) for v in values]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            assert expected == list(pool.map(codec.dumps, values))
