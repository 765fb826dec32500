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
import signal
import sys
from collections.abc import Coroutine
from dataclasses import asdict
from typing import Any

from gateway import __version__
from gateway.errors import BufferCorruptError, BufferStorageError, ConfigError, ConfigIssue

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _print_config_error(err: ConfigError) -> None:
    where = f"{err.source}: " if err.source else ""
    print(f"error: {where}invalid configuration ({len(err.issues)} problem(s))", file=sys.stderr)
    for issue in err.issues:
        print(f"  {issue}", file=sys.stderr)


def _dump_tasks() -> None:
    """SIGUSR1: print every asyncio task and where it waits (for a gateway that seems stuck)."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run until done or until SIGINT / SIGTERM, then cancel cleanly."""

    async def main() -> None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.catalog import build_catalog
    from gateway.config import load

    cfg = load(args.config)
    catalog = build_catalog(cfg)
    print(
        f"{args.config}: ok ({len(cfg.devices)} devices, {len(catalog.points)} points, "
        f"uplink {'configured' if cfg.uplink else 'none'}, ingest {'configured' if cfg.ingest else 'none'})"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import Gateway
    from gateway.config import load

    gw = Gateway(load(args.config))
    _run(gw.run())
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    from gateway.config import load
    from gateway.ingest import Ingest

    cfg = load(args.config)
    if cfg.ingest is None:
        raise ConfigError([ConfigIssue("ingest", "required for `edgegw ingest`")], args.config)
    _run(Ingest(cfg.ingest).run())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    _run(run_demo(duration_s=args.duration, data_dir=args.data_dir, influx_url=args.influx_url,
                  influx_db=args.influx_db, broker=args.broker, live=not args.plain))
    return EXIT_OK


def _buffer_cfg(args: argparse.Namespace) -> Any:
    from gateway.config import BufferConfig, load

    if args.config is None and getattr(args, "file", None) is None:
        raise ConfigError([ConfigIssue("", "give -c FILE (the gateway config) or --file BUFFER_DB")])
    bc = load(args.config).buffer if args.config else BufferConfig()
    if getattr(args, "file", None):
        bc = bc.model_copy(update={"path": args.file})
    return bc


def cmd_buffer_stats(args: argparse.Namespace) -> int:
    """Read-only: safe while the gateway runs; never changes the file."""
    from gateway.buffer import open_buffer

    buf = open_buffer(_buffer_cfg(args), readonly=True)
    try:
        print(json.dumps(asdict(buf.stats()), indent=2))
    finally:
        buf.close()
    return EXIT_OK


def cmd_buffer_export(args: argparse.Namespace) -> int:
    """Dump pending (or quarantined) batches, decoded, without removing them."""
    from gateway.buffer import open_buffer
    from gateway.buffer.export import export

    buf = open_buffer(_buffer_cfg(args), readonly=True)
    try:
        if args.out:
            with open(args.out, "wb") as out:
                summary = export(buf, out, fmt=args.format, quarantined=args.quarantined)
        else:
            summary = export(buf, sys.stdout.buffer, fmt=args.format, quarantined=args.quarantined)
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
    from drivers.opcua.driver import browse
    from gateway.errors import DeviceError

    try:
        found = asyncio.run(browse(args.endpoint, depth=args.depth, pattern=args.filter))
    except DeviceError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(emit_config(args.endpoint, found) if args.emit_config else format_table(found))
    return EXIT_OK


def cmd_bench_opcua(args: argparse.Namespace) -> int:
    from drivers.opcua.bench import main as bench_main

    bench_main(args.items, args.json, args.window, not args.no_restart, args.server)
    return EXIT_OK


def cmd_import_tags(args: argparse.Namespace) -> int:
    from pathlib import Path

    from drivers.modbus.tags import csv_to_points, points_to_toml

    toml = points_to_toml(csv_to_points(Path(args.file).read_text(encoding="utf-8-sig"), args.file))
    if args.output:
        Path(args.output).write_text(toml, encoding="utf-8")
    else:
        print(toml, end="")
    return EXIT_OK


def cmd_ids_validate(args: argparse.Namespace) -> int:
    """One verdict line per code; exit 1 if any is invalid, so scripts can gate on it."""
    from pipelines.identifiers import Profile, verdict

    profile = Profile(args.profile)
    bad = 0
    for code in args.codes:
        v = verdict(code, profile)
        bad += not v.ok
        print(f"{'ok' if v.ok else 'INVALID'}\t{v.kind}\t{code}\t{v.detail}")
    return EXIT_FAILURE if bad else EXIT_OK


def cmd_ids_list(args: argparse.Namespace) -> int:
    """Every point's resolved code (given or minted) with its device code and grade, as TSV or JSON."""
    from gateway.catalog import build_catalog
    from gateway.config import load

    catalog = build_catalog(load(args.config))
    rows = [
        {"point": p.key, "code": p.code, "device_code": p.device_code, "data_grade": p.data_grade}
        for p in catalog.points
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for r in rows:
            print("\t".join(str(r[k]) for k in ("point", "code", "device_code", "data_grade")))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgegw", description="Edge telemetry gateway for mines and plants.")
    p.add_argument("--version", action="version", version=f"edgegw {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("check", help="validate a config file without connecting to anything")
    s.add_argument("-c", "--config", required=True)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("run", help="run the gateway (edge role)")
    s.add_argument("-c", "--config", required=True)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("ingest", help="run the central ingest role (MQTT -> InfluxDB)")
    s.add_argument("-c", "--config", required=True)
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("demo", help="simulated mine -> gateway -> broker -> ingest, live in the terminal")
    s.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: until Ctrl-C)")
    s.add_argument("--data-dir", default="demo-data", help="buffer and line-protocol output (default demo-data/)")
    s.add_argument("--broker", default=None, help="HOST:PORT of an MQTT broker (default: an in-process one)")
    s.add_argument("--influx-url", default=None, help="InfluxDB 1.x URL (default: write demo-data/telemetry.lp)")
    s.add_argument("--influx-db", default="edgegw")
    s.add_argument("--plain", action="store_true", help="print lines instead of a live table")
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
    s.set_defaults(func=cmd_browse)

    s = sub.add_parser("bench", help="benchmarks (print figures)")
    bsub = s.add_subparsers(dest="bench_command", required=True)
    b = bsub.add_parser("opcua", help="N monitored items changing every second on a server in another process")
    b.add_argument("--items", type=int, default=10_000)
    b.add_argument("--json", default=None, help="also write the figures to FILE")
    b.add_argument("--window", type=float, default=10.0, help="measurement window in seconds")
    b.add_argument("--no-restart", action="store_true", help="skip the server-restart measurement")
    b.add_argument("--server", choices=("asyncua", "node-opcua"), default="asyncua",
                   help="simulated server: asyncua (Python, ~8k changes/s ceiling) or node-opcua (npm)")
    b.set_defaults(func=cmd_bench_opcua)

    s = sub.add_parser("import-tags", help="turn a CSV tag list into config TOML")
    s.add_argument("protocol", choices=["modbus"])
    s.add_argument("file")
    s.add_argument("-o", "--output", default=None, help="write here instead of stdout")
    s.set_defaults(func=cmd_import_tags)

    s = sub.add_parser("ids", help="identifier codes: list the configured ones, validate codes")
    isub = s.add_subparsers(dest="ids_command", required=True)
    i = isub.add_parser("list", help="every point's identifier code (given or minted)")
    i.add_argument("-c", "--config", required=True)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_ids_list)
    i = isub.add_parser("validate", help="check codes (88. handles, OIDs, GS1 keys); exit 1 if any is invalid")
    i.add_argument("codes", nargs="+", metavar="CODE")
    i.add_argument("--profile", choices=["national", "handle"], default="national")
    i.set_defaults(func=cmd_ids_validate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except ConfigError as err:
        _print_config_error(err)
        return EXIT_USAGE
    except (BufferCorruptError, BufferStorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
