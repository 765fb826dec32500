"""``edgegw run`` without pydantic in its process (#17, item 1: gateway.core.plain).

The gateway's process never validates a config (a child process reads it, gateway.prebuild), so it
loads the child's models as plain classes and never imports pydantic or pydantic-core.  Checked on
a real ``edgegw run`` (a simulated Modbus PLC, a real mosquitto): what its process maps once it polls,
and after a live reload that applies and one that is refused (the reload's reader is a fresh
interpreter, gateway.reader.in_new_process).  Then the pieces: the pickled models of every driver's
sample load as plain classes and back as pydantic's unchanged, and the fresh reader keeps the forked
one's errors (a config error, a crash, a reader that dies or hangs).
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import tomllib
import types
import urllib.request
from pathlib import Path

import pytest
import tomli_w

from gateway.core import plain
from gateway.core.errors import ConfigError, ConfigIssue, ConfigReadFailed
from hil.modbus_server import SimulatedPlc
from hil.services import Mosquitto, free_port
from tests.collector import collect
from tests.conftest import eventually
from tests.gateway_process import REPO, gas_substations_toml, stop_gateway
from tests.test_reload import _samples

SAMPLES = sorted((REPO / "drivers").glob("*/sample.toml"))


def _mapped_pydantic(pid: int) -> list[str]:
    """The files of ``pid``'s memory maps that belong to pydantic or pydantic-core."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in maps if "pydantic" in line})


def _config(tmp: Path, plc_port: int, broker_port: int, intervals: dict[int, int]) -> str:
    head = (
        '[gateway]\nid = "gw-plain"\nsite = "baotou-mine-01"\nenterprise_prefix = "88.608.5288"\n\n'
        f'[buffer]\npath = "{tmp / "buffer.db"}"\nlinger_ms = 20\n\n'
        f'[uplink]\nhost = "127.0.0.1"\nport = {broker_port}\ntopic_prefix = "t-plain"\nclient_id = "gw-plain"\n\n'
    )
    blocks = [gas_substations_toml(plc_port, 1, first=d, poll_interval_ms=ms) for d, ms in intervals.items()]
    return head + "\n".join(blocks)


def _status(http_port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/status?limit=1", timeout=5) as r:
        result: dict[str, object] = json.load(r)
        return result


@pytest.mark.timeout(240)
async def test_edgegw_run_polls_and_reloads_without_pydantic_in_its_process(tmp_path: Path,
                                                                            mosquitto: Mosquitto) -> None:
    cfg = tmp_path / "gateway.toml"
    log = tmp_path / "gateway.log"
    http = free_port()
    async with SimulatedPlc(tick_s=0.1) as plc, collect(mosquitto.port, "t-plain/+/+/data", "plain-oracle") as got:
        cfg.write_text(_config(tmp_path, plc.port, mosquitto.port, {0: 500, 1: 500}))
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-X", "faulthandler", "-m", "gateway.cli", "run", "-c", str(cfg),
                "--http", f"127.0.0.1:{http}", cwd=REPO, stdout=out, stderr=out,
            )
        try:
            await eventually(lambda: all(len(_samples(got).get(f"gas-sub-{d}", [])) >= 4 for d in range(2)),
                             timeout=60, what="both devices polled and published")
            assert _mapped_pydantic(proc.pid) == [], "the gateway's process loaded pydantic"
            # the status page (--http: checked before the reader starts) reads the running config's plain models
            status = await asyncio.to_thread(_status, http)
            assert [d["name"] for d in status["devices"]] == ["gas-sub-0", "gas-sub-1"]  # type: ignore[attr-defined]

            # a reload that changes one device applies
            cfg.write_text(_config(tmp_path, plc.port, mosquitto.port, {0: 500, 1: 250}))
            proc.send_signal(signal.SIGHUP)
            await eventually(lambda: "Reloaded config:" in log.read_text(), timeout=60, what="the reload")
            text = log.read_text()
            assert "Reloaded config: 1 changed (gas-sub-1), 0 added, 0 removed, 1 unchanged." in text, text[-3000:]
            applied = time.time_ns()
            await eventually(lambda: sum(t > applied for t in _samples(got).get("gas-sub-1", [])) >= 8, timeout=60,
                             what="the changed device polled after the reload")

            # one with a config error is refused, located in the file, and the gateway runs on
            bad = cfg.read_text().replace("poll_interval_ms = 250", "poll_interval_ms = -5", 1)
            cfg.write_text(bad)
            proc.send_signal(signal.SIGHUP)
            await eventually(lambda: "Reload refused:" in log.read_text(), timeout=60, what="the refusal")
            line_no = bad.splitlines().index("poll_interval_ms = -5") + 1
            text = log.read_text()
            assert f"Reload refused: {cfg}:{line_no}:" in text and "devices[1].poll_interval_ms" in text, text[-3000:]
            refused = time.time_ns()
            await eventually(lambda: all(sum(t > refused for t in _samples(got)[f"gas-sub-{d}"]) >= 3
                                         for d in range(2)), timeout=60, what="polling after the refusal")
            status = await asyncio.to_thread(_status, http)
            reload = status["reload"]
            assert reload == {**reload, "applied": 1, "refused": 1}, reload  # type: ignore[dict-item]
            assert _mapped_pydantic(proc.pid) == [], "a reload loaded pydantic into the gateway's process"
        finally:
            await stop_gateway(proc, log)


