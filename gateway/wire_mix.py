"""A realistic, deterministic stream of deadband-filtered samples for wire-format measurements.

`edgegw bench wire` and the zstd dictionary's training (``scripts/train_wire_dict.py``) use it.
The plant: ``devices`` PLCs of 100 points each, polled once a second (the devices' polls spread
over the second, all points of one poll share its source time).  Per device:

- 50 **steady analogs**: int16 registers on a random walk, scaled by 0.1 or 0.01 (as the
  normaliser makes them: ``raw / 10``), deadband 0.1 % of the range;
- 25 **noisy floats**: IEEE float32 sensors (two registers) with noise of 0.5 % of the range
  around a drifting set point, deadband 0.2 % (most polls pass it);
- 20 **booleans** (status bits) that change about once every 500 polls;
- 3 **integer counters** that step by 0-5 each poll (sent on change);
- 2 **strings** (an operating state of four words) that change about once every 200 polls.

Deadband: a point is sent when it moved by at least its deadband since the last sent value (any
change for booleans, counters and strings); one sample in 5,000 is bad (``timeout``, no value).
Codes are ~45 characters, as minted identifiers are, with two tags per point.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from gateway.catalog import Catalog, PointInfo
from gateway.core.point import Quality, Sample, SampleBatch

__all__ = ["MIX", "WireMix", "mix_catalog"]

SITE, GW = "baotou-mine-01", "gw-01"
MIX = ("50 % steady analogs (int16 registers x 0.1 / 0.01, deadband 0.1 % of range), 25 % noisy float32 sensors "
       "(deadband 0.2 %), 20 % booleans, 3 % integer counters, 2 % strings (operating state); "
       "deadband-filtered, 1 s polls, 1 in 5,000 samples bad")
_STATES = ("RUNNING", "STOPPED", "STARTING", "FAULT")


def _kind(j: int) -> str:
    if j < 50:
        return "analog"
    if j < 75:
        return "noisy"
    if j < 95:
        return "bool"
    if j < 98:
        return "counter"
    return "string"


def mix_catalog(devices: int = 20) -> Catalog:
    pts = []
    units = {"analog": "degC", "noisy": "kPa", "bool": "", "counter": "", "string": ""}
    for d in range(devices):
        dev = f"plc{d:03d}"
        for j in range(100):
            i = d * 100 + j
            kind = _kind(j)
            name = f"{kind}{j:02d}"
            pts.append(PointInfo(
                i, f"{dev}.{name}", f"88.608.5288/DEV.{SITE}.{dev}.{name}", dev, f"88.608.5288/DEV.{SITE}.{dev}",
                units[kind], 0.1, 0.0, None, None, "general", (("asset", f"line{d // 5}"), ("site", SITE)),
            ))
    return Catalog(GW, SITE, tuple(pts), {})


class WireMix:
    """The sample stream of :func:`mix_catalog`'s plant (deterministic from ``seed``)."""

    def __init__(self, devices: int = 20, seed: int = 1) -> None:
        self.devices = devices
        self.rng = random.Random(seed)
        rng = self.rng
        self.state: list[float | int | bool | str] = []
        self.sent: list[float | int | bool | str | None] = []
        self.aux: list[float] = []  # set point (noisy) or scale (analog)
        for _d in range(devices):
            for j in range(100):
                kind = _kind(j)
                if kind == "analog":
                    self.state.append(rng.randrange(1000, 30000))
                    self.aux.append(10.0 if j % 2 else 100.0)
                elif kind == "noisy":
                    self.state.append(0.0)
                    self.aux.append(rng.uniform(50, 500))
                elif kind == "bool":
                    self.state.append(rng.random() < 0.5)
                    self.aux.append(0.0)
                elif kind == "counter":
                    self.state.append(rng.randrange(0, 1 << 30))
                    self.aux.append(0.0)
                else:
                    self.state.append(rng.choice(_STATES))
                    self.aux.append(0.0)
                self.sent.append(None)
        self.t0 = 1_764_000_000_000_000_000

    def samples(self) -> Iterator[Sample]:
        """Endless: the changed samples of each poll, polls in time order."""
        rng = self.rng
        second = 0
        good, bad = Quality.GOOD, Quality.BAD
        while True:
            for d in range(self.devices):
                ts = (self.t0 + second * 1_000_000_000 + d * (1_000_000_000 // self.devices)
                      + rng.randrange(0, 5_000_000))
                for j in range(100):
                    i = d * 100 + j
                    kind = _kind(j)
                    value: float | int | bool | str
                    if kind == "analog":
                        raw = int(self.state[i]) + rng.randint(-40, 40)
                        raw = max(0, min(32767, raw))
                        self.state[i] = raw
                        value = raw / self.aux[i]
                        band = 32767 / self.aux[i] * 0.001
                    elif kind == "noisy":
                        self.aux[i] += rng.uniform(-0.05, 0.05)
                        value = struct.unpack("<f", struct.pack("<f", self.aux[i] + rng.gauss(0, 2.5)))[0]
                        band = 0.002 * 500
                    elif kind == "bool":
                        if rng.random() < 0.002:
                            self.state[i] = not self.state[i]
                        value = bool(self.state[i])
                        band = 0
                    elif kind == "counter":
                        self.state[i] = int(self.state[i]) + rng.randrange(0, 6)
                        value = int(self.state[i])
                        band = 0
                    else:
                        if rng.random() < 0.005:
                            self.state[i] = rng.choice(_STATES)
                        value = str(self.state[i])
                        band = 0
                    if rng.random() < 0.0002:
                        self.sent[i] = None
                        yield (i, ts, None, bad, "timeout")
                        continue
                    last = self.sent[i]
                    if last is not None and (
                        (band and abs(float(value) - float(last)) < band) or (not band and value == last)
                    ):
                        continue
                    self.sent[i] = value
                    yield (i, ts, value, good, None)
            second += 1

    def batches(self, batch_points: int, count: int) -> list[SampleBatch]:
        """``count`` consecutive batches of ``batch_points`` samples (after one warm-up poll)."""
        it = self.samples()
        for _ in range(100 * self.devices):  # the first poll sends everything: not steady state
            next(it)
        return [[next(it) for _ in range(batch_points)] for _ in range(count)]
