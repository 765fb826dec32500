"""``edgegw``: check, run, ingest, demo, buffer.

Exit codes: 0 ok, 1 runtime failure, 2 user mistake (config, arguments).  A user mistake prints
located messages, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Literal

from gateway import __version__
from gateway.core.errors import BufferCorruptError, BufferStorageError, ConfigError, ConfigIssue, ConfigReadFailed
from gateway.logs import ENV_VAR, JsonFormatter, LogFormat, configure_logging

if TYPE_CHECKING:  # imported where used: `edgegw --version` and `check` stay quick
    from gateway.config import Config
    from gateway.prebuild import Prebuilt

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line that cannot work (not a config problem): ``error: ...``, exit 2."""


def _print_config_error(err: ConfigError) -> None:
    from gateway.reload import config_error_lines

    head, *rest = config_error_lines(err)
    print(f"error: {head}", file=sys.stderr)
    for line in rest:
        print(line, file=sys.stderr)


def _print_error(json_logs: bool, message: str, **fields: Any) -> None:
    """The last words of a failed command: ``error: ...`` on stderr, or a JSON log line under
    ``--log-format json`` (every stderr line stays parseable)."""
    if json_logs:
        logging.getLogger("edgegw.cli").error(message, extra=fields)
    else:
        print(f"error: {message}", file=sys.stderr)


def _dump_tasks() -> None:
    """SIGUSR1: print every asyncio task and where it waits (for a gateway that seems stuck)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def _hangup() -> None:
    """SIGHUP where no config can be reloaded (``edgegw ingest``, ``read``, ``demo``): said, not fatal."""
    logging.getLogger("edgegw").warning(
        "SIGHUP received: this command does not reload its configuration; still running with the config "
        "read at start (restart it to apply changes)."
    )


@contextlib.contextmanager
def _one_instance(buffer_path: str) -> Iterator[None]:
    """One ``edgegw run`` per buffer: an exclusive ``flock`` on the buffer file, held for the process's
    life (SQLite locks with ``fcntl`` record locks, which ``flock`` does not touch).  Two gateways on
    one buffer would send each batch twice and take the broker session from each other."""
    import fcntl

    try:
        fd = os.open(buffer_path, os.O_RDWR | os.O_CREAT, 0o644)  # an empty file is an empty database
    except OSError as err:
        raise UsageError(f"cannot open the buffer {buffer_path}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another edgegw run (PID {_flock_holder(fd)}) is using the buffer {buffer_path} (it holds a lock"
                " on the file). Stop it first (systemctl stop edgegw), or give this config its own [buffer] path"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _flock_holder(fd: int) -> str:
    """The PID holding a flock on ``fd``'s file, from /proc/locks (Linux), or "unknown"."""
    inode = os.fstat(fd).st_ino
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode):
                    return parts[4]
    except OSError:
        pass
    return "unknown"


def _run(coro: Coroutine[Any, Any, None], hangup: Callable[[], None] = _hangup) -> None:
    """Run until done or until SIGINT / SIGTERM, then cancel cleanly; SIGHUP calls ``hangup``."""

    async def main() -> None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        loop.add_signal_handler(signal.SIGHUP, hangup)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def _plural(n: int, word: str, sep: str = "") -> str:
    """``sep=","``: thousands separated, for counts a person reads (not for tab-separated listings)."""
    return f"{n} {word}" if n == 1 else f"{n:{sep}} {word}s"


def _say_warnings(warnings: list[ConfigIssue]) -> None:
    """`edgegw check`: one ``warning: LOCATION: message`` line each, on stderr."""
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def _preflight(cfg: Config, source: str, role: Literal["edge", "ingest"]) -> None:
    """Before a role starts: refuse on a file problem (exit 2), and say every weak security setting
    of the role once in the log."""
    from gateway.config import security_warnings
    from gateway.preflight import file_problems

    files = file_problems(cfg, role)
    if files.errors:
        raise ConfigError(files.errors, source)
    log = logging.getLogger("edgegw.security")
    for w in security_warnings(cfg, role):
        log.warning("Weak security: %s: %s", w.location, w.message, extra={"location": w.location})
    for w in files.warnings:
        log.warning("File: %s: %s", w.location, w.message, extra={"location": w.location})


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.config import load, security_warnings
    from gateway.preflight import file_problems

    cfg = load(args.config)
    catalog = cfg.catalog()
    files = file_problems(cfg)
    if args.here and files.errors:
        raise ConfigError(files.errors, args.config)
    _say_warnings(security_warnings(cfg))
    _say_warnings(_notation_warnings(args.config))
    _say_warnings([ConfigIssue(e.location, f"on this machine: {e.message}") for e in files.errors] + files.warnings)
    if args.print_config:  # stdout: the effective config, secrets redacted; the verdict goes to stderr
        import tomli_w

        from gateway.config import redacted

        print(f"# {args.config}: effective configuration (defaults filled in, secrets redacted)")
        print(tomli_w.dumps(redacted(cfg)).rstrip("\n"))
    print(
        f"{args.config}: ok ({_plural(len(cfg.devices), 'device', ',')}, {_plural(len(catalog.points), 'point', ',')}, "
        f"uplink {'configured' if cfg.uplink else 'none'}, ingest {'configured' if cfg.ingest else 'none'})",
        file=sys.stderr if args.print_config else sys.stdout,
    )
    return EXIT_OK


# Every TOML integer in 10001..49999 (the only ones notation_warnings flags) after an `address` key:
# five decimal digits starting 1-4 (underscores between digits allowed), or a 0x / 0o / 0b literal.
_NOTATION_CANDIDATE = re.compile(rb"address[\"']?[ \t]*=[ \t]*\+?(?:[1-4](?:_?[0-9]){4}(?![0-9_])|0[xob])")


def _notation_warnings(path: str) -> list[ConfigIssue]:
    """Modbus addresses written as integers that read like 1-based notation (the file parsed fine).

    They need the file as written (the validated model no longer tells ``30003`` from ``"30003"``),
    i.e. a second TOML parse: 2 s of a 9 s check for 100,000 points.  A file with no integer address
    that could be flagged is not parsed again."""
    from drivers.modbus.config import notation_warnings
    from gateway.core import tomlread

    with open(path, "rb") as f:
        raw = f.read()
    if not _NOTATION_CANDIDATE.search(raw):
        return []
    return notation_warnings(tomlread.loads(raw.decode("utf-8")).get("devices"))


