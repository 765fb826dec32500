"""The files a config names, checked on this machine before a role starts.

Validation does no I/O (a config may be checked on a laptop for a box in a mine), so what only the
box can tell is checked here: the buffer's directory exists and is writable, the buffer path is not
a directory, TLS, key and password files exist and can be read, and a secret file is neither owned
by another user nor readable by everyone.  Each problem is one located line; ``edgegw run`` and
``edgegw ingest`` refuse to start on an error (exit 2), ``edgegw check`` prints them (errors with
``--here``).
"""

from __future__ import annotations

import os
import resource
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from drivers.opcua.config import OpcUaDevice, SecurityPolicy
from gateway.config import Config, MqttConfig
from gateway.core.errors import ConfigError, ConfigIssue

__all__ = ["FileProblems", "file_problems", "open_files_needed", "raise_open_files"]


@dataclass(slots=True)
class FileProblems:
    errors: list[ConfigIssue] = field(default_factory=list)  # the role cannot work: refuse to start
    warnings: list[ConfigIssue] = field(default_factory=list)  # it works, but someone should look

    def extend(self, other: FileProblems) -> None:
        self.errors += other.errors
        self.warnings += other.warnings


def _owner(st: os.stat_result) -> str:
    return f"owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}; the gateway runs as uid {os.geteuid()}"


def _readable(where: str, path: str, *, secret: bool = False) -> FileProblems:
    """A file the role reads: TLS anchors and certificates, keys, password files."""
    out = FileProblems()
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        out.errors.append(ConfigIssue(where, f"{path} does not exist"))
        return out
    except OSError as err:
        out.errors.append(ConfigIssue(where, f"{path}: {err.strerror}"))
        return out
    if stat.S_ISDIR(st.st_mode):
        out.errors.append(ConfigIssue(where, f"{path} is a directory, not a file"))
    elif not os.access(p, os.R_OK):
        out.errors.append(ConfigIssue(where, f"{path} is not readable by the gateway ({_owner(st)})"))
    elif secret:
        if st.st_uid not in (os.geteuid(), 0):
            out.warnings.append(ConfigIssue(
                where, f"{path} is owned by another user ({_owner(st)}): that user can change the secret"
            ))
        if stat.S_IMODE(st.st_mode) & 0o077:
            out.warnings.append(ConfigIssue(
                where, f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 it"
            ))
    return out


def _writable(where: str, path: str) -> FileProblems:
    """A file the role creates or writes beside its own journal files (SQLite -wal, -shm)."""
    out = FileProblems()
    p = Path(path)
    parent = p.parent
    try:
        if p.is_dir():
            out.errors.append(ConfigIssue(where, f"{path} is a directory: name a file in it (e.g. {p / 'buffer.db'})"))
            return out
        if not parent.exists():
            out.errors.append(ConfigIssue(
                where, f"directory {parent} does not exist: create it, owned by the gateway's user"
            ))
            return out
        if not parent.is_dir():
            out.errors.append(ConfigIssue(where, f"{parent} is not a directory"))
            return out
        if not os.access(parent, os.W_OK | os.X_OK):
            out.errors.append(ConfigIssue(
                where, f"cannot create files in {parent} ({_owner(parent.stat())})"
            ))
            return out
        if p.exists():
            st = p.stat()
            if not stat.S_ISREG(st.st_mode):
                out.errors.append(ConfigIssue(where, f"{path} is not a regular file"))
            elif not os.access(p, os.R_OK | os.W_OK):
                out.errors.append(ConfigIssue(
                    where, f"{path} cannot be read and written by the gateway ({_owner(st)})"
                ))
            elif st.st_uid != os.geteuid():
                out.warnings.append(ConfigIssue(
                    where,
                    f"{path} belongs to another user ({_owner(st)}): files the gateway creates beside it "
                    "(-wal, -shm) will not be writable for that user",
                ))
    except OSError as err:
        out.errors.append(ConfigIssue(where, f"{path}: {err.strerror}"))
    return out


def _mqtt(m: MqttConfig, where: str) -> FileProblems:
    out = FileProblems()
    for key in ("ca_file", "cert_file"):
        if (v := getattr(m, key)) is not None:
            out.extend(_readable(f"{where}.{key}", v))
    if m.key_file is not None:
        out.extend(_readable(f"{where}.key_file", m.key_file, secret=True))
    if m.password_file is not None:
        out.extend(_readable(f"{where}.password_file", m.password_file, secret=True))
    if not out.errors:
        out.errors += _tls_contents(m, where)
    return out


