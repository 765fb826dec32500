"""Pure parts: status severity, value conversion, timestamps, request sizing."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.opcua.decode import convert_value, datetime_ns, quality_of
from drivers.opcua.plan import batch_size, chunks
from gateway.core.point import Quality


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (0x00000000, Quality.GOOD),
        (0x00A20000, Quality.GOOD),  # GoodClamped-like: severity bits 00
        (0x40900000, Quality.UNCERTAIN),  # UncertainLastUsableValue
        (0x80340000, Quality.BAD),  # BadNodeIdUnknown
        (0x808B0000, Quality.BAD),  # BadSensorFailure
        (0xC0000000, Quality.BAD),  # reserved severity 11 counts as bad
    ],
)
def test_status_severity(code: int, quality: Quality) -> None:
    assert quality_of(code) is quality


class _Text:
    Text = "hello"


@pytest.mark.parametrize(
    ("raw", "index", "as_json", "expected"),
    [
        (True, -1, False, (True, None)),
        (42, -1, False, (42, None)),
        (1.5, -1, False, (1.5, None)),
        ("x", -1, False, ("x", None)),
        (b"\x01\xff", -1, False, ("01ff", None)),
        (uuid.UUID(int=1), -1, False, (str(uuid.UUID(int=1)), None)),
        (dt.datetime(1970, 1, 1, 0, 0, 1), -1, False, (1_000_000_000, None)),
        (_Text(), -1, False, ("hello", None)),
        (None, -1, False, (None, "no_value")),
        ([1.0, 2.0, 3.0], 2, False, (3.0, None)),
        ([1.0, 2.0, 3.0], 3, False, (None, "array_index_out_of_range")),
        ([1.0, 2.0], -1, True, ("[1.0,2.0]", None)),
        ([1.0, 2.0], -1, False, (None, "array_value_needs_array_index")),
        (5, 0, False, (None, "not_an_array")),
        (object(), -1, False, (None, "unsupported_type_object")),
    ],
)
def test_convert_value(raw: Any, index: int, as_json: bool, expected: tuple[Any, Any]) -> None:
    assert convert_value(raw, index, as_json) == expected


def test_bool_stays_bool_not_int() -> None:
    value, _ = convert_value(True, -1, False)
    assert value is True


@given(st.datetimes(min_value=dt.datetime(1601, 1, 2), max_value=dt.datetime(9999, 1, 1)))
def test_aware_and_naive_utc_give_the_same_ns(d: dt.datetime) -> None:
    assert datetime_ns(d) == datetime_ns(d.replace(tzinfo=dt.UTC))
    assert datetime_ns(d) // 1000 == (d - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("server", "cap", "size"), [(None, 1000, 1000), (0, 1000, 1000), (200, 1000, 200), (5000, 1000, 1000)]
)
def test_batch_size(server: int | None, cap: int, size: int) -> None:
    assert batch_size(server, cap) == size


@given(st.lists(st.integers(), max_size=50), st.integers(min_value=1, max_value=60))
def test_chunks_cover_everything_in_order_and_respect_the_size(items: list[int], size: int) -> None:
    parts = chunks(items, size)
    assert [x for p in parts for x in p] == items
    assert all(1 <= len(p) <= size for p in parts)


def test_expired_and_future_certificates_are_named(tmp_path: Path) -> None:
    from drivers.opcua.certs import create_certificate, validity_problem

    create_certificate(tmp_path / "old.der", tmp_path / "old.pem", application_uri="urn:x", days=-2, key_size=1024)
    assert (problem := validity_problem((tmp_path / "old.der").read_bytes())) and problem.startswith("expired on")
    create_certificate(tmp_path / "ok.der", tmp_path / "ok.pem", application_uri="urn:x", days=30, key_size=1024)
    der = (tmp_path / "ok.der").read_bytes()
    assert validity_problem(der) is None
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert (problem := validity_problem(der, past)) and problem.startswith("not valid before")
