"""Secrets never leave: every log line, printout, metric and status page is searched for them, also
after a config reload and a refused one.

The secrets reach the gateway the ways the config allows (environment variable, ``*_file``, and a
password in a url, which the config warns about): the MQTT uplink logs in with one, the ingest with
another from a file, and writes to an InfluxDB url carrying a third, with a fourth from a file
(nothing listens there, so write errors are logged and counted).  Then ``edgegw check`` and
``--print-config`` run, the gateway and the ingest run with their status endpoints, and nothing
they printed, logged or served may contain a secret.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.cli import main
from gateway.config import Config, load
from gateway.core.toml_writer import Table, render
from gateway.ingest import Ingest
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto, free_port
from tests.conftest import eventually
from tests.test_e2e import running
from tests.test_http import NAMES_ZH

UPLINK_PW = "uplink-pw-Q7x2v9"
INGEST_PW = "ingest-pw-K3m8w1"
URL_PW = "url-pw-Z5n4t6"
INFLUX_PW = "influx-pw-H2j7r3"
UPLINK_PW2 = "uplink-pw2-R8c5e4"
SECRETS = (UPLINK_PW, INGEST_PW, URL_PW, INFLUX_PW, UPLINK_PW2)
ENV = "EDGEGW_TEST_UPLINK_PASSWORD"
ENV2 = "EDGEGW_TEST_UPLINK_PASSWORD_2"


def write_config(tmp: Path, plc_port: int, broker_port: int) -> Path:
    (tmp / "ingest-mqtt.pw").write_text(INGEST_PW + "\n")
    (tmp / "influx.pw").write_text(INFLUX_PW + "\n")
    for f in ("ingest-mqtt.pw", "influx.pw"):
        (tmp / f).chmod(0o600)
    points = [{"name": n, "table": "input_register", "address": a, "data_type": "uint16", "display_name": NAMES_ZH[n]}
              for n, a in (("co", 4), ("o2", 5))]
    mqtt = {"host": "127.0.0.1", "port": broker_port, "topic_prefix": "t-secrets"}
    path = tmp / "secrets.toml"
    path.write_text(render([
        Table(("gateway",), {"id": "gw-secrets", "site": "baotou-mine-01", "enterprise_prefix": "88.608.5288"},
              array=False),
        Table(("devices",), {"type": "modbus_tcp", "name": "gas-sub-01", "host": "127.0.0.1", "port": plc_port,
                             "poll_interval_ms": 100, "timeout_ms": 300, "backoff_max_ms": 500}),
        *[Table(("devices", "points"), p) for p in points],
        Table(("buffer",), {"path": str(tmp / "buffer.db"), "linger_ms": 20}, array=False),
        Table(("uplink",), {**mqtt, "client_id": "gw-secrets", "username": "gw", "password_env": ENV}, array=False),
        Table(("ingest",), {"linger_ms": 20, "dead_letter_path": str(tmp / "dl.db")}, array=False),
        Table(("ingest", "mqtt"), {**mqtt, "client_id": "ingest-secrets", "username": "ingest",
                                   "password_file": str(tmp / "ingest-mqtt.pw")}, array=False),
        Table(("ingest", "influx"), {"api": "v1", "url": f"http://writer:{URL_PW}@127.0.0.1:{free_port()}",
                                     "username": "writer", "password_file": str(tmp / "influx.pw"),
                                     "timeout_s": 1.0}, array=False),
        Table(("http",), {"listen": "127.0.0.1:0"}, array=False),
    ]))
    return path


def leaks(where: str, text: str) -> list[str]:
    return [f"{where} contains {s!r}" for s in SECRETS if s in text]


async def test_no_secret_in_logs_printouts_metrics_or_status_pages(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ENV, UPLINK_PW)
    caplog.set_level(logging.DEBUG)
    found: list[str] = []
    async with SimulatedPlc(tick_s=0, seed=12) as plc:
        path = write_config(tmp_path, plc.port, mosquitto.port)

        # printouts: check (with its security warnings) and the effective config
        assert main(["check", "-c", str(path)]) == 0
        assert main(["check", "--print-config", "-c", str(path)]) == 0
        out = capsys.readouterr()
        found += leaks("`edgegw check` output", out.out + out.err)
        printed = tomllib.loads(out.out.split("\n", 1)[1])  # after the comment line: TOML that reads back
        assert printed["ingest"]["influx"]["url"].startswith("http://writer:***@127.0.0.1:")
        assert printed["uplink"]["password_env"] == ENV  # names and paths stay: operators check them
        assert printed["ingest"]["mqtt"]["password_file"] == str(tmp_path / "ingest-mqtt.pw")
        assert printed["devices"][0]["points"][0]["display_name"] == NAMES_ZH["co"]

        cfg = load(path)
        assert cfg.uplink is not None and cfg.uplink.password() == UPLINK_PW  # the secrets are really in use
        assert cfg.ingest is not None and cfg.ingest.influx.password() == INFLUX_PW
        gw = Gateway(cfg)
        ingest = Ingest(cfg.ingest, http_listen="127.0.0.1:0")
        assert gw.http is not None and ingest.http is not None
        async with running(ingest.run(), gw.run()), aiohttp.ClientSession() as session:
            await asyncio.wait_for(gw.http.started.wait(), 10)
            await asyncio.wait_for(ingest.http.started.wait(), 10)
            await eventually(lambda: gw.forwarder.stats.published_points > 0, what="the uplink to log in and publish")
            # the reload path (SIGHUP): a changed device and another variable for the uplink password (the
            # restart-only warning names the key, never a value); then a file whose url is malformed around
            # its password (the refusal's located errors quote the url without it)
            monkeypatch.setenv(ENV2, UPLINK_PW2)
            changed = path.read_text().replace("poll_interval_ms = 100", "poll_interval_ms = 150").replace(ENV, ENV2)
            broken = changed.replace('url = "http://writer:', 'url = "htp://writer:')
            assert changed != path.read_text() and broken != changed
            sources = iter([changed, broken])

            def reread() -> Config:
                path.write_text(next(sources))
                return load(path)

            gw.reload_source = reread
            gw.request_reload()
            await eventually(lambda: gw.reload_status.applied == 1, what="the reload")
            gw.request_reload()
            await eventually(lambda: gw.reload_status.refused == 1, what="the refused reload")
            assert any("not applied until restart: [uplink] password_env" in r.getMessage() for r in caplog.records)
            assert any("htp://writer:***@127.0.0.1" in r.getMessage() for r in caplog.records)
            await eventually(lambda: sum(ingest.stats.store_errors.values()) >= 2,
                             what="the ingest to fail writing to the dead InfluxDB url")
            pages: dict[str, Any] = {}
            for server in (gw.http, ingest.http):
                for route in ("/", "/static/status.js", "/healthz", "/readyz", "/metrics", "/api/status"):
                    async with session.get(server.url + route) as r:
                        pages[server.url + route] = await r.text()
            assert "edgegw_ingest_store_errors_total" in pages[ingest.http.url + "/metrics"]
            assert "gas-sub-01" in pages[gw.http.url + "/api/status"]
    for where, text in pages.items():
        found += leaks(where, text)
    # every log line, formatted as the service logs it, and every structured field of it
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    assert any("127.0.0.1" in r.getMessage() and r.name == "edgegw.ingest" for r in caplog.records)
    for record in caplog.records:
        found += leaks(f"log record {record.name}:{record.lineno}", fmt.format(record) + repr(vars(record)))
    out = capsys.readouterr()
    found += leaks("stdout/stderr", out.out + out.err)
    assert main(["check", "-c", str(path)]) == 2  # the broken file's located errors, as `edgegw check` prints them
    out = capsys.readouterr()
    assert "htp://writer:***@127.0.0.1" in out.err
    found += leaks("`edgegw check` of the broken file", out.out + out.err)
    assert found == []
