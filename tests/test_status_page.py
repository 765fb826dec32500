"""The status page in a real browser: Debian's ``chromium``, headless, against a running gateway.

Chromium loads the page, runs its JavaScript (which polls ``/api/status``) and dumps the DOM; the
test reads the rendered tables.  Asserted: the simulated plant's live values appear (checked
against the firmware stub) and change between two loads, Chinese display names are shown, a
display name holding markup stays text, and a stopped simulator turns its device red
(``state-down``).  A screenshot is taken at the end; with ``EDGEGW_ARTIFACTS=DIR`` it is kept there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from firmware_stubs.gas_substation import GasSubstation, expected_values
from gateway.app import Gateway
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto
from tests.conftest import IN_CI, eventually
from tests.test_e2e import running
from tests.test_http import DEVICES_ZH, NAMES_ZH, SITE_ZH, TEXTS_ZH, get, plant_config, point

MARKUP = '<img id="xss" src="x">状态字'
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1000",
    # virtual time: the page's timers (its 2 s refresh) run without the test waiting in real time
    "--virtual-time-budget=2500",
)


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if IN_CI:
            pytest.fail("chromium missing: CI must install it (scripts/test.sh does, as root)")
        pytest.skip("chromium missing; run the README's test command as root to install it")
    return found


async def chromium(binary: str, profile: Path, *args: str) -> str:
    """Run headless Chromium on a fresh profile without blocking the event loop (the gateway under
    test serves the page from this loop)."""
    profile.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        binary, *FLAGS, f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


class Page(HTMLParser):
    """The rendered tables: point rows (data-key) and device rows (data-device), cell text by class."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.points: dict[str, dict[str, str]] = {}
        self.devices: dict[str, dict[str, str]] = {}
        self.ids: set[str] = set()
        self.heading = ""  # the text of #gw-id: site and gateway
        self._heading = False
        self._row: dict[str, str] | None = None
        self._cell: str | None = None
        self._texts: list[str] = []
        self._n = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
            self._heading = a["id"] == "gw-id"
        if tag == "tr" and ("data-key" in a or "data-device" in a):
            self._row = {"class": a.get("class", ""), **{k[5:]: v for k, v in a.items() if k.startswith("data-")}}
            (self.points if "data-key" in a else self.devices)[a.get("data-key") or a["data-device"]] = self._row
            self._n = 0
        elif tag == "td" and self._row is not None:
            self._cell = a.get("class") or f"col{self._n}"
            self._n += 1
            self._texts = []
            if a.get("title"):
                self._row[self._cell + ".title"] = a["title"]

    def handle_data(self, data: str) -> None:
        if self._heading:
            self.heading += data
        if self._cell is not None:
            self._texts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._heading = False
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row[self._cell] = "".join(self._texts)
            self._cell = None
        elif tag == "tr":
            self._row = None


async def test_status_page_in_headless_chromium(tmp_path: Path, mosquitto: Mosquitto) -> None:
    binary = chromium_binary()
    stub1 = GasSubstation(8)
    async with SimulatedPlc(tick_s=0, stub=stub1) as plc1, SimulatedPlc(tick_s=0, seed=9) as plc2:
        cfg = plant_config([plc1.port, plc2.port], mosquitto.port, tmp_path, name="page",
                           names={**NAMES_ZH, "status": MARKUP})
        gw = Gateway(cfg)
        assert gw.http is not None
        async with running(gw.run()), aiohttp.ClientSession() as session:
            await asyncio.wait_for(gw.http.started.wait(), 10)
            base = gw.http.url

            async def at_tick(tick: int) -> None:
                """Wait until the gateway has the PLC's tick (the page may then load)."""
                async def seen() -> bool:
                    _, st = await get(session, f"{base}/api/status?q=gas-sub-01.seq")
                    return bool(point(st, "gas-sub-01.seq")["value"] == tick)

                await eventually(seen, what=f"seq = {tick}")

            async def load(n: int) -> Page:
                return Page(await chromium(binary, tmp_path / f"profile-{n}", "--dump-dom", f"{base}/"))

            # first load: the plant's values as the stub defines them, with Chinese names
            await plc1.advance(3)
            await at_tick(3)
            first = await load(1)
            assert set(first.devices) == set(DEVICES_ZH)
            assert len(first.points) == 2 * 8
            seq = first.points["gas-sub-01.seq"]
            assert seq["value"] == "3" and seq["quality"] == "good"
            want = expected_values(stub1.reading(3))
            assert float(first.points["gas-sub-01.o2"]["value"]) == pytest.approx(want["o2"])
            assert float(first.points["gas-sub-01.ch4"]["value"]) == pytest.approx(want["ch4"], rel=1e-6)
            assert first.points["gas-sub-01.ch4"]["display-name"] == "甲烷浓度"
            assert first.points["gas-sub-01.ch4"]["display-name.title"] == TEXTS_ZH["ch4"]  # the description
            assert first.heading == f"{SITE_ZH} (baotou-mine-01) / gw-page"
            assert first.points["gas-sub-01.ch4"]["unit"] == "%CH4"
            assert first.points["gas-sub-01.ch4"]["code"] == "88.608.5288/DEV.baotou-mine-01.gas-sub-01.ch4"
            assert first.devices["gas-sub-01"]["col2"] == DEVICES_ZH["gas-sub-01"]
            assert first.devices["gas-sub-01"]["state"] == "up"
            assert all(d["class"] == "device state-up" for d in first.devices.values()), first.devices
            # a display name with markup is shown as text, never parsed into an element
            assert first.points["gas-sub-01.status"]["display-name"] == MARKUP
            assert "xss" not in first.ids

            # second load, later ticks: the values changed and still match the stub
            await plc1.advance(4)
            await at_tick(7)
            second = await load(2)
            assert second.points["gas-sub-01.seq"]["value"] == "7"
            want = expected_values(stub1.reading(7))
            assert float(second.points["gas-sub-01.ch4"]["value"]) == pytest.approx(want["ch4"], rel=1e-6)
            assert second.points["gas-sub-01.ch4"]["value"] != first.points["gas-sub-01.ch4"]["value"]

            # one simulator stops: its device turns red, its points bad with the reason; the other stays green
            await plc2.stop()

            async def down() -> bool:
                _, st = await get(session, f"{base}/api/status")
                return any(d["name"] == "gas-sub-02" and d["state"] == "down" for d in st["devices"])

            await eventually(down, what="gas-sub-02 down")
            third = await load(3)
            assert third.devices["gas-sub-02"]["class"] == "device state-down"
            assert third.devices["gas-sub-02"]["state"] == "down"
            assert third.devices["gas-sub-02"]["error"]  # the last error is shown
            assert third.devices["gas-sub-01"]["class"] == "device state-up"
            bad = [p for k, p in third.points.items() if k.startswith("gas-sub-02.")]
            assert bad and all(p["quality"] == "bad" and p["reason"] and p["value"] == "" for p in bad)

            # a filter given in the link: the gateway sends only the matching rows
            only = Page(await chromium(binary, tmp_path / "profile-4", "--dump-dom", f"{base}/?q=ch4&quality=good"))
            assert set(only.points) == {"gas-sub-01.ch4", "gas-sub-01.ch4_alarm"}
            assert len(only.devices) == 2  # devices are always all shown

            shot = tmp_path / "status-page.png"
            await chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}", f"{base}/")
            assert shot.stat().st_size > 10_000
            if os.environ.get("EDGEGW_ARTIFACTS"):
                keep = Path(os.environ["EDGEGW_ARTIFACTS"])
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, keep / shot.name)
