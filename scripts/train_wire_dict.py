"""Train a zstd dictionary for wire format v2 batches: python scripts/train_wire_dict.py OUT.zdict

Trains on uncompressed v2 batches of 10, 100 and 1,000 samples of the benchmark's plant mix
(gateway/wire_mix.py, seed 7; `edgegw bench wire` measures seed 1).  A released dictionary never
changes: save a new one as gateway/wire_dicts/<next number>.zdict and raise codec.ZSTD_DICT.
"""

from __future__ import annotations

import sys

import zstandard

from gateway.codec import WIRE_V2, Encoder
from gateway.wire_mix import WireMix, mix_catalog


def main(out: str, size: int = 8192) -> None:
    enc = Encoder(mix_catalog(), compression="none", version=WIRE_V2)
    samples = []
    for batch_points, count in ((10, 3000), (100, 300), (1000, 30)):
        for k, b in enumerate(WireMix(seed=7).batches(batch_points, count)):
            samples.append(enc.encode(b, 1000 + k, 1_764_000_000_000_000_000 + k))
    d = zstandard.train_dictionary(size, samples, level=3)
    with open(out, "wb") as f:
        f.write(d.as_bytes())
    print(f"{out}: {len(d.as_bytes())} bytes from {len(samples)} batches")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/train_wire_dict.py OUT.zdict")
    main(sys.argv[1])