def _tls_contents(m: MqttConfig, where: str) -> list[ConfigIssue]:
    """Files that exist but are no PEM certificate, or a key that does not belong to its certificate:
    said here, with the key that names them, rather than at the first connection attempt."""
    if not m.tls:
        return []
    try:
        ctx = ssl.create_default_context(cafile=m.ca_file)
    except (ssl.SSLError, OSError) as err:
        return [ConfigIssue(f"{where}.ca_file", f"{m.ca_file} holds no usable PEM certificate ({_reason(err)})")]
    if m.cert_file and m.key_file:
        try:
            ctx.load_cert_chain(m.cert_file, m.key_file)
        except (ssl.SSLError, OSError) as err:
            return [ConfigIssue(
                f"{where}.cert_file",
                f"{m.cert_file} with key {m.key_file}: not a PEM certificate and its private key ({_reason(err)})",
            )]
    return []


def _reason(err: ssl.SSLError | OSError) -> str:
    reason = getattr(err, "reason", None)
    return str(reason) if reason else (err.strerror or str(err))


OPEN_FILES_SPARE = 64  # the uplink, the buffer (SQLite db, WAL, shm; the alarm buffer), HTTP clients, logs


def open_files_needed(cfg: Config) -> int:
    """Descriptors the edge role holds at most: one connection per device, and the spare."""
    return len(cfg.devices) + OPEN_FILES_SPARE


def raise_open_files(need: int) -> int:
    """Raise this process's soft limit on open files to ``need`` if it is lower (up to the hard
    limit; never lowers it) and return the soft limit now.  Linux starts processes at 1024, which a
    gateway of 1,000 Modbus TCP devices would run into as connect errors.

    Raises :class:`ConfigError` (exit 2, one line) when the limit stays below the need: under the
    shipped systemd unit the system call filter (``~@resources``) refuses ``setrlimit``, so the
    unit's ``LimitNOFILE=`` is what counts there."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return need if soft == resource.RLIM_INFINITY else soft
    new = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (OSError, ValueError) as err:
        raise ConfigError([ConfigIssue("devices", (
            f"{need - OPEN_FILES_SPARE} devices need about {need} open files; the limit is {soft} and this "
            f"process may not raise it ({err}): set LimitNOFILE={need} or more in the gateway's systemd unit"
        ))]) from None
    return new


def _open_files(cfg: Config) -> FileProblems:
    out = FileProblems()
    need = open_files_needed(cfg)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < need:
        out.errors.append(ConfigIssue("devices", (
            f"{len(cfg.devices)} devices need about {need} open files, and this machine allows the gateway "
            f"{hard} (hard limit, ulimit -Hn): raise LimitNOFILE in its systemd unit")))
    return out


def file_problems(cfg: Config, role: Literal["edge", "ingest"] | None = None) -> FileProblems:
    """Every file problem of the role (None: both roles) on this machine, located."""
    from gateway.buffer import alarm_buffer_path

    out = FileProblems()
    if role in (None, "edge"):
        if cfg.devices or cfg.uplink is not None:
            out.extend(_writable("buffer.path", cfg.buffer.path))
            alarms = alarm_buffer_path(cfg.buffer.path)
            if alarms.exists() or alarms.is_symlink():
                out.extend(_writable("buffer.path", str(alarms)))
        if cfg.uplink is not None:
            out.extend(_mqtt(cfg.uplink, "uplink"))
        out.extend(_open_files(cfg))
        for d, dev in enumerate(cfg.devices):
            if not isinstance(dev, OpcUaDevice):
                continue
            where = f"devices[{d}]"
            if dev.password_file is not None:
                out.extend(_readable(f"{where}.password_file", dev.password_file, secret=True))
            if dev.user_certificate is not None:
                out.extend(_readable(f"{where}.user_certificate", dev.user_certificate))
            if dev.user_private_key is not None:
                out.extend(_readable(f"{where}.user_private_key", dev.user_private_key, secret=True))
            pki = Path(dev.pki_dir)
            if dev.security_policy is not SecurityPolicy.NONE and pki.exists() and not pki.is_dir():
                out.errors.append(ConfigIssue(f"{where}.pki_dir", f"{dev.pki_dir} is not a directory"))
        if cfg.registry is not None and cfg.registry.private_key_file is not None:
            out.extend(_readable("registry.private_key_file", cfg.registry.private_key_file, secret=True))
    if role in (None, "ingest") and cfg.ingest is not None:
        out.extend(_mqtt(cfg.ingest.mqtt, "ingest.mqtt"))
        if cfg.ingest.influx.api == "file" and cfg.ingest.influx.path:
            out.extend(_writable("ingest.influx.path", cfg.ingest.influx.path))
    return out