_PLAIN_SIDE = """
import pickle, sys
from gateway.core import plain
plain.enable()
from gateway.prebuild import Prebuilt
built = pickle.loads(sys.stdin.buffer.read())
cfg = built.cfg
assert type(cfg).__mro__[-2] is plain.BaseModel, type(cfg).__mro__
copy = cfg.model_copy(update={"devices": []})
assert copy.devices == [] and cfg.devices and copy != cfg and cfg.model_copy() == cfg
assert cfg.catalog() is cfg._catalog[1]  # the point table handed over with it (a private attribute)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core"))
assert not loaded, loaded
sys.stdout.buffer.write(pickle.dumps((cfg, copy), protocol=pickle.HIGHEST_PROTOCOL))
"""


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.parent.name)
def test_every_drivers_models_load_as_plain_classes_and_back_unchanged(sample: Path, tmp_path: Path) -> None:
    from gateway.config import Config, parse
    from gateway.prebuild import prebuild

    data = tomllib.loads(sample.read_text(encoding="utf-8"))
    data["buffer"] = {"path": str(tmp_path / "buffer.db")}
    built = prebuild(parse(data))
    out = subprocess.run([sys.executable, "-c", _PLAIN_SIDE], input=pickle.dumps(built), cwd=REPO,
                         capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    cfg, copy = pickle.loads(out.stdout)  # back in this process: pydantic's models
    assert isinstance(cfg, Config)
    assert cfg == built.cfg and cfg.model_dump() == built.cfg.model_dump()
    assert copy == built.cfg.model_copy(update={"devices": []})


def _refuse(path: str) -> None:
    raise ConfigError([ConfigIssue("devices[0].port", "must be 1..65535")], path)


def _crash() -> None:
    raise ValueError("a bug in the reader")


def _hang() -> None:
    time.sleep(60)


def _die() -> None:
    os._exit(7)


def test_the_fresh_reader_answers_and_fails_as_the_forked_one() -> None:
    from gateway.reader import in_new_process

    assert in_new_process(divmod, 43, 6, timeout_s=60) == (7, 1)
    main_fn = types.FunctionType(_die.__code__, {"__name__": "__main__"})
    with pytest.raises(TypeError, match="__main__"):  # the reader could not find it by name
        in_new_process(main_fn, timeout_s=60)
    with pytest.raises(ConfigError) as err:
        in_new_process(_refuse, "gw.toml", timeout_s=60)
    assert err.value.source == "gw.toml" and [i.location for i in err.value.issues] == ["devices[0].port"]
    with pytest.raises(ConfigReadFailed, match=r"(?s)failed in its process:.*ValueError: a bug in the reader"):
        in_new_process(_crash, timeout_s=60)
    with pytest.raises(ConfigReadFailed, match=r"ended without a result \(exit status 7\)"):
        in_new_process(_die, timeout_s=60)
    t0 = time.monotonic()
    with pytest.raises(ConfigReadFailed, match=r"gave no result within 3 s and was stopped"):
        in_new_process(_hang, timeout_s=3)
    assert time.monotonic() - t0 < 50  # not the reader's 60 s: it was killed


def test_the_fresh_reader_does_not_inherit_plain_mode(tmp_path: Path) -> None:
    """A plain-mode process's reload reader validates (it imports the real models): run from one."""
    path = tmp_path / "gw.toml"
    data = tomllib.loads((REPO / "drivers" / "modbus" / "sample.toml").read_text(encoding="utf-8"))
    data["devices"][0]["poll_interval_ms"] = -5
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    script = (
        "import sys\nfrom gateway.core import plain\nplain.enable()\n"
        "from gateway.prebuild import read_for_reload\nfrom gateway.core.errors import ConfigError\n"
        "from gateway.reader import in_new_process\n"
        "try:\n    in_new_process(read_for_reload, sys.argv[1], None, None, {}, timeout_s=120)\n"
        "except ConfigError as err:\n    print(err.issues[0].location)\n"
        "assert 'pydantic' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "devices[0].poll_interval_ms"


class _Section(plain.BaseModel):
    host: str
    port: int = plain.Field(default=1883, ge=1, description="validated only where pydantic is")
    tags: dict[str, str] = plain.Field(default_factory=dict)
    tls: bool = False
    _cache: int | None = plain.PrivateAttr(default=None)

    _check = plain.field_validator("host")(str.strip)  # a no-op here

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def test_a_plain_model_reads_copies_compares_and_pickles_as_pydantics_does() -> None:
    s = _Section(host="broker")
    assert (s.host, s.port, s.tags, s.tls, s.address, s._cache) == ("broker", 1883, {}, False, "broker:1883", None)
    assert s.tags is not _Section(host="x").tags  # a default factory makes one per model
    t = s.model_copy(update={"port": 8883})
    assert (t.port, s.port, t.address) == (8883, 1883, "broker:8883")
    assert t != s and t.model_copy(update={"port": 1883}) == s
    s._cache = 5
    assert s._cache == 5 and "_cache" not in s.__dict__
    u = s.model_copy()
    u._cache = None
    assert u != s and u._cache is None and s._cache == 5  # a copy has its own private values
    state = s.__getstate__()
    assert state["__dict__"] == {"host": "broker", "port": 1883, "tags": {}, "tls": False}
    assert state["__pydantic_private__"] == {"_cache": 5}
    back = pickle.loads(pickle.dumps(s))
    assert back == s and back._cache == 5
    assert s.model_dump() == {"host": "broker", "port": 1883, "tags": {}, "tls": False}
    assert set(_Section.model_fields) == {"host", "port", "tags", "tls"}
    assert _Section.model_fields["port"].annotation is int
    with pytest.raises(TypeError, match="'host' is required"):
        _Section()
    with pytest.raises(RuntimeError, match="plain mode"):
        plain.TypeAdapter(_Section)


def test_a_caller_of_main_keeps_pydantics_models(tmp_path: Path) -> None:
    """``cli.main(["run", ...])`` from a process with no model imported yet (a test, a script) leaves
    that process as it was: only ``edgegw run``'s own process switches to plain mode."""
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\nid = "gw"\nsite = "s"\n\n[[devices]]\ntype = "nope"\n', encoding="utf-8")
    script = (
        "import sys\nfrom gateway import cli\nfrom gateway.core import plain\n"
        "assert cli.main(['run', '-c', sys.argv[1]]) == 2\n"
        "assert not plain.enabled() and 'pydantic' in sys.modules\n"
        "from gateway.config import parse\nparse({'gateway': {'id': 'a', 'site': 'b'}})  # validates\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "unknown device type 'nope'" in out.stderr or "nope" in out.stderr
