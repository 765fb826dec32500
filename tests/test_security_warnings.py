"""Loud about weak security, strict about files: `edgegw check` and the start-up log say every weak
setting once with its location; `tls_only` needs verified TLS; min/max are finite; a file problem is
one located line and exit 2, never a traceback."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from gateway.config import parse, security_warnings
from hil.opcua_server import free_port
from tests.test_config import GOOD

ROOT = Path(__file__).resolve().parent.parent


def edgegw(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def write(tmp_path: Path, data: dict[str, Any], name: str = "gw.toml") -> Path:
    data = copy.deepcopy(data)
    data.setdefault("buffer", {"path": str(tmp_path / "buffer.db")})
    path = tmp_path / name
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def opcua(name: str, **kw: Any) -> dict[str, Any]:
    return {"type": "opcua", "name": name, "endpoint": "opc.tcp://127.0.0.1:4840",
            "points": [{"name": "t", "node_id": "ns=2;s=T"}], **kw}


def warnings_of(stderr: str) -> list[str]:
    return [line.removeprefix("warning: ") for line in stderr.splitlines() if line.startswith("warning: ")]


def weak_config(tmp_path: Path) -> dict[str, Any]:
    pw = tmp_path / "mqtt.pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o600)
    data = copy.deepcopy(GOOD)
    data["uplink"] = {"host": "broker", "port": 8883, "tls": True, "tls_verify": "off", "password_env": "MQTT_PW"}
    data["devices"] += [
        opcua("opc-none", security_policy="None", security_mode="None", allow_no_security=True),
        opcua("opc-tofu", trust="trust_on_first_use"),
        opcua("opc-ok"),
    ]
    data["ingest"] = {
        "mqtt": {"host": "broker", "password_file": str(pw)},
        "influx": {"api": "v2", "url": "http://influx:8086", "token_env": "INFLUX_TOKEN"},
    }
    data["registry"] = {"api": "snms", "url": "http://idis:3000", "identity": "88.608.5288/App_gw",
                        "password_env": "IDIS_PW"}
    return data


def test_check_says_each_weak_setting_once_with_its_location(tmp_path: Path) -> None:
    res = edgegw("check", "-c", str(write(tmp_path, weak_config(tmp_path))))
    assert res.returncode == 0, res.stderr
    assert ": ok (4 devices" in res.stdout
    got = warnings_of(res.stderr)
    assert [w.split(":", 1)[0] for w in got] == [
        "uplink.tls_verify",
        "devices[1].security_policy",
        "devices[2].trust",
        "registry.password_env",
        "ingest.mqtt.password_file",
        "ingest.influx.token_env",
    ], res.stderr
    text = "\n".join(got)
    assert "'off': the broker's certificate is not verified at all" in text
    assert "'None': the OPC UA session is neither signed nor encrypted" in text
    assert "'trust_on_first_use': the first certificate the server presents is trusted unchecked" in text
    assert "MQTT password goes over a plain connection to broker:1883" in text
    assert "InfluxDB token goes over plain http (http://influx:8086)" in text
    assert "resolution node password goes over plain http" in text
    assert "Traceback" not in res.stderr


def test_chain_verification_says_the_host_name_is_not_checked(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["uplink"] = {"host": "broker", "port": 8883, "tls": True, "tls_verify": "chain", "username": "gw1",
                      "password_env": "MQTT_PW"}
    res = edgegw("check", "-c", str(write(tmp_path, data)))
    assert res.returncode == 0, res.stderr
    (w,) = warnings_of(res.stderr)
    assert w.startswith("uplink.tls_verify: 'chain': the certificate chain is verified but not the host name")


def test_a_verified_or_credential_free_config_gets_no_warning(tmp_path: Path) -> None:
    plain = edgegw("check", "-c", str(write(tmp_path, GOOD, "plain.toml")))  # plain MQTT, no password
    data = copy.deepcopy(GOOD)
    data["uplink"] = {"host": "broker", "port": 8883, "tls": True, "password_env": "MQTT_PW"}
    data["devices"].append(opcua("opc-ok"))
    secure = edgegw("check", "-c", str(write(tmp_path, data, "secure.toml")))
    for res in (plain, secure):
        assert res.returncode == 0, res.stderr
        assert "warning" not in res.stderr, res.stderr


def test_warnings_follow_the_role() -> None:
    data = copy.deepcopy(GOOD)
    data["uplink"] = {"host": "broker", "password_env": "MQTT_PW"}
    data["ingest"] = {"mqtt": {"host": "broker", "password_env": "MQTT_PW"},
                      "influx": {"api": "v1", "url": "http://influx:8086"}}
    cfg = parse(data)
    assert [w.location for w in security_warnings(cfg, "edge")] == ["uplink.password_env"]
    assert [w.location for w in security_warnings(cfg, "ingest")] == ["ingest.mqtt.password_env"]
    assert len(security_warnings(cfg)) == 2


@pytest.mark.parametrize("verify", ["chain", "off"])
def test_tls_only_data_needs_verified_tls(tmp_path: Path, verify: str) -> None:
    data = copy.deepcopy(GOOD)
    data["devices"][0]["points"][0]["data_grade"] = "core"  # data_policy.core is tls_only by default
    data["uplink"] = {"host": "broker", "port": 8883, "tls": True, "tls_verify": verify}
    res = edgegw("check", "-c", str(write(tmp_path, data)))
    assert res.returncode == 2
    assert (
        "devices[0].points[0].data_grade: core data may only leave the site over TLS (data_policy.core = 'tls_only'), "
        f"but the uplink's TLS does not verify the broker (uplink.tls_verify = '{verify}'; tls_only needs verified "
        "TLS): set tls_verify = 'full'"
    ) in res.stderr
    data["uplink"]["tls_verify"] = "full"
    ok = edgegw("check", "-c", str(write(tmp_path, data, "full.toml")))
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(("key", "literal"), [("min", "nan"), ("max", "nan"), ("min", "-inf"), ("max", "inf")])
def test_min_and_max_must_be_finite(tmp_path: Path, key: str, literal: str) -> None:
    data = copy.deepcopy(GOOD)
    data["devices"][0]["points"][0][key] = float(literal)
    cfg = write(tmp_path, data)
    assert f"{key} = {literal}" in cfg.read_text()
    res = edgegw("check", "-c", str(cfg))
    assert res.returncode == 2
    assert f"devices[0].points[0].{key}: must be a finite number" in res.stderr
    assert "Traceback" not in res.stderr


# ----------------------------------------------------------------------------------------- files
def one_error(res: subprocess.CompletedProcess[str], expected: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    # the start-up's progress lines (edgegw.startup, logged once a start has taken 1 s: a loaded machine)
    # may come before the error; nothing else may
    lines = [line for line in res.stderr.strip().splitlines() if " INFO edgegw.startup: " not in line]
    assert lines[0].endswith("invalid configuration (1 problem(s))"), res.stderr
    assert lines[1].strip() == expected, res.stderr


def test_a_buffer_path_that_is_a_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bufdir").mkdir()
    cfg = write(tmp_path, {**GOOD, "buffer": {"path": str(tmp_path / "bufdir")}})
    bufdir = tmp_path / "bufdir"
    expected = f"buffer.path: {bufdir} is a directory: name a file in it (e.g. {bufdir / 'buffer.db'})"
    checked = edgegw("check", "-c", str(cfg))  # the config may be for another machine: said, not refused
    assert checked.returncode == 0 and warnings_of(checked.stderr) == [
        expected.replace("buffer.path: ", "buffer.path: on this machine: ")
    ]
    one_error(edgegw("check", "--here", "-c", str(cfg)), expected)
    one_error(edgegw("run", "-c", str(cfg)), expected)
    stats = edgegw("buffer", "stats", "--file", str(tmp_path / "bufdir"))
    assert stats.returncode == 2
    assert stats.stderr.strip() == f"error: {tmp_path / 'bufdir'} is a directory, not a buffer file"


def test_a_missing_buffer_directory_is_one_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, {**GOOD, "buffer": {"path": str(tmp_path / "nope" / "buffer.db")}})
    one_error(edgegw("run", "-c", str(cfg)),
              f"buffer.path: directory {tmp_path / 'nope'} does not exist: create it, owned by the gateway's user")
    (tmp_path / "file").write_text("")
    cfg = write(tmp_path, {**GOOD, "buffer": {"path": str(tmp_path / "file" / "buffer.db")}})
    one_error(edgegw("run", "-c", str(cfg)), f"buffer.path: {tmp_path / 'file'} is not a directory")


def test_missing_tls_files_stop_run_and_ingest_with_one_line(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["uplink"] = {"host": "127.0.0.1", "tls": True, "ca_file": str(tmp_path / "ca.pem")}
    one_error(edgegw("run", "-c", str(write(tmp_path, data))), f"uplink.ca_file: {tmp_path / 'ca.pem'} does not exist")
    ingest = {"ingest": {"mqtt": {"host": "127.0.0.1", "tls": True, "cert_file": str(tmp_path / "c.pem"),
                                  "key_file": str(tmp_path)},
                         "influx": {"api": "file", "path": str(tmp_path / "out.lp")}}}
    res = edgegw("ingest", "-c", str(write(tmp_path, ingest, "ingest.toml")))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"  ingest.mqtt.cert_file: {tmp_path / 'c.pem'} does not exist\n" in res.stderr
    assert f"  ingest.mqtt.key_file: {tmp_path} is a directory, not a file\n" in res.stderr


def test_a_password_file_that_is_a_directory_or_missing_is_one_line(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["uplink"] = {"host": "127.0.0.1", "tls": True, "password_file": str(tmp_path)}
    one_error(edgegw("run", "-c", str(write(tmp_path, data))),
              f"uplink.password_file: {tmp_path} is a directory, not a file")
    data["devices"] = [opcua("opc1", identity="username", username="op", password_file=str(tmp_path / "pw"))]
    data["uplink"]["password_file"] = str(tmp_path / "mqtt.pw")
    (tmp_path / "mqtt.pw").write_text("x\n")
    (tmp_path / "mqtt.pw").chmod(0o600)
    one_error(edgegw("run", "-c", str(write(tmp_path, data, "opc.toml"))),
              f"devices[0].password_file: {tmp_path / 'pw'} does not exist")


def test_secret_files_readable_by_others_or_owned_by_another_user_are_said(tmp_path: Path) -> None:
    pw = tmp_path / "mqtt.pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o644)
    data = copy.deepcopy(GOOD)
    data["uplink"] = {"host": "broker", "tls": True, "password_file": str(pw)}
    res = edgegw("check", "-c", str(write(tmp_path, data)))
    assert res.returncode == 0
    assert warnings_of(res.stderr) == [
        f"uplink.password_file: {pw} is readable by other users (mode 0644): chmod 600 it"
    ]
    if os.geteuid() != 0:
        pw.chmod(0)
        res = edgegw("check", "--here", "-c", str(write(tmp_path, data)))
        assert res.returncode == 2 and f"uplink.password_file: {pw} is not readable by the gateway" in res.stderr
        return
    pw.chmod(0o600)
    os.chown(pw, 54321, 54321)  # root can give it away: the case of a file left by another account
    res = edgegw("check", "-c", str(write(tmp_path, data)))
    assert res.returncode == 0
    (w,) = warnings_of(res.stderr)
    assert w.startswith(f"uplink.password_file: {pw} is owned by another user (owner uid 54321, mode 0600; ")
    assert w.endswith("that user can change the secret")


# ------------------------------------------------------------------------------------ start-up log
def wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return content
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before saying {text!r}:\n{content}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"not said within {timeout} s: {text!r}:\n{log.read_text(errors='replace')}")


def start(tmp_path: Path, role: str, cfg: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"{role}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", role, "-c", str(cfg)],
                                cwd=ROOT, stdout=out, stderr=out)
    return proc, log


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_run_logs_each_weak_setting_once_at_start(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["devices"][0]["port"] = free_port()  # nothing listens: the device is simply down
    data["uplink"] = {"host": "127.0.0.1", "port": free_port(), "tls": True, "tls_verify": "off",
                      "password_env": "EDGEGW_TEST_MQTT_PW"}
    data["ingest"] = {"mqtt": {"host": "broker", "password_env": "X"}, "influx": {"api": "v1", "url": "http://i:1"}}
    proc, log = start(tmp_path, "run", write(tmp_path, data))
    try:
        text = wait_for(log, "Gateway gw1 starting", proc)
    finally:
        stop(proc)
    assert text.count("Weak security: uplink.tls_verify: 'off'") == 1, text
    assert "Weak security" not in text.replace("Weak security: uplink.tls_verify", ""), text  # not the ingest's
    assert text.index("Weak security") < text.index("Gateway gw1 starting")


def test_ingest_logs_a_password_over_plain_mqtt_at_start(tmp_path: Path) -> None:
    data = {"ingest": {"mqtt": {"host": "127.0.0.1", "port": free_port(), "password_env": "EDGEGW_TEST_MQTT_PW"},
                       "influx": {"api": "file", "path": str(tmp_path / "out.lp")}}}
    proc, log = start(tmp_path, "ingest", write(tmp_path, data))
    try:
        text = wait_for(log, "Weak security: ingest.mqtt.password_env", proc)
    finally:
        stop(proc)
    assert text.count("Weak security") == 1, text


def test_a_password_in_a_url_is_said_and_not_repeated(tmp_path: Path) -> None:
    data = {"ingest": {"mqtt": {"host": "broker"},
                       "influx": {"api": "v2", "url": "http://admin:hunter2@influx:8086", "token_env": "T"}}}
    res = edgegw("check", "-c", str(write(tmp_path, data)))
    assert res.returncode == 0, res.stderr
    assert [w.split(":", 1)[0] for w in warnings_of(res.stderr)] == ["ingest.influx.token_env", "ingest.influx.url"]
    assert "the url carries a password and goes over plain http" in res.stderr
    assert "hunter2" not in res.stderr and "http://admin:***@influx:8086" in res.stderr


def test_tls_files_that_hold_no_certificate_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.pem").write_text("")
    data = copy.deepcopy(GOOD)
    data["uplink"] = {"host": "127.0.0.1", "port": free_port(), "tls": True, "ca_file": str(tmp_path / "empty.pem")}
    one_error(
        edgegw("run", "-c", str(write(tmp_path, data))),
        f"uplink.ca_file: {tmp_path / 'empty.pem'} holds no usable PEM certificate (NO_CERTIFICATE_OR_CRL_FOUND)",
    )
    (tmp_path / "c.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (tmp_path / "k.pem").write_text("")
    (tmp_path / "k.pem").chmod(0o600)
    data["uplink"] = {"host": "127.0.0.1", "port": free_port(), "tls": True,
                      "cert_file": str(tmp_path / "c.pem"), "key_file": str(tmp_path / "k.pem")}
    res = edgegw("run", "-c", str(write(tmp_path, data, "mtls.toml")))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    assert f"  uplink.cert_file: {cert} with key {key}: not a PEM certificate" in res.stderr
