"""The benches' rig measures what the gateway ships: scaled values, the default uplink encoding."""

from __future__ import annotations

import time

from gateway import codec
from gateway.app import uplink_encoder
from gateway.bench import (
    SyntheticSource,
    _prebuilt,
    _uplink,
    encoding,
    native_build,
    source_times,
    synthetic_catalog,
)
from gateway.codec import Encoder, decode_columns
from gateway.config import UplinkConfig
from gateway.core.point import now_ns
from pipelines.pipeline import Pipeline

__all__: list[str] = []


def test_synthetic_points_are_scaled_by_the_stages() -> None:
    catalog = synthetic_catalog(8)
    batch, _ = Pipeline(catalog.specs)(SyntheticSource(8).poll(), now_ns(), time.monotonic_ns())
    raw = SyntheticSource(8).poll()
    for (i, _, v, _, _), (_, _, r, _, _) in zip(batch, raw, strict=True):
        assert type(r) is int
        expected = (r / 10, r / 10, (r - 4000) / 100, r)[i % 4]
        assert v == expected and type(v) is type(expected), (i, r, v)
    assert {type(s[2]) for s in batch} == {float, int}


def test_the_rig_encodes_as_the_gateways_default_uplink() -> None:
    default = UplinkConfig()
    enc = uplink_encoder(synthetic_catalog(4), _uplink())
    assert (enc.version, enc.compression) == (default.wire_format, default.codec_compression)
    assert encoding() == {"wire_format": enc.version, "compression": enc.compression, "payload_format": "msgpack",
                          "native_build": native_build()}
    assert native_build() == (codec._KERNEL is not None)  # the JSON says which code the figures are of
    assert encoding()["wire_format"] == 2


def test_the_floors_payload_is_the_pipelines_output_in_the_default_encoding() -> None:
    payload = _prebuilt(100, 250)
    cols = decode_columns(payload)  # the in-process catalog: the encoder remembered it
    assert len(cols.idx) == 250
    assert float in {type(v) for v in cols.val}  # scaled, as the pipeline run sends
    assert source_times(payload) == cols.ts


def test_source_times_reads_both_wire_formats() -> None:
    catalog = synthetic_catalog(10)
    samples = [(i, 1_700_000_000_000_000_000 + 7 * i, i / 10, 0, None) for i in range(10)]
    ts = [s[1] for s in samples]
    for enc in (Encoder(catalog), Encoder(catalog, compression="zlib"), Encoder(catalog, version=2),
                Encoder(catalog, version=2, compression="zstd")):
        assert source_times(enc.encode(samples, 1, now_ns())) == ts  # type: ignore[arg-type]
