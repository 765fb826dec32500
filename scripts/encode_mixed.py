"""The v2 encoder on mixed polls, native kernel against the pure-Python path: ``python scripts/encode_mixed.py``.

Micro-benchmark (#17 item 3): a full poll of :mod:`gateway.wire_mix`'s plant with no deadband (per 100
points: 50 scaled analogs, 25 float32 sensors, 20 booleans, 3 counters, 2 strings), the same poll
numeric only (booleans and strings replaced by ints: the batch the kernel always took) with one bad
gap, and without it.  Each batch is encoded by :class:`gateway.codec.Encoder` (v2 uncompressed and v2
zstd with the dictionary, the default) through the compiled kernel and through the pure-Python
columns (``codec._KERNEL = None``: what a batch with a bool, a gap or a string got before the kernel
took them).  Figures: nanoseconds per point, the median of ``--reps`` repetitions of at least
``--min-s`` seconds each, and the load average.  Nothing is asserted.

Run it alone (``flock /tmp/edgegw-bench.lock ...`` where benches share a machine).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import gateway.codec as codec
from gateway.codec import Encoder
from gateway.core.point import Quality, SampleBatch
from gateway.wire_mix import mix_catalog

T0 = 1_764_000_000_000_000_000


def poll(n: int, rng: random.Random, numeric: bool = False, gap: bool = False) -> SampleBatch:
    out: SampleBatch = []
    for i in range(n):
        j = i % 100
        v: float | int | bool | str
        if j < 50:
            v = rng.randrange(1000, 30000) / 10
        elif j < 75:
            v = struct.unpack("<f", struct.pack("<f", rng.uniform(50, 500)))[0]
        elif j < 95:
            v = rng.randrange(0, 1 << 20) if numeric else rng.random() < 0.5
        elif j < 98:
            v = rng.randrange(0, 1 << 30)
        else:
            v = rng.randrange(0, 1 << 20) if numeric else rng.choice(("RUNNING", "STOPPED"))
        out.append((i, T0 + i * 1000, v, Quality.GOOD, None))
    if gap:
        k = n // 2
        out[k] = (out[k][0], out[k][1], None, Quality.BAD, "timeout")
    return out


def ns_per_point(enc: Encoder, batch: SampleBatch, reps: int, min_s: float) -> float:
    enc.encode(batch, 1, 5)  # warm-up
    figures = []
    for _ in range(reps):
        calls = 0
        t0 = time.perf_counter()
        while True:
            enc.encode(batch, 1, 5)
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= min_s:
                break
        figures.append(dt / calls / len(batch) * 1e9)
    return statistics.median(figures)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-s", type=float, default=0.3)
    args = ap.parse_args()
    kernel = codec._KERNEL
    if kernel is None:
        print("no native build here (or EDGEGW_PURE_PYTHON set): nothing to compare")
        return
    cat = mix_catalog()
    encoders = {"v2 none": Encoder(cat, version=2, compression="none"),
                "v2 zstd+dict": Encoder(cat, version=2, compression="zstd", zstd_dict=True)}
    print(f"{'batch':>6} {'poll':<26} {'codec':<13} {'kernel ns/pt':>13} {'pure ns/pt':>11}")
    try:
        for size in (100, 1000):
            rng = random.Random(1)
            polls = {"mixed (20% bool, 2% str)": poll(size, rng), "numeric + 1 gap": poll(size, rng, True, True),
                     "numeric": poll(size, rng, True)}
            for name, batch in polls.items():
                for cname, enc in encoders.items():
                    codec._KERNEL = kernel
                    k = ns_per_point(enc, batch, args.reps, args.min_s)
                    codec._KERNEL = None
                    p = ns_per_point(enc, batch, args.reps, args.min_s)
                    print(f"{size:>6} {name:<26} {cname:<13} {k:>13.1f} {p:>11.1f}")
    finally:
        codec._KERNEL = kernel
    print("medians of {} repetitions; load average {:.2f} {:.2f} {:.2f} on {} CPUs".format(
        args.reps, *os.getloadavg(), os.cpu_count()))


if __name__ == "__main__":
    main()
