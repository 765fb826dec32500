"""Per-point cost of the edge pipeline, stage by stage: ``python scripts/pipeline_stages.py [--json FILE]``.

Micro-benchmark of what ``edgegw bench pipeline`` runs on the event-loop thread for each point, on its
own data (gateway.bench: ``synthetic_catalog``, ``SyntheticSource``; polls of ``--points-per-poll``):
the source, each stage of the pipeline, the whole pipeline, and the wire encoder over batches of
``--batch-points`` (v1 as the bench used before, v2 uncompressed, v2 zstd = the gateway's default),
plus the ingest's decoder of the default encoding for comparison.  Each figure is nanoseconds per
point, the median of ``--reps`` repetitions of at least ``--min-s`` seconds each.  Figures only:
nothing is asserted.  The load average is printed with them (the machine may be shared).

Run it alone (``flock /tmp/edgegw-bench.lock ...`` where benches share a machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from gateway.app import tune_gc
from gateway.bench import SyntheticSource, native_build, synthetic_catalog
from gateway.codec import Encoder, decode_columns
from gateway.core.point import SampleBatch, now_ns
from pipelines.pipeline import Pipeline


def _measure(fn: Callable[[], object], points_per_call: int, reps: int, min_s: float) -> float:
    """Median over ``reps`` of ns per point, each repetition calling ``fn`` for at least ``min_s``."""
    fn()  # warm-up
    figures = []
    for _ in range(reps):
        calls = 0
        t0 = time.perf_counter_ns()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter_ns() - t0
            if elapsed >= min_s * 1e9:
                break
        figures.append(elapsed / (calls * points_per_call))
    return statistics.median(figures)


def run(points_per_poll: int, batch_points: int, reps: int, min_s: float) -> dict[str, Any]:
    catalog = synthetic_catalog(points_per_poll)
    src = SyntheticSource(points_per_poll)
    pipe = Pipeline(catalog.specs)
    polls = [src.poll() for _ in range(8)]
    runs = [pipe.normalise.run(p) for p in polls]  # (samples, earliest, latest time): the clock check's input
    normalised = [r[0] for r in runs]
    wall, mono = now_ns(), time.monotonic_ns()
    staged = [pipe(p, wall, mono)[0] for p in polls]
    batch: SampleBatch = []
    k = 0
    while len(batch) < batch_points:  # the encoder's input: consecutive staged polls, as the batcher gathers them
        batch.extend(staged[k % len(staged)])
        k += 1
    batch = batch[:batch_points]
    kinds = sorted({type(s[2]).__name__ for s in batch})

    it = iter(range(1 << 62))

    def cycle(data: list[SampleBatch]) -> Callable[[], SampleBatch]:
        return lambda: data[next(it) % len(data)]

    poll_of, norm_of = cycle(polls), cycle(normalised)

    def clock() -> SampleBatch:  # as the pipeline calls it: with the times' range the normalise stage noted
        out, earliest, latest = runs[next(it) % len(runs)]
        return pipe.clock(out, now_ns(), time.monotonic_ns(), earliest, latest)

    figures: dict[str, float] = {}
    n = points_per_poll

    def stage(name: str, fn: Callable[[], object], per_call: int = n) -> None:
        figures[name] = round(_measure(fn, per_call, reps, min_s), 1)
        print(f"{name:>26}: {figures[name]:>8.1f} ns/point", flush=True)

    stage("source.poll", src.poll)
    stage("normalise", lambda: pipe.normalise(poll_of()))
    stage("clock", clock)
    stage("clock (times scanned)", lambda: pipe.clock(norm_of(), now_ns(), time.monotonic_ns()))
    stage("plausibility", lambda: pipe.plausibility(norm_of()))
    stage("alarms", lambda: pipe.alarms(norm_of()))
    stage("deadband", lambda: pipe.deadband(norm_of()))
    stage("pipeline (all stages)", lambda: pipe(poll_of(), now_ns(), time.monotonic_ns()))
    encoders = {
        "encode v1 (msgpack, none)": Encoder(catalog),
        "encode v2 none": Encoder(catalog, version=2),
        "encode v2 zstd (default)": Encoder(catalog, version=2, compression="zstd"),
    }
    sizes = {}
    for name, enc in encoders.items():
        stage(name, lambda enc=enc: enc.encode(batch, 1, wall), batch_points)
        sizes[name] = round(len(enc.encode(batch, 1, wall)) / batch_points, 2)
    payload = encoders["encode v2 zstd (default)"].encode(batch, 1, wall)
    stage("decode v2 zstd (ingest)", lambda: decode_columns(payload), batch_points)
    figures["source+pipeline+encode v2 zstd"] = round(
        figures["source.poll"] + figures["pipeline (all stages)"] + figures["encode v2 zstd (default)"], 1)
    print(f"{'source+pipeline+v2 zstd':>26}: {figures['source+pipeline+encode v2 zstd']:>8.1f} ns/point")
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"bytes per point: {sizes}; value types after the stages: {kinds}; native build: {native_build()}; "
          f"load average {load[0]} {load[1]} {load[2]} on {os.cpu_count()} CPUs")
    return {"bench": "pipeline_stages", "ns_per_point": figures, "bytes_per_point": sizes,
            "params": {"points_per_poll": points_per_poll, "batch_points": batch_points, "reps": reps,
                       "native_build": native_build(),
                       "min_s": min_s, "value_types": kinds, "python": sys.version.split()[0]},
            "load_avg": load, "cpus": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points-per-poll", type=int, default=1000)
    ap.add_argument("--batch-points", type=int, default=5000, help="points per encoded batch (the bench's)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions; the median is printed")
    ap.add_argument("--min-s", type=float, default=0.3, help="seconds per repetition, at least")
    ap.add_argument("--json", default=None, help="also write the figures to FILE")
    args = ap.parse_args()
    tune_gc()  # as the gateway and the benches do
    result = run(args.points_per_poll, args.batch_points, args.reps, args.min_s)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
