"""Alarm events on the wire and in line protocol; garbage on the alarm topic is refused, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.alarms import AlarmPublisher
from gateway.buffer import SqliteBuffer
from gateway.catalog import build_catalog
from gateway.codec import decode_alarm, encode_alarm
from gateway.config import parse
from gateway.core.errors import CodecError
from gateway.core.lineproto import LineError, alarm_line
from pipelines.alarms import AlarmEvent, Level

CFG = {
    "gateway": {"id": "gw1", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288"},
    "devices": [{"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "asset": "face T1,1201",
                 "points": [{"name": "ch4", "address": 2, "class": "ch4", "data_grade": "important"},
                            {"name": "fan", "address": 3, "class": "switch", "alarm": {"state": False},
                             "data_grade": "core"}]}],
    "uplink": {"host": "127.0.0.1", "port": 1883},
    "data_policy": {"core": "keep_on_site"},
}


def test_round_trip_and_line_protocol() -> None:
    cat = build_catalog(parse(CFG))
    ev = AlarmEvent(0, 1_764_200_000_000_000_000, Level.POWER_OFF, Level.HIGH, 1.6, 1.5)
    doc = decode_alarm(encode_alarm(cat, ev))
    assert (doc["code"], doc["device_code"], doc["level"], doc["previous"], doc["active"]) == (
        "88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4", "88.608.5288/DEV.baotou-mine-01.gas-sub-01",
        "power_off", "high", True)
    line = alarm_line(doc, "alarm", "baotou-mine-01", "gw1").decode()
    assert line == (
        "alarm,asset=face\\ T1\\,1201,class=ch4,code=88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4,"
        "data_category=condition,data_domain=production,data_grade=important,device=gas-sub-01,"
        "device_code=88.608.5288/DEV.baotou-mine-01.gas-sub-01,gateway=gw1,level=power_off,point=gas-sub-01.ch4,"
        "site=baotou-mine-01,unit=%CH4 "
        'previous="high",active=true,value=1.6,threshold=1.5 1764200000000000000'
    )
    switch = decode_alarm(encode_alarm(cat, AlarmEvent(1, 5, Level.STATE, Level.NORMAL, False, False)))
    switch_line = alarm_line(switch, "alarm", "baotou-mine-01", "gw1").decode()
    assert switch_line.endswith('previous="normal",active=true,value=0.0,threshold=0.0 5')


def test_kept_on_site_alarms_are_not_queued(tmp_path: Path) -> None:
    cfg = parse(CFG)
    assert cfg.uplink is not None
    pub = AlarmPublisher(cfg.uplink, build_catalog(cfg), SqliteBuffer(tmp_path / "a-alarms.db"),
                         forwarded=frozenset({0}))
    pub.submit([AlarmEvent(0, 1, Level.HIGH, Level.NORMAL, 1.2, 1.0), AlarmEvent(1, 1, Level.STATE, Level.NORMAL,
                                                                                  False, False)])
    assert pub.pending == 1 and pub.stats.kept_on_site == 1
    assert pub.topic == "edgegw/baotou-mine-01/gw1/alarm"
    assert pub.client_id == "edgegw-gw1-alarm" and not pub.uplink.birth
    pub.buffer.close()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x93\x01\x02", "not JSON"),
        (b"[1,2]", "not an alarm event"),
        (json.dumps({"kind": "alarm", "v": 2}).encode(), "unsupported alarm format version 2"),
        (json.dumps({"kind": "alarm", "v": 1}).encode(), "missing or not a string"),
    ],
)
def test_garbage_is_a_codec_error(payload: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        decode_alarm(payload)


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_codec_error(payload: bytes) -> None:
    try:
        doc = decode_alarm(payload)
    except CodecError:
        return
    try:  # whatever decodes is written, or refused with a reason (then dead-lettered): never another error
        line = alarm_line(doc, "alarm", str(doc["site"]), str(doc["gw"]))
    except LineError as err:
        assert str(err)
        return
    assert line.count(b"\n") == 0