def _listen_arg(text: str) -> str:
    from gateway.listen import parse_listen

    try:
        parse_listen(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


# a reload's config read (a 100,000-point file takes ~3 s): past this its process is stopped, the reload fails
RELOAD_READ_TIMEOUT_S = 300.0


def cmd_run(args: argparse.Namespace) -> int:
    # The config is read in a child process (gateway.prebuild), started before this process imports
    # any config model: it then switches to plain mode (gateway.core.plain), imports the gateway
    # while the child reads, and never imports pydantic (#17).  Only where the process is this
    # command's own and has no model yet: a caller of main([...]) (tests) keeps pydantic's models, and
    # gets the same result with them.
    from gateway.core import plain
    from gateway.reader import in_child, in_new_process
    from gateway.startup import StartupProgress

    plain_mode = plain.enabled() or (getattr(args, "whole_process", False) and "gateway.core.models" not in sys.modules)
    progress = StartupProgress()
    with contextlib.suppress(OSError):
        size = os.path.getsize(args.config)
        if size >= 1 << 20:  # a large config takes a while to read: say so before the first phase ends
            logging.getLogger("edgegw.startup").info("Start-up: reading %s (%.0f MB).", args.config, size / 1e6)

    def read() -> tuple[Prebuilt, list[tuple[str, float]], float, float]:
        """In a child process: the file read and checked, the point table built; back comes the config
        without its point models (the gateway's heap never holds them, #17: gateway.prebuild)."""
        from gateway.config import load
        from gateway.prebuild import prebuild, with_http

        progress.started = time.perf_counter()  # the start's phases count from here, as before the fork
        cfg = with_http(load(args.config, progress), args.http)
        with progress.phase("device layouts and digests made"):
            built = prebuild(cfg)
        return built, progress.phases, progress.started, time.perf_counter()

    imported = [0.0]

    def meanwhile() -> None:
        if plain_mode:
            plain.enable()
        import gateway.app  # noqa: F401 - imported while the child reads

        imported[0] = time.perf_counter()

    built, phases, started, sent = in_child(read, meanwhile=meanwhile)
    from gateway.app import Gateway
    from gateway.prebuild import read_for_reload
    from gateway.preflight import open_files_needed, raise_open_files

    progress.phases, progress.points, progress.started = list(phases), built.points, started
    # the pickled result through the pipe, unpickled here (CLOCK_MONOTONIC: the same clock in both),
    # from when both were ready (this process imported the gateway meanwhile)
    progress.record("config handed over (from the process that read it)", time.perf_counter() - max(sent, imported[0]))
    cfg = built.cfg
    try:
        with progress.phase("pre-flight checks"):
            _preflight(cfg, args.config, "edge")
            raise_open_files(open_files_needed(cfg))  # _preflight refused a hard limit below the need
    except ConfigError as err:  # what the gateway role needs beyond a valid file: name the file too
        raise ConfigError(err.issues, err.source or args.config) from None
    role = cfg.gateway is not None and cfg.uplink is not None and bool(cfg.devices)  # else Gateway() says why

    def reread() -> Prebuilt:
        """SIGHUP: the file again, with the same --http, and the same file checks as at start; read,
        checked and compiled against the running config in a process of its own (gateway.prebuild):
        a fresh interpreter where this one is in plain mode (its forks could not validate)."""
        if plain_mode:
            running, digests = gw.reload_basis()
            prepared = in_new_process(read_for_reload, args.config, args.http, running, digests,
                                      timeout_s=RELOAD_READ_TIMEOUT_S)
        else:
            prepared = in_child(lambda: read_for_reload(args.config, args.http, prepare=gw.prepare_reload),
                                quiet=True, timeout_s=RELOAD_READ_TIMEOUT_S)
        raise_open_files(open_files_needed(prepared.cfg))  # devices added by the reload
        logging.getLogger("edgegw.reload").info("Reloading %s (SIGHUP).", args.config)
        return prepared

    with _one_instance(cfg.buffer.path) if role else contextlib.nullcontext():
        try:
            gw = Gateway(built, progress=progress, reload_source=reread)
        except ConfigError as err:
            raise ConfigError(err.issues, err.source or args.config) from None
        # the gateway keeps what it needs (point table, drivers' layouts, device settings)
        del cfg, built
        progress.done()
        _run(gw.run(), hangup=gw.request_reload)
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    """Check the file like `edgegw check`, then send SIGHUP to the `edgegw run` using its buffer."""
    import fcntl

    from gateway.config import load

    cfg = load(args.config)  # an invalid file: the same located errors as `edgegw check`, exit 2, no signal
    path = cfg.buffer.path
    none = f"no edgegw run is using the buffer {path} of {args.config}: nothing to reload (start it instead)"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        print(f"error: {none}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as err:
        raise UsageError(f"cannot open the buffer {path}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # succeeds only while nobody holds the run's lock
            print(f"error: {none}", file=sys.stderr)
            return EXIT_FAILURE
        except BlockingIOError:
            pid = _flock_holder(fd)
    finally:
        os.close(fd)
    if not pid.isdigit():
        raise UsageError(f"an edgegw run holds the buffer {path}, but its PID is not readable from /proc/locks: "
                         "send it SIGHUP yourself (systemctl reload edgegw)")
    try:
        os.kill(int(pid), signal.SIGHUP)
    except ProcessLookupError:
        print(f"error: {none}", file=sys.stderr)
        return EXIT_FAILURE
    except PermissionError:
        raise UsageError(f"not allowed to signal the edgegw run (PID {pid}) using {path}: run as its user, "
                         "or systemctl reload edgegw") from None
    print(f"asked edgegw run (PID {pid}) to reload {args.config}; its log says what changed "
          "(\"Reloaded config: ...\" or \"Reload refused: ...\")")
    return EXIT_OK


def cmd_read(args: argparse.Namespace) -> int:
    """Poll once (or, with --watch, until Ctrl-C) and show every point; exit 1 unless every device is up."""
    from rich.console import Console

    from gateway.config import load
    from gateway.readout import read_devices

    cfg = load(args.config)
    # a pipe or a file gets the whole table, not one cut to 80 columns
    console = Console() if sys.stdout.isatty() else Console(width=240, no_color=True)
    result: list[Any] = []

    async def go() -> None:
        result.append(await read_devices(cfg, args.device, watch=args.watch, interval_s=args.interval,
                                         console=console))

    _run(go())
    if args.watch:  # ended by Ctrl-C
        return EXIT_OK
    return EXIT_OK if result and result[0].all_good else EXIT_FAILURE


def cmd_status(args: argparse.Namespace) -> int:
    """The running gateway's device health, buffer and uplink, from its status endpoint ([http])."""
    import urllib.error
    import urllib.request

    from rich.console import Console
    from rich.table import Table

    from gateway.config import load, parse_listen

    cfg = load(args.config)
    if cfg.http is None:
        raise UsageError(
            f"{args.config} has no [http] section: `edgegw status` asks the running gateway through its status "
            'endpoint; add [http] listen = "127.0.0.1:9180" and restart it'
        )
    host, port = parse_listen(cfg.http.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/api/status?limit=1"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as r:
            status = json.load(r)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        print(f"error: no gateway answers at {url} ({reason}): is `edgegw run -c {args.config}` running?",
              file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=2))
        return EXIT_OK if status.get("ready") else EXIT_FAILURE
    console = Console() if sys.stdout.isatty() else Console(width=200, no_color=True)
    g = status.get("gateway", {})
    site = f"{g['site_display_name']} ({g.get('site', '')})" if g.get("site_display_name") else g.get("site", "")
    gw = f"{g['display_name']} ({g.get('id', '')})" if g.get("display_name") else g.get("id", "")
    table = Table(header_style="bold", title=f"site {site} · gateway {gw}", title_justify="left")
    for col in ("device", "name", "state", "reason", "bad", "points", "polls", "failed", "last error"):
        table.add_column(col, overflow="fold")
    colour = {"up": "green", "degraded": "yellow", "down": "bold red"}
    for d in status.get("devices", []):
        state = d.get("state", "")
        table.add_row(d["name"], d.get("display_name", ""), f"[{colour.get(state, '')}]{state}[/]" if state in colour
                      else state, d.get("reason", ""), str(d.get("bad_points", "")), str(d.get("points", "")),
                      str(d.get("polls", "")), str(d.get("failed_polls", "")), d.get("last_error", ""))
    console.print(table)
    buf, up = status.get("buffer", {}), status.get("uplink", {})
    if buf.get("open"):
        console.print(f"buffer: {buf['batches']} batches ({buf['points']} points) pending, {buf['fill']:.1%} of "
                      f"max_bytes, oldest {buf.get('oldest_age_s') or 0:.0f} s, {buf['dropped_points']} points dropped")
    else:
        console.print(f"buffer: unavailable ({buf.get('error', '')})")
    console.print(f"uplink {up.get('broker', '')}: " + ("connected" if up.get("connected")
                  else f"not connected ({up.get('last_error') or 'connecting'})"))
    not_ready = [c for c in status.get("checks", []) if not c.get("ok")]
    console.print("ready" if status.get("ready") else "not ready: " + "; ".join(
        f"{c['name']}: {c['detail']}" for c in not_ready))
    return EXIT_OK if status.get("ready") else EXIT_FAILURE


def cmd_sim(args: argparse.Namespace) -> int:
    """A firmware stub as a standalone simulated PLC (Modbus TCP, RTU over TCP, RTU on a serial port)."""
    from hil.iec104_server import STATIONS
    from hil.sim import METER_SETS, OPCUA_PLANTS, S7_PLCS, STUBS, device_toml, serve, serve_opcua

    if args.list or args.name is None:
        for name, (what, _, points) in STUBS.items():
            print(f"{name}\t{what}, {_plural(len(points()), 'point')}")
        for name, (what, _) in OPCUA_PLANTS.items():
            print(f"{name}\t{what}")
        for name, (what, _) in METER_SETS.items():
            print(f"{name}\t{what}")
        for name, what in STATIONS.items():
            print(f"{name}\t{what}")
        for name, what in S7_PLCS.items():
            print(f"{name}\t{what}")
        return EXIT_OK if args.list else EXIT_USAGE
    if args.name in METER_SETS:
        return _sim_meters(args)
    if args.name in STATIONS:
        return _sim_iec104(args)
    if args.name in S7_PLCS:
        return _sim_s7(args)
    if args.name in OPCUA_PLANTS:
        if args.print_config:
            raise UsageError(f"{args.name} is an OPC UA plant: start it, then `edgegw browse ENDPOINT --emit-config`")

        def announce(endpoint: str) -> None:
            print(f"Serving {args.name} on {endpoint} (security None); Ctrl-C stops.", flush=True)

        _run(serve_opcua(args.name, port=args.port, tick_s=args.tick_s, ready=announce))
        return EXIT_OK
    if args.name not in STUBS:
        raise UsageError(f"no simulator named {args.name!r}; `edgegw sim --list` shows: "
                         f"{', '.join([*STUBS, *OPCUA_PLANTS, *METER_SETS, *STATIONS, *S7_PLCS])}")
    if args.transport == "rtu" and not args.serial_port:
        raise UsageError("--transport rtu needs --serial-port (e.g. one end of `socat pty,raw,echo=0 pty,raw,echo=0`)")
    if args.print_config:
        print(device_toml(args.name, args.transport, args.host, args.port, args.serial_port or "", args.unit), end="")
        return EXIT_OK

    def ready(plc: Any) -> None:
        where = plc.serial_port if args.transport == "rtu" else f"{args.host}:{plc.port}"
        print(f"Serving {args.name} (seed {args.seed}) as unit {args.unit} over {args.transport} on {where};"
              " Ctrl-C stops.", flush=True)

    _run(serve(args.name, transport=args.transport, host=args.host, port=args.port, serial_port=args.serial_port or "",
               unit=args.unit, seed=args.seed, tick_s=args.tick_s, ready=ready))
    return EXIT_OK


def _sim_iec104(args: argparse.Namespace) -> int:
    """The IEC 104 substation (controlled station, CA 1) on TCP; 2404 is the protocol's port."""
    from hil.iec104_server import serve_station, station_toml

    port = 2404 if args.port == 5020 else args.port  # 5020 is the Modbus simulators' default
    if args.transport != "tcp":
        raise UsageError("an IEC 104 station speaks TCP only (leave out --transport)")
    if args.print_config:
        print(station_toml(args.host, port), end="")
        return EXIT_OK

    def ready(station: Any) -> None:
        print(f"Serving {args.name} (seed {args.seed}, CA 1) on {args.host}:{station.port}; Ctrl-C stops.", flush=True)

    _run(serve_station(host=args.host, port=port, seed=args.seed, tick_s=args.tick_s, ready=ready))
    return EXIT_OK


def _sim_meters(args: argparse.Namespace) -> int:
    """DL/T 645 meters on one line: over TCP (a serial device server) or on a serial port (``--transport rtu``)."""
    from hil.sim import meters_toml, serve_meters

    if args.transport == "rtu" and not args.serial_port:
        raise UsageError("--transport rtu needs --serial-port (e.g. one end of `socat pty,raw,echo=0 pty,raw,echo=0`)")
    if args.print_config:
        print(meters_toml(args.name, args.transport, args.host, args.port, args.serial_port or "", args.seed), end="")
        return EXIT_OK

    def ready(sim: Any) -> None:
        where = args.serial_port if args.transport == "rtu" else f"{args.host}:{sim.port}"
        print(f"Serving {args.name} (seed {args.seed}), meters {', '.join(sim.meters)}, on {where};"
              " Ctrl-C stops.", flush=True)

    _run(serve_meters(args.name, transport=args.transport, host=args.host, port=args.port,
                      serial_port=args.serial_port or "", seed=args.seed, tick_s=args.tick_s, ready=ready))
    return EXIT_OK


def _ingest_config(args: argparse.Namespace, what: str) -> Any:
    from gateway.config import load

    if args.config is None:
        raise UsageError(f"`edgegw {what}` needs -c FILE (the ingest's config)")
    cfg = load(args.config)
    if cfg.ingest is None:
        raise ConfigError([ConfigIssue("ingest", f"required for `edgegw {what}`")], args.config)
    return cfg


def _ingest_section(args: argparse.Namespace, what: str) -> Any:
    return _ingest_config(args, what).ingest


def cmd_ingest(args: argparse.Namespace) -> int:
    from gateway.ingest import Ingest
    from gateway.prebuild import with_http

    cfg = with_http(_ingest_config(args, "ingest"), args.http)
    _preflight(cfg, args.config, "ingest")
    assert cfg.ingest is not None
    _run(Ingest(cfg.ingest, http_listen=cfg.http.listen if cfg.http else None).run())
    return EXIT_OK


def _dead_letter_store(args: argparse.Namespace, *, must_exist: bool) -> Any:
    """The configured store, or None when it does not exist yet (nothing was ever dead-lettered)."""
    from pathlib import Path

    from gateway.deadletter import DeadLetterStore

    section = _ingest_section(args, f"ingest dead-letters {args.dead_letters_command}")
    if not Path(section.dead_letter_path).exists():
        if must_exist:
            raise UsageError(f"there is no dead-letter store at {section.dead_letter_path}")
        return section, None
    return section, DeadLetterStore(section.dead_letter_path, section.dead_letter_max_bytes)


def _one_line(text: str) -> str:
    """A field of a tab-separated line (a reason may quote InfluxDB's multi-line answer)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def cmd_dead_letters_list(args: argparse.Namespace) -> int:
    """Read-only: id, time, topic, kind, points, reason per entry, and the store's totals."""
    from gateway.deadletter_admin import list_record

    section, store = _dead_letter_store(args, must_exist=False)
    rows = [] if store is None else [list_record(e) for e in store.entries()]
    total = sum(r["bytes"] for r in rows)
    if store is not None:
        store.close()
    summary = {"count": len(rows), "bytes": total, "max_bytes": section.dead_letter_max_bytes,
               "points": sum(r["points"] for r in rows), "path": section.dead_letter_path}
    if args.json:
        print(json.dumps({**summary, "entries": rows}, indent=2))
        return EXIT_OK
    for r in rows:
        print(f"{r['id']}\t{r['time']}\t{_one_line(r['topic'])}\t{r['kind']}\t{r['points']}\t{_one_line(r['reason'])}")
    print(f"{_plural(len(rows), 'dead letter')} ({_plural(summary['points'], 'point')}), {total} of "
          f"{section.dead_letter_max_bytes} bytes used in {section.dead_letter_path}", file=sys.stderr)
    return EXIT_OK


def cmd_dead_letters_export(args: argparse.Namespace) -> int:
    """Read-only: JSON lines, every field, payload as base64, decoded points or event."""
    from gateway.deadletter_admin import export_record

    _, store = _dead_letter_store(args, must_exist=False)
    n = 0
    missing = len(set(args.id or ()))
    try:
        out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115 (closed below)
    except OSError as err:
        if store is not None:
            store.close()
        raise UsageError(f"cannot write {args.out}: {err.strerror}") from None
    try:
        if store is not None:
            found = set()
            for e in store.entries(args.id):
                found.add(e.id)
                out.write(json.dumps(export_record(e), ensure_ascii=True).encode() + b"\n")
                n += 1
            missing = len(set(args.id or ()) - found)
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
        if store is not None:
            store.close()
    print(f"exported {_plural(n, 'dead letter')} to {args.out or 'stdout'}"
          + (f"; {missing} of the ids asked for are not in the store" if missing else ""), file=sys.stderr)
    return EXIT_FAILURE if missing else EXIT_OK


def cmd_dead_letters_replay(args: argparse.Namespace) -> int:
    """Write each entry again; delete what is written, replace what is refused again; exit 1 if any is."""
    from gateway.deadletter_admin import replay

    if not args.all and not args.id:
        raise UsageError("give --id N ... or --all")
    section, store = _dead_letter_store(args, must_exist=True)
    try:
        report = asyncio.run(replay(section, store, None if args.all else args.id, give_up_after_s=args.give_up_after))
    finally:
        store.close()
    for o in report.outcomes:
        if o.ok:
            print(f"{o.id}\twritten\t{o.topic}\t{_plural(o.written, 'row')} written; entry deleted")
        else:
            print(f"{o.id}\trefused\t{o.topic}\t{_plural(o.written, 'row')} written; still refused "
                  f"(a new entry replaces it): {'; '.join(o.refused)}")
    for i in report.missing:
        print(f"{i}\tmissing\tno such dead letter")
    written = sum(o.ok for o in report.outcomes)
    print(f"replayed {_plural(len(report.outcomes), 'dead letter')}: {written} written and deleted, "
          f"{len(report.outcomes) - written} still refused", file=sys.stderr)
    if report.gave_up:
        print(f"error: stopped: {report.gave_up}; the entries not replayed are unchanged", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILURE


def cmd_dead_letters_delete(args: argparse.Namespace) -> int:
    _, store = _dead_letter_store(args, must_exist=True)
    try:
        present = set(store.ids())
        gone = [i for i in args.id if i in present]
        store.delete(gone)
    finally:
        store.close()
    missing = sorted(set(args.id) - present)
    print(f"deleted {_plural(len(set(gone)), 'dead letter')}"
          + (f"; not in the store: {', '.join(map(str, missing))}" if missing else ""), file=sys.stderr)
    return EXIT_FAILURE if missing else EXIT_OK


def cmd_hil_run(args: argparse.Namespace) -> int:
    """A HIL fault campaign (hil/campaign.py): exit 0 when the scenario's pass rule holds, 1 when not."""
    from pathlib import Path

    from hil.campaign import run_campaign
    from hil.netns import HilUnavailable
    from hil.report import markdown_table, summary
    from hil.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    if args.duration is not None:
        scenario = scenario.with_duration(args.duration)
    report = Path(args.report or f"hil-report-{Path(args.scenario).stem}")
    try:
        result = run_campaign(scenario, report)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"interrupted: every process of the run was stopped; logs in {report}/logs/", file=sys.stderr)
        return 130
    except HilUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(markdown_table([summary(result)]), end="")
    print(("passed" if result.passed else "FAILED: " + "; ".join(result.reasons)) + f" (report in {report}/)")
    return EXIT_OK if result.passed else EXIT_FAILURE


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    _run(run_demo(duration_s=args.duration, data_dir=args.data_dir, influx_url=args.influx_url,
                  influx_db=args.influx_db, broker=args.broker, live=not args.plain, http=args.http))
    return EXIT_OK


def _buffer_cfg(args: argparse.Namespace) -> Any:
    from gateway.config import BufferConfig, load

    if args.config is None and getattr(args, "file", None) is None:
        raise UsageError("give -c FILE (the gateway config) or --file BUFFER_DB")
    bc = load(args.config).buffer if args.config else BufferConfig()
    if getattr(args, "file", None):
        bc = bc.model_copy(update={"path": args.file})
    if os.path.isdir(bc.path):
        raise UsageError(f"{bc.path} is a directory, not a buffer file")
    return bc


def cmd_buffer_stats(args: argparse.Namespace) -> int:
    """Read-only: safe while the gateway runs; never changes the file."""
    from gateway.buffer import alarm_buffer_path, open_buffer

    bc = _buffer_cfg(args)
    buf = open_buffer(bc, readonly=True)
    try:
        out: dict[str, Any] = asdict(buf.stats())
    finally:
        buf.close()
    if not getattr(args, "file", None) and alarm_buffer_path(bc.path).exists():  # the config's alarm buffer too
        alarms = open_buffer(bc, readonly=True, alarms=True)
        try:
            out["alarm_buffer"] = asdict(alarms.stats())
        finally:
            alarms.close()
    print(json.dumps(out, indent=2))
    return EXIT_OK


def cmd_buffer_export(args: argparse.Namespace) -> int:
    """Dump pending (or quarantined) batches, decoded, without removing them."""
    from gateway.buffer import open_buffer
    from gateway.buffer.export import export

    if args.alarms and args.file:
        print("error: --alarms opens the config's alarm buffer; with --file, name that file instead", file=sys.stderr)
        return EXIT_USAGE
    from gateway.progress import progress_bar

    buf = open_buffer(_buffer_cfg(args), readonly=True, alarms=args.alarms)
    try:
        total = None if args.quarantined else buf.pending_batches
        if args.out:
            what = f"exporting to {os.path.basename(args.out)}"
            with open(args.out, "wb") as out, progress_bar(what, total, "batches") as step:
                summary = export(buf, out, fmt=args.format, quarantined=args.quarantined, progress=step)
        elif sys.stdout.isatty():  # the data goes to the terminal: no bar drawn over it
            summary = export(buf, sys.stdout.buffer, fmt=args.format, quarantined=args.quarantined)
            sys.stdout.flush()
        else:  # `edgegw buffer export ... > dump.jsonl`: the bar on stderr
            with progress_bar("exporting", total, "batches") as step:
                summary = export(buf, sys.stdout.buffer, fmt=args.format, quarantined=args.quarantined,
                                 progress=step)
            sys.stdout.flush()
    finally:
        buf.close()
    print(summary.describe(args.out or "stdout"), file=sys.stderr)
    if buf.damaged is not None:
        print(f"note: the file is damaged ({buf.damaged}); rows on damaged pages were skipped", file=sys.stderr)
    return EXIT_OK


def cmd_certs_create(args: argparse.Namespace) -> int:
    from drivers.opcua.certs import Pki

    pki = Pki(args.pki_dir)
    if pki.own_cert.exists() and not args.force:
        print(f"error: {pki.own_cert} exists (use --force to replace it)", file=sys.stderr)
        return EXIT_USAGE
    hosts = tuple(args.hostname) if args.hostname else ()
    own = pki.create_own(args.application_uri, common_name=args.common_name, hostnames=hosts, days=args.days)
    print(f"certificate {own.cert_path}\nprivate key {own.key_path}\napplication uri {own.application_uri}")
    return EXIT_OK


def cmd_browse(args: argparse.Namespace) -> int:
    from drivers.opcua.browse import emit_config, format_table
    from drivers.opcua.config import SecurityMode, SecurityPolicy, TrustPolicy
    from drivers.opcua.driver import SecuritySettings, browse
    from gateway.core.errors import DeviceError

    if "://" not in args.endpoint:
        raise UsageError(f"{args.endpoint!r} is not an OPC UA endpoint URL: write opc.tcp://{args.endpoint}")
    if not args.endpoint.startswith("opc.tcp://"):
        raise UsageError(f"{args.endpoint!r}: only opc.tcp:// endpoints are supported")
    security = None
    if args.security != "None":
        if (args.cert is None) != (args.key is None):
            print("error: --cert and --key go together", file=sys.stderr)
            return EXIT_USAGE
        security = SecuritySettings(
            SecurityPolicy(args.security), SecurityMode(args.mode), args.pki_dir,
            TrustPolicy.TRUST_ON_FIRST_USE if args.trust_on_first_use else TrustPolicy.TRUST_LIST,
            args.cert, args.key,
        )
    if (args.user_cert is None) != (args.user_key is None):
        raise UsageError("--user-cert and --user-key go together")
    password = None
    if args.user is not None:
        password = os.environ.get(args.password_env)
        if password is None:
            raise UsageError(f"--user {args.user}: set the password in the environment variable {args.password_env}"
                             " (--password-env names another); it is never a command-line argument")
    try:
        found = asyncio.run(browse(args.endpoint, depth=args.depth, pattern=args.filter, security=security,
                                   username=args.user, password=password, user_certificate=args.user_cert,
                                   user_private_key=args.user_key))
    except DeviceError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(emit_config(args.endpoint, found, security=security, range_check=args.range_check)
          if args.emit_config else format_table(found))
    return EXIT_OK


def cmd_bench_opcua(args: argparse.Namespace) -> int:
    import shutil

    from drivers.opcua.bench import main as bench_main
    from hil.node_opcua_peer import NODE_DIR

    if args.server == "node-opcua":  # say what is missing in one line, before any server is started
        if shutil.which("node") is None:
            raise UsageError("`edgegw bench opcua` needs Node.js (node) for its node-opcua server; or --server asyncua")
        if not (NODE_DIR / "node_modules" / "node-opcua").is_dir():
            raise UsageError("node-opcua is not installed: run `npm ci` in hil/node_opcua (or use --server asyncua)")

    bench_main(args.items, args.json, args.window, not args.no_restart, args.server, args.runs, args.profile)
    return EXIT_OK


def _try_quota(cores: float) -> None:
    """A dry run of `--cpu-quota`: one clear line before any simulated PLC starts."""
    from gateway.cpuquota import QuotaError, confine

    try:
        confine(cores)()
    except QuotaError as err:
        raise UsageError(str(err)) from None


def cmd_bench_modbus(args: argparse.Namespace) -> int:
    from drivers.modbus.bench import main as bench_main

    if args.points is not None:
        from drivers.modbus.bench import BenchError, main_scale

        if args.cpu_quota is not None or args.profile is not None:
            raise UsageError("--points runs `edgegw run` in a process of its own: no --cpu-quota or --profile")
        try:
            main_scale(args.points, args.registers, args.json, args.seconds, args.workers, args.runs)
        except BenchError as err:
            raise UsageError(str(err)) from None
        return EXIT_OK

    confine = None
    if args.cpu_quota is not None:
        from functools import partial

        from gateway.cpuquota import confine as quota

        _try_quota(args.cpu_quota)
        confine = partial(quota, args.cpu_quota)
    bench_main(args.devices, args.registers, args.json, args.seconds, args.workers, args.profile, confine,
               args.cpu_quota)
    return EXIT_OK


def cmd_bench_iec104(args: argparse.Namespace) -> int:
    from drivers.iec104.bench import main as bench_main

    bench_main(args.points, args.rate, args.json, args.seconds)
    return EXIT_OK


def cmd_bench_dlt645(args: argparse.Namespace) -> int:
    from drivers.dlt645.bench import main as bench_main

    bench_main(args.lines, args.meters, args.json, args.seconds, args.poll_interval_s)
    return EXIT_OK


def cmd_bench_s7(args: argparse.Namespace) -> int:
    from drivers.s7.bench import BenchError
    from drivers.s7.bench import main as bench_main

    try:
        bench_main(args.devices, args.points, args.json, args.seconds, args.workers, args.runs)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_bench_wire(args: argparse.Namespace) -> int:
    from gateway.wire_bench import main as bench_main

    bench_main(args.json, args.runs, args.e2e_seconds)
    return 0


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from gateway import bench
    from gateway.ingest_bench import bench_ingest

    bench.main("ingest", bench_ingest(args.store, args.points, args.batch_points, args.runs, args.wire,
                                      args.writes_in_flight), args.json)
    return EXIT_OK


def cmd_bench_uplink(args: argparse.Namespace) -> int:
    from gateway import bench

    if getattr(args, "sync_delay_ms", None):
        bench.with_sync_delay(args.sync_delay_ms, sys.argv[1:])  # re-executes with the preload library
    if args.bench_command == "pipeline":
        coro = bench.bench_pipeline(args.points, args.points_per_poll, args.batch_points, args.runs,
                                    args.durability, args.burn_core)
    elif args.bench_command == "overload":
        coro = bench.bench_overload(args.start, args.factor, args.steps, args.duration, args.points_per_poll,
                                    args.runs, args.durability, args.max_bytes, args.lag_warn_s)
    elif args.bench_command == "chain":
        if args.cpu_quota is not None:
            _try_quota(args.cpu_quota)
        coro = bench.bench_chain(args.devices, args.registers, args.seconds, args.workers, args.durability, args.runs,
                                 args.cpu_quota)
    elif args.bench_command == "latency":
        coro = bench.bench_latency(args.rate, args.duration, args.points_per_poll, args.linger_ms, args.runs,
                                   args.burn_core)
    else:
        coro = bench.bench_drain(args.points, args.rate, args.points_per_poll, args.batch_points, args.linger_ms,
                                 args.backlog_share, args.runs, args.max_inflight)
    bench.main(args.bench_command, coro, args.json)
    return EXIT_OK


def _sim_s7(args: argparse.Namespace) -> int:
    """An S7 PLC (firmware_stubs/s7_hoist.py) on python-snap7's S7 server."""
    from hil.sim import s7_device_toml, serve_s7

    if args.print_config:
        print(s7_device_toml(args.name, args.host, args.port), end="")
        return EXIT_OK

    def ready(port: int) -> None:
        print(f"Serving {args.name} (seed {args.seed}) over S7comm on {args.host}:{port}; Ctrl-C stops.", flush=True)

    _run(serve_s7(args.name, host=args.host, port=args.port, seed=args.seed, tick_s=args.tick_s, ready=ready))
    return EXIT_OK


def cmd_import_tags(args: argparse.Namespace) -> int:
    """The tag list of a driver that registered one (DriverSpec.tags) -> ``[[devices.points]]`` TOML."""
    from pathlib import Path

    from gateway.driver_registry import DRIVERS

    if args.protocol == "s7":  # a TIA Portal export: XLSX (binary) or CSV, with warnings for rows left out
        return _import_s7_tags(args)
    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise UsageError(f"{args.file}: cannot read the tag list: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UsageError(
            f"{args.file}: not UTF-8 text ({err.reason} at byte {err.start}): export the sheet as CSV UTF-8"
        ) from None
    if args.protocol == "dlt645":  # a list of meters, one [[devices]] each: not points under one device
        return _import_meters(args, text)
    tags = next(s.tags for s in DRIVERS if s.name == args.protocol and s.tags is not None)
    lines: list[int] = []
    row_issues: list[ConfigIssue] = []
    points = tags.read(text, args.file, lines, row_issues)
    _check_imported(tags.device(points), lines, args.file, row_issues)
    toml = tags.to_toml(points)
    if args.output:
        Path(args.output).write_text(toml, encoding="utf-8")
    else:
        print(toml, end="")
    return EXIT_OK


def _import_s7_tags(args: argparse.Namespace) -> int:
    """A TIA Portal PLC tag table (XLSX or CSV) -> [[devices.points]] of an S7 device."""
    from pathlib import Path

    from drivers.s7.tags import import_device, points_to_toml, read_table, rows_to_points

    try:
        data = Path(args.file).read_bytes()
    except OSError as err:
        raise UsageError(f"{args.file}: cannot read the tag table: {err.strerror}") from None
    lines: list[int] = []
    warnings: list[ConfigIssue] = []
    points = rows_to_points(read_table(data, args.file), args.file, lines, warnings)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    _check_imported(import_device(points), lines, args.file)
    toml = points_to_toml(points)
    if args.output:
        Path(args.output).write_text(toml, encoding="utf-8")
    else:
        print(toml, end="")
    return EXIT_OK


def _import_meters(args: argparse.Namespace, text: str) -> int:
    """A DL/T 645 meter point list: one [[devices]] per meter address, checked as `edgegw check` would."""
    import re
    from pathlib import Path

    from drivers.dlt645.tags import csv_to_meters, meters_to_toml
    from gateway.config import parse

    rows: dict[str, list[int]] = {}
    meters = csv_to_meters(text, args.file, rows)
    if args.server:
        host, _, port = args.server.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--server {args.server!r}: give HOST:PORT of the serial device server")
        line: dict[str, Any] = {"type": "dlt645_tcp", "host": host, "port": int(port)}
    else:
        line = {"type": "dlt645", "port": args.serial_port or "/dev/ttyUSB0"}
    toml = meters_to_toml(meters, line)
    try:
        from gateway.core import tomlread

        parse({"gateway": {"id": "import", "site": "import", "enterprise_prefix": "88.0.0"},
               **tomlread.loads(toml)})
    except ConfigError as err:
        addresses = list(meters)
        issues = []
        for issue in err.issues:
            m = re.match(r"devices\[(\d+)\]\.points\[(\d+)\]\.?(.*)", issue.location)
            where = args.file
            if m:
                where = f"{args.file}:{rows[addresses[int(m.group(1))]][int(m.group(2))]}" + (
                    f": {m.group(3)}" if m.group(3) else "")
            issues.append(ConfigIssue(where, f"{issue.message} (what `edgegw check` would say)"))
        raise ConfigError(issues, args.file) from None
    if args.output:
        Path(args.output).write_text(toml, encoding="utf-8")
    else:
        print(toml, end="")
    return EXIT_OK


def _check_imported(device: dict[str, Any], lines: list[int], source: str,
                    row_issues: list[ConfigIssue] | None = None) -> None:
    """What `edgegw check` would say about these points under a device: identifier codes, units,
    class presets and thresholds, located at the row of the tag list, after the problems of single
    rows (``row_issues``), all in one error (exit 2, nothing written)."""
    import re

    from gateway.config import parse

    data = {"gateway": {"id": "import", "site": "import", "enterprise_prefix": "88.0.0"}, "devices": [device]}
    issues = list(row_issues or [])
    try:
        parse(data)
    except ConfigError as err:
        for issue in err.issues:
            m = re.match(r"devices\[0\]\.points\[(\d+)\]\.?(.*)", issue.location)
            where = source
            if m:
                where = f"{source}:{lines[int(m.group(1))]}" + (f": {m.group(2)}" if m.group(2) else "")
            message = re.sub(r"devices\[0\]\.points\[(\d+)\]\.?(\w*)",
                             lambda n: f"the row on line {lines[int(n.group(1))]}", issue.message)
            issues.append(ConfigIssue(where, f"{message} (what `edgegw check` would say)"))
    if issues:
        issues.sort(key=lambda i: _row_of(i.location))
        raise ConfigError(issues, source) from None


def _row_of(location: str) -> int:
    """The line of a ``FILE:LINE: column`` location (0 for the file as a whole)."""
    parts = location.rsplit(":", 2)
    for part in parts[1:]:
        if part.strip().isdigit():
            return int(part)
    return 0


def cmd_ids_validate(args: argparse.Namespace) -> int:
    """One verdict line per code; exit 1 if any is invalid, so scripts can gate on it."""
    from gateway.core.identifiers import Profile, verdict

    profile = Profile(args.profile)
    bad = 0
    for code in args.codes:
        v = verdict(code, profile)
        bad += not v.ok
        print(f"{'ok' if v.ok else 'INVALID'}\t{v.kind}\t{code}\t{v.detail}")
    return EXIT_FAILURE if bad else EXIT_OK


def cmd_ids_list(args: argparse.Namespace) -> int:
    """Every point's resolved code (given or minted) with its device code and grade, as TSV or JSON."""
    from gateway.config import load

    catalog = load(args.config).catalog()
    rows = [
        {"point": p.key, "code": p.code, "device_code": p.device_code, "data_grade": p.data_grade,
         "data_domain": p.data_domain, "class": p.point_class, "unit": p.unit}
        for p in catalog.points
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for r in rows:
            print("\t".join(str(r[k]) for k in ("point", "code", "device_code", "data_grade")))
    return EXIT_OK


def cmd_ids_registry(args: argparse.Namespace) -> int:
    """export (offline: the batchCreate body), register (create / update / leave; exit 1 if any failed),
    resolve (per code; exit 1 if any fails)."""
    from gateway.config import load
    from gateway.core.errors import ConfigIssue, RegistryError
    from gateway.registry import describe_changes, make_client, records

    cfg = load(args.config)
    if args.ids_command == "export":
        template = cfg.registry.template_version if cfg.registry else "1.0"
        recs = records(cfg.catalog(), cfg.gateway.code if cfg.gateway else None)
        print(json.dumps([r.snms(template) for r in recs], ensure_ascii=False, indent=2))
        return EXIT_OK
    if cfg.registry is None:
        raise ConfigError([ConfigIssue("registry", f"required for `edgegw ids {args.ids_command}`")], args.config)
    client = make_client(cfg.registry)
    try:
        if args.ids_command == "register":
            from gateway.progress import progress_bar

            recs = records(cfg.catalog(), cfg.gateway.code if cfg.gateway else None)
            with progress_bar("registering", len(recs), "codes") as step:
                rep = client.register(recs, progress=step)
            for handle, diff in rep.changes.items():
                print(f"UPDATED\t{handle}\t{describe_changes(diff)}")
            for handle, msg in rep.failed:
                print(f"FAILED\t{handle}\t{msg}")
            print(f"{len(recs)} codes: {rep.summary()} ({rep.batches} create batch(es), "
                  f"{rep.update_batches} update batch(es), {rep.retries_504} retries after 504)")
            return EXIT_OK if rep.ok else EXIT_FAILURE
        bad = 0
        for code in args.codes:
            try:
                got = client.resolve(code)
            except RegistryError as err:
                if "unreachable" in str(err) or "not JSON" in str(err):
                    raise
                bad += 1
                print(f"{code}\tERROR\t{err}")
                continue
            print(f"{code}\t" + "\t".join(f"{k}={v}" for k, v in sorted(got.values.items())))
        return EXIT_FAILURE if bad else EXIT_OK
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE


def _log_format_arg(s: argparse.ArgumentParser) -> None:
    """`edgegw run --log-format json` as well as `edgegw --log-format json run` (SUPPRESS: the
    sub-command's default does not overwrite the top-level choice)."""
    s.add_argument("--log-format", choices=[f.value for f in LogFormat], default=argparse.SUPPRESS,
                   help="text (default) or json: one object per line on stderr (also --log-format before the "
                        f"command, or ${ENV_VAR})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgegw", description="Edge telemetry gateway for mines and plants.")
    p.add_argument("--version", action="version", version=f"edgegw {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-format", choices=[f.value for f in LogFormat], default=None,
                   help=f"log lines on stderr: text (sentences, the default) or json (one object per line, with "
                        f"the structured fields); default ${ENV_VAR}, else text")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("check", help="validate a config file without connecting to anything")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--here", action="store_true",
                   help="the config is for this machine: a problem with a file it names (buffer directory, TLS, "
                        "key and password files) is an error, not a warning")
    s.add_argument("--print-config", action="store_true",
                   help="print the effective config as TOML (defaults filled in, secrets redacted)")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("run", help="run the gateway (edge role)")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--http", type=_listen_arg, default=None, metavar="HOST:PORT",
                   help="serve /healthz, /readyz, /metrics and the status page here (overrides [http])")
    _log_format_arg(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("reload", help="check a config file, then make the running `edgegw run` using its buffer "
                                      "re-read it (SIGHUP) without stopping unchanged devices")
    s.add_argument("-c", "--config", required=True)
    s.set_defaults(func=cmd_reload)

    s = sub.add_parser("read", help="poll the devices once (or --watch) and show every point's value, unit, "
                                    "quality, reason and code; no broker, no buffer")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("device", nargs="*", help="only these devices (default: every enabled one)")
    s.add_argument("--watch", action="store_true", help="poll again every --interval seconds until Ctrl-C")
    s.add_argument("--interval", type=float, default=1.0, metavar="S", help="seconds between polls with --watch")
    s.set_defaults(func=cmd_read)

    s = sub.add_parser("status", help="the running gateway's device health, buffer and uplink (via its [http] "
                                      "endpoint); exit 1 unless ready")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--json", action="store_true", help="the endpoint's whole answer as JSON")
    s.add_argument("--timeout", type=float, default=5.0, metavar="S")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("sim", help="serve a firmware stub as a simulated Modbus PLC, OPC UA server or DL/T 645 "
                       "meters (--list)")
    s.add_argument("name", nargs="?", help="e.g. ventilation-fan")
    s.add_argument("--list", action="store_true", help="the simulators there are")
    s.add_argument("--transport", choices=("tcp", "rtu-over-tcp", "rtu"), default="tcp")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5020, help="TCP port (default 5020; 0: any free port)")
    s.add_argument("--serial-port", default=None, help="--transport rtu: the serial device (19200 8N1)")
    s.add_argument("--unit", type=int, default=1, help="unit id (default 1)")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--tick-s", type=float, default=1.0, help="seconds per stub tick (0: frozen at tick 0)")
    s.add_argument("--print-config", action="store_true", help="print the [[devices]] block for it and exit")
    s.set_defaults(func=cmd_sim)

    s = sub.add_parser("ingest", help="run the central ingest role (MQTT -> InfluxDB); dead letters")
    s.add_argument("-c", "--config", default=None, help="the ingest's config (required)")
    s.add_argument("--http", type=_listen_arg, default=None, metavar="HOST:PORT",
                   help="serve /healthz, /readyz, /metrics and the status page here (overrides [http])")
    _log_format_arg(s)
    s.set_defaults(func=cmd_ingest)
    isub = s.add_subparsers(dest="ingest_command", required=False)
    d = isub.add_parser("dead-letters", help="what the ingest could not write: list, export, replay, delete")
    dsub = d.add_subparsers(dest="dead_letters_command", required=True)
    i = dsub.add_parser("list", help="id, time, topic, kind, points, reason of each entry and the totals (read-only)")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_dead_letters_list)
    i = dsub.add_parser("export", help="entries as JSON lines: every field, payload as base64, decoded (read-only)")
    i.add_argument("--out", default=None, help="write here instead of stdout")
    i.add_argument("--id", type=int, nargs="+", default=None, metavar="N", help="only these entries")
    i.set_defaults(func=cmd_dead_letters_export)
    i = dsub.add_parser("replay", help="write entries again: delete what is written, keep what is refused again "
                                       "(exit 1 if any is)")
    sel = i.add_mutually_exclusive_group()
    sel.add_argument("--id", type=int, nargs="+", default=None, metavar="N")
    sel.add_argument("--all", action="store_true")
    i.add_argument("--give-up-after", type=float, default=60.0, metavar="S",
                   help="stop when InfluxDB (or the dead-letter file) cannot take writes for S seconds (default 60)")
    i.set_defaults(func=cmd_dead_letters_replay)
    i = dsub.add_parser("delete", help="delete entries (export them first)")
    i.add_argument("--id", type=int, nargs="+", required=True, metavar="N")
    i.set_defaults(func=cmd_dead_letters_delete)
    for name in ("list", "export", "replay", "delete"):
        # SUPPRESS: `edgegw ingest -c F dead-letters list` keeps the -c given before the sub-command
        dsub.choices[name].add_argument("-c", "--config", default=argparse.SUPPRESS, help="the ingest's config")

    s = sub.add_parser("hil", help="hardware-in-the-loop fault campaigns (docs/hil.md)")
    hsub = s.add_subparsers(dest="hil_command", required=True)
    h = hsub.add_parser("run", help="run a scenario: PLCs, broker, InfluxDB, gateway, ingest, faults; judge the rows")
    h.add_argument("scenario", help="a scenario TOML file (see hil/scenarios/)")
    h.add_argument("--report", default=None, metavar="DIR", help="report directory (default hil-report-<name>/)")
    h.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stretch the scenario (and its fault timeline) to S seconds: a soak")
    h.set_defaults(func=cmd_hil_run)

    s = sub.add_parser("demo", help="simulated mine -> gateway -> broker -> ingest, live in the terminal")
    s.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: until Ctrl-C)")
    s.add_argument("--data-dir", default="demo-data", help="buffer and line-protocol output (default demo-data/)")
    s.add_argument("--broker", default=None, help="HOST:PORT of an MQTT broker (default: an in-process one)")
    s.add_argument("--influx-url", default=None, help="InfluxDB 1.x URL (default: write demo-data/telemetry.lp)")
    s.add_argument("--influx-db", default="edgegw")
    s.add_argument("--plain", action="store_true", help="print lines instead of a live table")
    s.add_argument("--http", type=_listen_arg, default=None, metavar="HOST:PORT",
                   help="serve /healthz, /readyz, /metrics and the status page here (e.g. 127.0.0.1:9180)")
    _log_format_arg(s)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("buffer", help="inspect the durable buffer")
    bsub = s.add_subparsers(dest="buffer_command", required=True)
    b = bsub.add_parser("stats", help="pending batches, points, bytes and counters as JSON (read-only)")
    b.add_argument("-c", "--config", default=None)
    b.add_argument("--file", default=None, help="a buffer file instead of [buffer].path (e.g. a *.corrupt-* copy)")
    b.set_defaults(func=cmd_buffer_stats)
    b = bsub.add_parser("export", help="dump pending batches decoded, without removing them (read-only)")
    b.add_argument("-c", "--config", default=None)
    b.add_argument("--file", default=None, help="a buffer file instead of [buffer].path (e.g. a *.corrupt-* copy)")
    b.add_argument("--out", default=None, help="write here instead of stdout")
    b.add_argument("--format", choices=("jsonl", "msgpack"), default="jsonl")
    b.add_argument("--quarantined", action="store_true", help="dump the quarantine table instead")
    b.add_argument("--alarms", action="store_true", help="the alarm buffer (<stem>-alarms.db) instead")
    b.set_defaults(func=cmd_buffer_export)

    s = sub.add_parser("certs", help="OPC UA application certificates")
    csub = s.add_subparsers(dest="certs_command", required=True)
    c = csub.add_parser("create", help="create the gateway's application certificate and key in a PKI directory")
    c.add_argument("--pki-dir", default="pki")
    c.add_argument("--application-uri", default="urn:edgegw:gateway", help="becomes the certificate's URI SAN")
    c.add_argument("--common-name", default="edgegw")
    c.add_argument("--hostname", action="append", help="DNS SAN (repeatable; default: this host and localhost)")
    c.add_argument("--days", type=int, default=3650)
    c.add_argument("--force", action="store_true")
    c.set_defaults(func=cmd_certs_create)

    s = sub.add_parser("browse", help="walk an OPC UA server's address space and list its variables")
    s.add_argument("endpoint", help="opc.tcp://HOST:PORT[/path]")
    s.add_argument("--depth", type=int, default=6)
    s.add_argument("--filter", default="*", help="glob on the browse path, e.g. 'Objects/Gasifier*/*'")
    s.add_argument("--emit-config", action="store_true", help="print a ready-to-paste [[devices]] block")
    s.add_argument("--range-check", action="store_true",
                   help="with --emit-config: each EURange as an active min/max (default: as comments to confirm); "
                        "an InstrumentRange is always emitted active")
    s.add_argument("--security", default="None",
                   choices=("None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"))
    s.add_argument("--mode", choices=("Sign", "SignAndEncrypt"), default="SignAndEncrypt")
    s.add_argument("--pki-dir", default="pki", help="trust list (trusted/) and, without --cert/--key, own/")
    s.add_argument("--cert", help="the gateway's application certificate (DER or PEM)")
    s.add_argument("--key", help="its private key (PEM)")
    s.add_argument("--trust-on-first-use", action="store_true", help="store an unknown server certificate")
    who = s.add_mutually_exclusive_group()
    who.add_argument("--user", default=None, help="log in with this user name (password from --password-env)")
    who.add_argument("--user-cert", default=None, help="log in with this X.509 user certificate (with --user-key)")
    s.add_argument("--user-key", default=None, help="the user certificate's private key (PEM)")
    s.add_argument("--password-env", default="EDGEGW_OPCUA_PASSWORD", metavar="VAR",
                   help="environment variable holding --user's password (default EDGEGW_OPCUA_PASSWORD)")
    s.set_defaults(func=cmd_browse)

    s = sub.add_parser("bench", help="benchmarks (print figures)")
    bsub = s.add_subparsers(dest="bench_command", required=True)
    b = bsub.add_parser("opcua", help="N monitored items changing every second on a server in another process")
    b.add_argument("--items", type=int, default=10_000)
    b.add_argument("--json", default=None, help="also write the figures to FILE")
    b.add_argument("--window", type=float, default=10.0, help="measurement window in seconds")
    b.add_argument("--no-restart", action="store_true", help="skip the server-restart measurement")
    b.add_argument("--server", choices=("asyncua", "node-opcua"), default="node-opcua",
                   help="simulated server: node-opcua (npm) or asyncua (Python, ~8k changes/s ceiling)")
    b.add_argument("--runs", type=int, default=1, help="repeat and report per-figure medians")
    b.add_argument("--profile", default=None, help="cProfile the gateway during the first window into FILE")
    b.set_defaults(func=cmd_bench_opcua)
    b = bsub.add_parser("modbus", help="N simulated PLCs (other processes) polled at 1 Hz through the real driver")
    b.add_argument("--devices", type=int, default=200)
    b.add_argument("--registers", type=int, default=125, help="holding registers (= points) per PLC")
    b.add_argument("--points", type=int, default=None, metavar="N",
                   help="scale run: N points across N / --registers PLCs (100,000 -> 800 x 125; N must be a "
                        "multiple of --registers), polled by `edgegw run` in a process of its own into a local "
                        "mosquitto: `edgegw check` and start-up time, RSS and bytes per point, CPU, misses")
    b.add_argument("--runs", type=int, default=1, help="with --points: repeat and report per-figure medians")
    b.add_argument("--json", default=None, help="also write the figures to FILE")
    b.add_argument("--seconds", type=int, default=10, help="measured 1-s windows after the warm-up")
    b.add_argument("--workers", type=int, default=2, help="processes serving the simulated PLCs")
    b.add_argument("--profile", default=None, help="cProfile the measured windows into FILE; print the top")
    b.add_argument("--cpu-quota", type=float, default=None, metavar="CORES",
                   help="confine the gateway (not the PLCs) to CORES of CPU by a cgroup quota, e.g. 0.25 (root)")
    b.set_defaults(func=cmd_bench_modbus)
    b = bsub.add_parser("s7", help="N simulated S7 CPUs (other processes) polled at 1 Hz through the real driver")
    b.add_argument("--devices", type=int, default=50)
    b.add_argument("--points", type=int, default=200, help="REAL / INT / BOOL points per CPU, in one DB")
    b.add_argument("--json", default=None, help="also write the figures to FILE")
    b.add_argument("--seconds", type=int, default=10, help="measured 1-s windows after the warm-up")
    b.add_argument("--workers", type=int, default=2, help="processes serving the simulated CPUs")
    b.add_argument("--runs", type=int, default=1, help="repeat and report per-figure medians")
    b.set_defaults(func=cmd_bench_s7)
    b = bsub.add_parser("dlt645", help="L serial device servers x M DL/T 645 meters (another process), polled in turn")
    b.add_argument("--lines", type=int, default=8)
    b.add_argument("--meters", type=int, default=8, help="meters per line (22 points each)")
    b.add_argument("--seconds", type=int, default=10)
    b.add_argument("--poll-interval-s", type=float, default=1.0)
    b.add_argument("--json", default=None, help="also write the figures to FILE")
    b.set_defaults(func=cmd_bench_dlt645)
    b = bsub.add_parser("iec104", help="an IEC 104 station (another process) sending time-tagged floats spontaneously")
    b.add_argument("--points", type=int, default=2000)
    b.add_argument("--rate", type=float, default=0.0, help="points/s offered (0: as fast as k allows)")
    b.add_argument("--seconds", type=int, default=10)
    b.add_argument("--json", default=None, help="also write the figures to FILE")
    b.set_defaults(func=cmd_bench_iec104)
    b = bsub.add_parser("pipeline", help="source -> normalise + tag -> fsync buffer -> PUBACK, and the I/O floor")
    b.add_argument("--points", type=int, default=2_000_000, help="points per run")
    b.add_argument("--points-per-poll", type=int, default=1000)
    b.add_argument("--batch-points", type=int, default=5000, help="points per buffered batch (MQTT message)")
    b.add_argument("--durability", choices=("fsync", "interval"), default="fsync",
                   help="the buffer's durability (interval: sync every 500 ms)")
    b = bsub.add_parser("latency", help="acquisition -> PUBACK latency at a paced rate")
    b.add_argument("--rate", type=float, default=25_000, help="points per second")
    b.add_argument("--duration", type=float, default=10.0, help="seconds recorded per run")
    b.add_argument("--points-per-poll", type=int, default=250)
    b.add_argument("--linger-ms", type=int, default=5)
    for name in ("pipeline", "latency"):
        b = bsub.choices[name]
        b.add_argument("--burn-core", type=int, default=0, metavar="N",
                       help="run N busy-loop processes during the runs (another program taking N cores)")
        b.add_argument("--sync-delay-ms", type=float, default=0.0, metavar="MS",
                       help="make every fsync MS slower (slow eMMC / SD storage; the hil/powercut preload library)")
    b = bsub.add_parser("drain", help="drain a backlog on disk while live data continues")
    b.add_argument("--points", type=int, default=10_000_000, help="backlog points")
    b.add_argument("--rate", type=float, default=25_000, help="live points per second")
    b.add_argument("--points-per-poll", type=int, default=250)
    b.add_argument("--batch-points", type=int, default=1000,
                   help="points per backlog batch (the buffer's batch_max_points while the uplink was down)")
    b.add_argument("--linger-ms", type=int, default=5)
    b.add_argument("--backlog-share", type=float, default=0.5)
    b.add_argument("--max-inflight", type=int, default=20, help="uplink.max_inflight (the window)")
    b = bsub.add_parser("overload", help="raise the offered rate step by step until delivery falls under 99 %%")
    b.add_argument("--start", type=float, default=100_000, help="first offered rate, points per second")
    b.add_argument("--factor", type=float, default=1.25, help="rate multiplier per step")
    b.add_argument("--steps", type=int, default=12, help="at most this many steps")
    b.add_argument("--duration", type=float, default=5.0, help="seconds offered per step")
    b.add_argument("--points-per-poll", type=int, default=1000)
    b.add_argument("--durability", choices=("fsync", "interval"), default="fsync")
    b.add_argument("--max-bytes", type=int, default=64 << 20, help="buffer bound (drop_oldest beyond it)")
    b.add_argument("--lag-warn-s", type=float, default=2.0, help="[watch].lag_warn_s for the run")
    b = bsub.add_parser("chain", help="simulated Modbus PLCs -> the real gateway (buffer, uplink) -> mosquitto")
    b.add_argument("--devices", type=int, default=500)
    b.add_argument("--registers", type=int, default=600, help="holding registers (= points) per PLC, polled at 1 Hz")
    b.add_argument("--seconds", type=int, default=10, help="measured seconds per run, after the warm-up")
    b.add_argument("--workers", type=int, default=2, help="processes serving the simulated PLCs")
    b.add_argument("--durability", choices=("fsync", "interval"), default="fsync")
    b.add_argument("--cpu-quota", type=float, default=None, metavar="CORES",
                   help="confine the gateway (not the PLCs or the broker) to CORES of CPU by a cgroup quota (root)")
    for name in ("pipeline", "latency", "drain", "overload", "chain"):
        b = bsub.choices[name]
        b.add_argument("--runs", type=int, default=3)
        b.add_argument("--json", default=None, help="also write the figures to FILE")
        b.set_defaults(func=cmd_bench_uplink)
    b = bsub.add_parser("ingest", help="edgegw ingest processes draining a broker backlog into the store, vs its limit")
    b.add_argument("--store", choices=["victoriametrics", "influxdb1"], default="victoriametrics")
    b.add_argument("--points", type=int, default=1_000_000, help="points per run")
    b.add_argument("--batch-points", type=int, default=1000, help="points per MQTT message")
    b.add_argument("--wire", type=int, choices=(1, 2), default=2,
                   help="wire format of the batches: 2 (the default: catalog once, zstd) or 1 (rows in every batch)")
    b.add_argument("--writes-in-flight", type=int, default=None, metavar="N",
                   help="the ingest's [ingest] writes_in_flight (default: the ingest's default, 3)")
    b.add_argument("--runs", type=int, default=3)
    b.add_argument("--json", default=None, help="also write the figures to FILE")
    b.set_defaults(func=cmd_bench_ingest)

    b = bsub.add_parser("wire", help="bytes and CPU per point on the wire by batch size and codec (deadband mix)")
    b.add_argument("--runs", type=int, default=3, help="CPU figures are the median of this many runs")
    b.add_argument("--e2e-seconds", type=float, default=5.0,
                   help="seconds per end-to-end run through a real mosquitto (0: skip)")
    b.add_argument("--json", default=None, help="also write the figures to FILE")
    b.set_defaults(func=cmd_bench_wire)

    s = sub.add_parser("import-tags", help="tag list -> config TOML (CSV; s7: TIA Portal XLSX or CSV)")
    s.add_argument("protocol", choices=_TagImports(), metavar="PROTOCOL",
                   help="a driver with a tag-list import: %(choices)s (docs/drivers.md)")
    s.add_argument("file")
    s.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    s.add_argument("--serial-port", default=None, help="dlt645: the meters' RS-485 port (default /dev/ttyUSB0)")
    s.add_argument("--server", default=None, metavar="HOST:PORT",
                   help="dlt645: the meters sit behind this serial device server (transparent TCP)")
    s.set_defaults(func=cmd_import_tags)

    s = sub.add_parser("ids", help="identifier codes: list, export, register, resolve, validate")
    isub = s.add_subparsers(dest="ids_command", required=True)
    i = isub.add_parser("list", help="every point's identifier code (given or minted)")
    i.add_argument("-c", "--config", required=True)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_ids_list)
    i = isub.add_parser("validate", help="check codes (88. handles, OIDs, GS1 keys); exit 1 if any is invalid")
    i.add_argument("codes", nargs="+", metavar="CODE")
    i.add_argument("--profile", choices=["national", "handle"], default="national")
    i.set_defaults(func=cmd_ids_validate)
    for name, text in (("export", "print every code as the node's batch-registration JSON (offline)"),
                       ("register", "register every code on the [registry] node; update changed attributes"),
                       ("resolve", "resolve codes on the [registry] node; exit 1 if any fails")):
        i = isub.add_parser(name, help=text)
        i.add_argument("-c", "--config", required=True)
        if name == "resolve":
            i.add_argument("codes", nargs="+", metavar="CODE")
        i.set_defaults(func=cmd_ids_registry)
    return p


