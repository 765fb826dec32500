"""The ingest's fast path reuses validated catalogs and series texts; it must never reuse a stale one.

A gateway sends the same catalog rows with every batch, so the ingest validates a catalog once and
builds each point's series text once; a batch whose rows differ in anything (a unit, a tag, a code)
must be validated and written with what it carries now.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from gateway.codec import CatalogCache, decode, decode_columns, points_payload
from gateway.config import IngestSection
from gateway.core.errors import CodecError
from gateway.core.point import Point
from gateway.deadletter import DeadLetterStore
from gateway.ingest import IngestCore

TOPIC = "edgegw/s/g/data"


def _payload(unit: str = "ppm", asset: str = "a1", value: object = 1.5, ts: int = 1_764_000_000_000_000_000) -> bytes:
    return points_payload("g", "s", [Point("d.p", "88.1/x", ts, value, unit=unit, device="d",  # type: ignore[arg-type]
                                           tags=(("asset", asset),))])


def test_the_same_catalog_is_validated_once_and_a_changed_one_again() -> None:
    cache = CatalogCache()
    a = decode_columns(_payload(), cache)
    b = decode_columns(_payload(ts=2), cache)
    assert a.cat is b.cat  # reused
    c = decode_columns(_payload(asset="a2"), cache)
    assert c.cat is not a.cat and c.cat[0][6] == {"asset": "a2"}
    # same shape and indices, a row that is no longer valid: refused, not served from the cache
    doc = json.loads(_payload())
    doc["cat"][0][7] = {"asset": 5}
    with pytest.raises(CodecError, match="tags must map strings"):
        decode_columns(json.dumps(doc).encode(), cache)
    assert decode(_payload()).points == decode_columns(_payload(), cache).points()


def test_rows_carry_what_their_batch_says_not_what_an_earlier_batch_said() -> None:
    d = Path(tempfile.mkdtemp())
    core = IngestCore(IngestSection.model_validate({"influx": {"api": "file", "path": str(d / "out.lp")}}),
                      dead_letters=DeadLetterStore(d / "dl.db"))
    first = core.prepare(TOPIC, _payload(unit="ppm"))
    again = core.prepare(TOPIC, _payload(unit="ppm", ts=7))
    changed = core.prepare(TOPIC, _payload(unit="%LEL"))
    bad = core.prepare(TOPIC, _payload(asset="ends\\"))  # InfluxDB cannot store it: refused, never cached as good
    assert b"unit=ppm" in first.rows[0] and b"unit=ppm" in again.rows[0] and again.rows[0].endswith(b" 7")
    assert b"unit=%LEL" in changed.rows[0] and b"ppm" not in changed.rows[0]
    assert not bad.rows and "backslash" in bad.dead[0].reason
    odd = core.prepare(TOPIC, _payload(value=10**30))  # outside the inline path, still exact
    assert odd.rows[0].split(b" ")[1].startswith(b"value=1e+30,")
    core.close()
