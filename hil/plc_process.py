"""One simulated PLC (a gas substation stub on Modbus TCP) in a process of its own, for HIL campaigns.

``python -m hil.plc_process --port P --seed S --tick-ms T --counts FILE``

It counts the requests it answers per function code (the polls the gateway made: the oracle's
"produced") and keeps the totals in ``FILE`` (JSON, replaced atomically every 200 ms and at exit;
a restart — a PLC reboot — continues from the file, while the stub starts again at tick 0).
SIGTERM stops it cleanly; SIGUSR1 silences it (requests go unanswered and time out, the connection
stays open: a hung outstation), SIGUSR2 makes it answer again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

from hil.modbus_server import SimulatedPlc

__all__ = ["CountingPlc", "read_counts"]


def read_counts(path: Path) -> dict[str, int]:
    """Function code (as a string) -> requests answered; {} before the first write."""
    try:
        return {k: int(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError):
        return {}


class CountingPlc(SimulatedPlc):
    def __init__(self, counts_path: Path, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.counts_path = counts_path
        self.counts: dict[str, int] = read_counts(counts_path)

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        out = super()._trace_packet(sending, data)
        i = 0
        while sending and len(out) >= i + 8:  # answers leaving (several MBAP frames may share one write)
            fc = out[i + 7]
            if fc < 0x80:  # not an exception answer: one read served
                self.counts[str(fc)] = self.counts.get(str(fc), 0) + 1
            i += 6 + int.from_bytes(out[i + 4:i + 6], "big")
        return out

    def save(self) -> None:
        tmp = self.counts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.counts))
        os.replace(tmp, self.counts_path)


async def _main(args: argparse.Namespace) -> None:
    plc = CountingPlc(Path(args.counts), port=args.port, seed=args.seed, tick_s=args.tick_ms / 1000)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, plc.silence, plc.unit_id)
    loop.add_signal_handler(signal.SIGUSR2, plc.revive, plc.unit_id)
    async with plc:
        print(f"PLC seed {args.seed} serving on 127.0.0.1:{plc.port}", flush=True)
        while not stop.is_set():
            plc.save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    plc.save()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tick-ms", type=int, default=100)
    p.add_argument("--counts", required=True)
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
