"""Where a gateway's memory per configured point goes: python scripts/memory_per_point.py N [--rss]

Builds a Gateway (config parsed, point table, stages, encoder, buffer; nothing started) for N points
(N / 100 Modbus TCP devices of 100 holding registers, as `edgegw bench modbus` configures them) and
prints the bytes per point: under tracemalloc with the files they were allocated in, or with
``--rss`` the resident memory over that of the imports (no tracing overhead), once the memory freed
after building went back to the system as ``Gateway.run`` does first.  As ``edgegw run`` does, the
config is parsed and compiled in a child process (:mod:`gateway.prebuild`) and the Gateway built here
from the result; ``--in-process`` parses here instead (the memory of a Gateway built from a config
object, as tests and the in-process benches do).  ``MEM_BY=lineno`` (and
``MEM_TOP=30``) break the traced bytes down by line.  ``scripts/memory_running.py`` measures a running
``edgegw run``.  #17, item 1.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(n: int, rss_only: bool, in_process: bool) -> None:
    if not rss_only:
        tracemalloc.start(1)
    from gateway.app import Gateway, release_free_memory
    from gateway.config import parse
    from gateway.prebuild import in_child, prebuild

    gc.collect()
    base = None if rss_only else tracemalloc.take_snapshot()
    before = _rss() if rss_only else tracemalloc.get_traced_memory()[0]
    tmp = tempfile.mkdtemp(prefix="edgegw-mem-")

    def config() -> Any:
        points: list[dict[str, Any]] = [
            {"name": f"r{a:03d}", "address": a, "data_type": "int16" if a % 2 else "uint16",
             **({"scale": 0.1} if a % 5 == 0 else {})} for a in range(100)]
        return parse({
            "gateway": {"id": "bench", "site": "bench", "enterprise_prefix": "88.608.5288"},
            "devices": [{"type": "modbus_tcp", "name": f"plc{d:04d}", "host": "127.0.0.1",
                         "port": 1502 + d % 1000, "unit_id": 1 + d // 1000, "poll_interval_ms": 1000,
                         "points": points} for d in range(n // 100)],
            "buffer": {"path": os.path.join(tmp, "buffer.db")},
            "uplink": {"host": "127.0.0.1", "port": 1883},
        })

    gw = Gateway(config() if in_process else in_child(lambda: prebuild(config())))
    gc.collect()
    if rss_only:
        built = _rss()
        release_free_memory()  # what Gateway.run does first (tune_gc): the steady state
        after = _rss()
        print(f"{n} points: rss {after / 1e6:.0f} MB (imports {before / 1e6:.0f} MB, {built / 1e6:.0f} MB before "
              f"the freed memory went back), {(after - before) / n:.0f} B/point over the imports")
    else:
        after = tracemalloc.get_traced_memory()[0]
        print(f"{n} points: traced {(after - before) / 1e6:.1f} MB = {(after - before) / n:.0f} B/point")
        assert base is not None
        # MEM_BY=lineno MEM_TOP=30: by line instead of by file
        by, top = os.environ.get("MEM_BY", "filename"), int(os.environ.get("MEM_TOP", "10"))
        for st in tracemalloc.take_snapshot().compare_to(base, by)[:top]:
            where = st.traceback[0]
            line = f":{where.lineno}" if by == "lineno" else ""
            print(f"  {st.size_diff / n:8.0f} B/point  {where.filename}{line}")
    del gw


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python scripts/memory_per_point.py N [--rss] [--in-process]")
    main(int(sys.argv[1]), "--rss" in sys.argv[2:], "--in-process" in sys.argv[2:])