class _TagImports:
    """The drivers with a tag-list import, for argparse's ``choices``: the driver registry (and with it
    the config models) is imported only when a command line names ``import-tags`` or asks for help, not
    for ``edgegw run``, which starts its config reader before it imports any model (gateway.core.plain)."""

    def _names(self) -> list[str]:
        from gateway.driver_registry import DRIVERS

        return sorted({d.name for d in DRIVERS if d.tags is not None} | {"dlt645", "s7"})

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """``edgegw run -v`` as well as ``edgegw -v run``: every sub-command accepts the global -v (SUPPRESS
    keeps a -v given before the sub-command)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if not any("-v" in a.option_strings for a in sub._actions):
                    sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                     help="debug logging (also accepted before the sub-command)")
                _verbose_everywhere(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _verbose_everywhere(parser)
    args = parser.parse_args(argv)
    # the process's own command line (not a caller's main([...]), as tests do): edgegw run may then
    # switch the whole process to plain mode (gateway.core.plain)
    args.whole_process = argv is None
    try:
        configure_logging(args.log_format, verbose=args.verbose)
    except ValueError:
        print(f"error: ${ENV_VAR}={os.environ.get(ENV_VAR)!r}: use text or json", file=sys.stderr)
        return EXIT_USAGE
    json_logs = any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, so that a closed pipe is caught below and not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader went away (`edgegw ids list -c F | head`): no traceback, no error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except UsageError as err:
        _print_error(json_logs, str(err))
        return EXIT_USAGE
    except ConfigError as err:
        if json_logs:  # one JSON line, every problem in `issues`, so that a log shipper keeps them together
            _print_error(True, f"{err.source or 'config'}: invalid configuration ({len(err.issues)} problem(s))",
                         source=err.source, issues=[str(i) for i in err.issues], reason="config")
        else:
            _print_config_error(err)
        return EXIT_USAGE
    except (BufferCorruptError, BufferStorageError) as err:
        _print_error(json_logs, str(err), reason="buffer")
        return EXIT_FAILURE
    except KeyboardInterrupt:  # Ctrl-C before the gateway took over its signals (reading a large config)
        return 130
    except OSError as err:  # a file the checks before start-up could not foresee: one line, not a traceback
        if args.verbose:
            raise
        where = f"{err.filename}: " if err.filename else ""
        _print_error(json_logs, f"{where}{err.strerror or err}", reason="os_error")
        return EXIT_FAILURE
    except ConfigReadFailed as err:
        _print_error(json_logs, f"{getattr(args, 'config', 'config')}: {err}", reason="config_read")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
