"""Information objects -> samples: quality flags, time tags (zones, invalid), type checks, routing."""

from __future__ import annotations

import math

import pytest

from drivers.iec104.codec import FLAG_BL, FLAG_CA, FLAG_CY, FLAG_IV, FLAG_NT, FLAG_OV, FLAG_SB, Asdu, Cp56, TypeId
from drivers.iec104.config import Iec104Device
from drivers.iec104.decode import Router, quality_of
from gateway.core.point import Quality

NOW = 1_800_000_000_000_000_000


def device(**kw: object) -> Iec104Device:
    return Iec104Device.model_validate({
        "type": "iec104", "name": "sub", "host": "127.0.0.1", **kw,
        "points": [
            {"name": "u", "ioa": 16385, "type_id": "M_ME_NC_1"},
            {"name": "brk", "ioa": 1, "type_id": "M_DP_NA_1"},
            {"name": "e", "ioa": 25601, "type_id": "M_IT_TB_1"},
            {"name": "other_ca", "ca": 2, "ioa": 16385, "type_id": "M_ME_NB_1"},
        ],
    })


@pytest.mark.parametrize(("tid", "value", "flags", "want"), [
    (TypeId.M_ME_NC_1, 1.0, 0, (Quality.GOOD, None)),
    (TypeId.M_ME_NC_1, 1.0, FLAG_IV | FLAG_NT, (Quality.BAD, "invalid")),
    (TypeId.M_ME_NC_1, 1.0, FLAG_NT, (Quality.UNCERTAIN, "not_topical")),
    (TypeId.M_ME_NC_1, 1.0, FLAG_SB | FLAG_NT, (Quality.UNCERTAIN, "substituted")),
    (TypeId.M_ME_NC_1, 1.0, FLAG_BL | FLAG_SB, (Quality.UNCERTAIN, "blocked")),
    (TypeId.M_ME_NB_1, 1, FLAG_OV, (Quality.UNCERTAIN, "overflow")),
    (TypeId.M_IT_NA_1, 1, FLAG_CY, (Quality.UNCERTAIN, "counter_carry")),
    (TypeId.M_IT_NA_1, 1, FLAG_CA, (Quality.UNCERTAIN, "counter_adjusted")),
    (TypeId.M_DP_NA_1, 0, 0, (Quality.UNCERTAIN, "intermediate")),
    (TypeId.M_DP_NA_1, 3, 0, (Quality.BAD, "indeterminate")),
    (TypeId.M_DP_NA_1, 2, 0, (Quality.GOOD, None)),
    (TypeId.M_SP_NA_1, True, FLAG_IV, (Quality.BAD, "invalid")),
])
def test_quality_mapping(tid: int, value: object, flags: int, want: tuple[Quality, str | None]) -> None:
    assert quality_of(tid, value, flags) == want


def test_routing_by_ca_and_ioa() -> None:
    r = Router(device(), 10)
    out = r.samples(Asdu(TypeId.M_ME_NB_1, 3, 2, ((16385, 42, 0, None), (99, 1, 0, None))), NOW)
    assert out == [(13, NOW, 42, Quality.GOOD, None)]
    assert r.counters["unconfigured"] == 1


def test_time_tag_is_source_time_and_either_twin_is_accepted() -> None:
    r = Router(device(time_zone="Asia/Shanghai"), 0)
    tag = Cp56(1500, 0, 8, 1, 7, 26)
    (s,) = r.samples(Asdu(TypeId.M_ME_TF_1, 3, 1, ((16385, 10.5, 0, tag),)), NOW)
    assert s == (0, tag.to_ns() - 8 * 3600 * 10**9, 10.5, Quality.GOOD, None)
    (s,) = r.samples(Asdu(TypeId.M_IT_NA_1, 37, 1, ((25601, 7, 0, None),)), NOW)  # plain twin of M_IT_TB_1
    assert s == (2, NOW, 7, Quality.GOOD, None)


@pytest.mark.parametrize("tag", [Cp56(0, 0, 0, 1, 1, 26, invalid=True), Cp56(0, 0, 0, 31, 2, 26)])
def test_invalid_time_tag_uses_receive_time_and_says_so(tag: Cp56) -> None:
    r = Router(device(), 0)
    (s,) = r.samples(Asdu(TypeId.M_ME_TF_1, 3, 1, ((16385, 1.0, 0, tag),)), NOW)
    assert s == (0, NOW, 1.0, Quality.UNCERTAIN, "time_invalid")
    assert r.counters["time_invalid"] == 1


def test_wrong_type_is_bad_not_a_number_of_the_wrong_kind() -> None:
    r = Router(device(), 0)
    (s,) = r.samples(Asdu(TypeId.M_SP_NA_1, 3, 1, ((16385, True, 0, None),)), NOW)
    assert s == (0, NOW, None, Quality.BAD, "type_mismatch")


@pytest.mark.parametrize("v", [math.nan, math.inf, -math.inf])
def test_non_finite_float_spoils_only_itself(v: float) -> None:
    r = Router(device(), 0)
    out = r.samples(Asdu(TypeId.M_ME_NC_1, 3, 1, ((16385, v, 0, None),)), NOW)
    assert out == [(0, NOW, None, Quality.BAD, "not_finite")]


def test_bad_value_is_none() -> None:
    r = Router(device(), 0)
    (s,) = r.samples(Asdu(TypeId.M_DP_NA_1, 20, 1, ((1, 3, 0, None),)), NOW)
    assert s == (1, NOW, None, Quality.BAD, "indeterminate")
