"""Throughput of the stages on one core: ``python -m pipelines.bench [--points N] [--batches N]``.

Prints points per second for three point mixes (figures, not assertions; see docs/normalisation.md):
``plain`` (scale + range only), ``mine`` (4-20 mA scaling, unit conversion, range, spike, stuck,
alarm thresholds: every check on) and ``mine+deadband`` (the same with a deadband that drops most
samples, the usual production setting).
"""

from __future__ import annotations

import argparse
import random
import time

from gateway.core.point import Quality, SampleBatch
from pipelines.pipeline import Pipeline
from pipelines.spec import AlarmSpec, PointSpec

__all__ = ["run"]

S = 1_000_000_000


def _specs(kind: str, n: int) -> list[PointSpec]:
    if kind == "plain":
        return [PointSpec(scale=0.1, offset=0.0, min=0.0, max=100.0) for _ in range(n)]
    full = PointSpec(
        scale=0.25, offset=-1.0, raw_fault_low=3.6, raw_fault_high=21.0, conv_factor=1.0, conv_offset=0.0,
        min=0.0, max=4.0, spike_delta=0.5, stuck_after_ns=600 * S,
        alarm=AlarmSpec(high=1.0, power_off=1.5, restore=1.0, hysteresis=0.05),
    )
    if kind == "mine+deadband":
        full = PointSpec(**{**{f: getattr(full, f) for f in full.__slots__}, "deadband": 0.05,
                            "max_silence_ns": 300 * S})
    return [full] * n


def _batches(n_points: int, n_batches: int, seed: int = 1) -> list[SampleBatch]:
    """Slowly drifting 4-20 mA readings with noise; one point in 50 makes an excursion past the alarm levels."""
    rng = random.Random(seed)
    level = [4.0 + 4.0 * rng.random() for _ in range(n_points)]
    out: list[SampleBatch] = []
    for b in range(n_batches):
        ts = b * S
        batch: SampleBatch = []
        for i in range(n_points):
            level[i] = min(10.0, max(4.0, level[i] + rng.uniform(-0.02, 0.02)))
            v = level[i] + rng.uniform(-0.01, 0.01)
            if i % 50 == 0 and 100 <= b % 200 < 110:
                v += 5.0  # excursion: about 1.25 % more CH4
            batch.append((i, ts, v, Quality.GOOD, None))
        out.append(batch)
    return out


def run(n_points: int = 1000, n_batches: int = 300) -> dict[str, float]:
    data = _batches(n_points, n_batches)
    figures = {}
    for kind in ("plain", "mine", "mine+deadband"):
        p = Pipeline(_specs(kind, n_points), min_valid_ns=0)  # synthetic timestamps from 0: no clock floor
        t0 = time.perf_counter()
        for i, batch in enumerate(data):
            p(batch, i * S, i * S)
        dt = time.perf_counter() - t0
        figures[kind] = n_points * n_batches / dt
        print(f"{kind:>14}: {figures[kind]:>12,.0f} points/s  ({p.counters.samples_out:,} of "
              f"{p.counters.samples_in:,} forwarded, {p.counters.alarm_events:,} alarm events)")
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=300)
    args = ap.parse_args()
    run(args.points, args.batches)


if __name__ == "__main__":
    main()
