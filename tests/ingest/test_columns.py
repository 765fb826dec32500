"""The ingest's fast path reuses validated catalogs and series texts; it must never reuse a stale one.

A gateway sends the same catalog rows with every batch, so the ingest validates a catalog once and
builds each point's series text once; a batch whose rows differ in anything (a unit, a tag, a code)
must be validated and written with what it carries now.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

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


@pytest.mark.integration
async def test_the_whole_message_path_and_the_per_sample_path_store_the_same_values(influx1: Any) -> None:
    """A message of plain numbers takes the whole-message path (ints written as their digits); the same
    values with a reason take the per-sample path (``float(v)``): real InfluxDB 1.x stores equal floats
    for both, in one float field, ints up to the fast path's bound included."""
    d = Path(tempfile.mkdtemp())
    db = "fastpath"
    influx1.create_database(db)
    core = IngestCore(IngestSection.model_validate({"influx": {"api": "v1", "url": influx1.url, "database": db}}),
                      dead_letters=DeadLetterStore(d / "dl.db"))
    values: list[Any] = [7, -3, 0, 2**53, 2**53 + 1, -(2**62), 1.25, 1e-300]
    base = 1_764_000_000_000_000_000

    def message(site: str, reason: str | None) -> bytes:
        pts = [Point(f"d.p{k}", f"88.1/x{k}", base + k, v, device="d", reason=reason) for k, v in enumerate(values)]
        return points_payload("g", site, pts)

    fast = core.prepare("edgegw/fast/g/data", message("fast", None))
    slow = core.prepare("edgegw/slow/g/data", message("slow", "calibrating"))
    assert b" value=7," in fast.rows[0] and b" value=7.0," in slow.rows[0]  # the two paths were taken
    await core.settle([fast, slow])
    core.close()
    res = influx1.query('SELECT "value", "site", "point" FROM "telemetry"', db=db)
    rows = res["results"][0]["series"][0]["values"]
    stored = {(r[2], r[3]): r[1] for r in rows}  # (InfluxDB writes a large float as JSON digits)
    for k, v in enumerate(values):
        assert float(stored[("fast", f"d.p{k}")]) == float(stored[("slow", f"d.p{k}")]) == float(v), (k, v)
    kinds = influx1.query('SHOW FIELD KEYS FROM "telemetry"', db=db)["results"][0]["series"][0]["values"]
    assert ["value", "float"] in kinds
