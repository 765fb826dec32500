"""``edgegw read``: poll the configured devices once (or continuously) and show every point's value,
unit, quality, reason and identifier code as a table, without a broker or a buffer.

It is the commissioning engineer's view of the truth on the box: the same drivers and the same
normalising and plausibility checks as ``edgegw run``, so a wrong unit id, a non-existent register or
swapped bytes show as the bad quality and reason ``run`` would send.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gateway.catalog import Catalog
from gateway.config import Config
from gateway.core.driver import RunnerKind
from gateway.core.errors import ConfigError, ConfigIssue, DeviceError, ReadError
from gateway.core.point import Quality, SampleBatch, now_ns
from gateway.runner import why_down
from pipelines.pipeline import Pipeline

__all__ = ["Readout", "read_devices"]

_STYLE = {Quality.GOOD: "green", Quality.UNCERTAIN: "yellow", Quality.BAD: "bold red"}


@dataclass
class Readout:
    """The last sample of every point of the selected devices, and each device's state line."""

    catalog: Catalog
    devices: list[str]
    last: dict[int, tuple[Any, Quality, str | None]]
    errors: dict[str, str]

    def health(self, device: str) -> tuple[str, str]:
        """(state, detail) as the gateway's runner would log it."""
        idx = self.catalog.by_device[device]
        if device in self.errors:
            return "down", self.errors[device]
        bad = Counter(r or "bad" for i in idx if (s := self.last.get(i)) and s[1] is Quality.BAD for r in [s[2]])
        missing = sum(i not in self.last for i in idx)
        if bad:
            reason, _ = bad.most_common(1)[0]
            n = sum(bad.values())
            return "degraded", f"{n} of {len(idx)} points bad: {reason}"
        if missing:
            return "degraded", f"{missing} of {len(idx)} points without a value"
        return "up", f"{len(idx)} points good"

    @property
    def all_good(self) -> bool:
        return all(self.health(d)[0] == "up" for d in self.devices)

    def render(self) -> Group:
        cat = self.catalog
        site = f"{cat.site_display_name} ({cat.site})" if cat.site_display_name else cat.site
        gw = f"{cat.gateway_display_name} ({cat.gateway_id})" if cat.gateway_display_name else cat.gateway_id
        table = Table(show_lines=False, header_style="bold", title=f"site {site} · gateway {gw}", title_justify="left")
        for col in ("device", "point", "name", "value", "unit", "quality", "reason", "code"):
            table.add_column(col, overflow="fold", justify="right" if col == "value" else "left")
        for device in self.devices:
            for i in self.catalog.by_device[device]:
                info = self.catalog.points[i]
                s = self.last.get(i)
                value, quality, reason = s if s is not None else (None, Quality.BAD, "no_value")
                style = _STYLE[quality]
                table.add_row(
                    device, info.key.split(".", 1)[1], info.display_name, _format(value), info.unit,
                    Text(quality.label, style=style), Text(reason or "", style=style), info.code,
                )
        lines = []
        for device in self.devices:
            state, detail = self.health(device)
            style = {"up": "green", "degraded": "yellow"}.get(state, "bold red")
            name = self.catalog.device_names.get(device, ("", ""))[0]
            named = f"{device} ({name})" if name else device
            lines.append(Text.assemble(f"Device {named} ", (state, style), f": {detail}"))
        return Group(table, *lines)


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


def select(cfg: Config, names: Sequence[str]) -> list[Any]:
    enabled = [d for d in cfg.devices if d.enabled]
    if not names:
        return enabled
    known = {d.name: d for d in cfg.devices}
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise ConfigError([ConfigIssue("devices", f"no device named {n!r} (the config has: {listed})")
                           for n in unknown])
    return [known[n] for n in names]


async def _poll(driver: Any, streaming: bool, points: range, timeout_s: float) -> SampleBatch:
    if not streaming:
        return cast(SampleBatch, await driver.read())
    out: SampleBatch = []
    seen: set[int] = set()
    async with asyncio.timeout(timeout_s):  # a subscription's first notifications carry every value
        async for batch in driver.stream():
            out += batch
            seen.update(s[0] for s in batch)
            if len(seen) >= len(points):
                break
    return out


async def read_devices(
    cfg: Config, names: Sequence[str] = (), *, watch: bool = False, interval_s: float = 1.0,
    console: Console | None = None, rounds: int | None = None,
) -> Readout:
    """Poll the selected devices (every one of them at once), show the table; with ``watch``, again
    every ``interval_s`` until cancelled (or ``rounds`` polls, for tests)."""
    from gateway.driver_registry import DriverFactory, spec_of

    console = console or Console()
    catalog = cfg.catalog()
    devices = select(cfg, names)
    gw = cfg.gateway
    pipeline = Pipeline(catalog.specs, min_valid_ns=gw.clock_min_valid_ns if gw else 0)
    readout = Readout(catalog, [d.name for d in devices], {}, {})

    def keep(batch: SampleBatch) -> None:
        for i, _ts, value, quality, reason in batch:
            readout.last[i] = (value, Quality(quality), reason)

    pipeline.tap = keep
    factory = DriverFactory()
    drivers = [factory.make(d, catalog.by_device[d.name].start) for d in devices]
    entered: dict[str, Any] = {}

    async def one(dev: Any, driver: Any) -> SampleBatch:
        name = dev.name
        timeout = max(dev.timeout_ms / 1000, 1.0)
        try:
            if name not in entered:
                async with asyncio.timeout(max(timeout, 10.0)):
                    await driver.__aenter__()
                entered[name] = driver
            batch = await _poll(driver, spec_of(dev).runner_kind(dev) is RunnerKind.PUSHED, catalog.by_device[name],
                                max(timeout, 10.0))
        except (DeviceError, TimeoutError) as err:
            reason = err.reason if isinstance(err, ReadError) else "unreachable" if name not in entered else "timeout"
            readout.errors[name] = why_down(name, reason, str(err))
            if name in entered:
                await entered.pop(name).__aexit__(None, None, None)
            return catalog.bad_samples(name, now_ns(), reason)
        readout.errors.pop(name, None)
        return batch

    async def poll_all() -> None:
        batches = await asyncio.gather(*(one(d, drv) for d, drv in zip(devices, drivers, strict=True)))
        pipeline([s for b in batches for s in b], time.time_ns(), time.monotonic_ns())

    try:
        await poll_all()
        if not watch:
            console.print(readout.render())
            return readout
        with Live(readout.render(), console=console, auto_refresh=False) as live:
            n = 1
            while rounds is None or n < rounds:
                await asyncio.sleep(interval_s)
                await poll_all()
                live.update(readout.render(), refresh=True)
                n += 1
        return readout
    finally:
        for driver in entered.values():
            await driver.__aexit__(None, None, None)
