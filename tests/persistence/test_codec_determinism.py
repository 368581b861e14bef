"""The codec writes the same bytes for the same value in every process: sets sorted."""

from __future__ import annotations

import enum
import subprocess
import sys

import attrs

from riverrun.persistence import Codec

_ENCODE = (
    "import sys; from riverrun.persistence import Codec; "
    "sys.stdout.write(Codec().dumps({'s': {f'w{i}' for i in range(40)}}).hex())"
)


def test_a_set_of_strings_encodes_to_the_same_bytes_in_another_process() -> None:
    # string hashes (and so a set's iteration order) differ between processes
    runs = {
        subprocess.run(
            [sys.executable, "-c", _ENCODE],
            check=True,
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": ":".join(sys.path)},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert 1 == len(runs)


def test_sets_that_do_not_sort_still_round_trip() -> None:
    codec = Codec()
    value = {1, "a", (2, 3)}
    assert value == codec.loads(codec.dumps(value), what="v")
    assert frozenset(value) == codec.loads(codec.dumps(frozenset(value)), what="v")


def test_registered_name() -> None:
    @attrs.frozen
    class Point:
        x: int

    class Color(enum.Enum):
        RED = 1

    codec = Codec()
    codec.register_type(Point, name="geo.Point")
    assert "geo.Point" == codec.registered_name(Point)
    assert codec.registered_name(Color) is None
