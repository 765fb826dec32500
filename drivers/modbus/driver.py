"""Modbus TCP driver: the only module (with hil/) that imports pymodbus.

It does I/O only: connect, read the planned blocks, decode.  Cadence, timeouts, backoff and health
counters live in :mod:`gateway.runner`.  pymodbus exceptions never leave this module.
"""

from __future__ import annotations

import logging
from typing import Self

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from drivers.modbus.config import ModbusTcpDevice, Table
from drivers.modbus.decode import BitDecoder, Decoder, Field, registers_to_bytes
from drivers.modbus.plan import Block, gap_addresses, plan
from gateway.errors import ConnectError, ReadError
from gateway.point import Quality, SampleBatch, now_ns

__all__ = ["ModbusTcpDriver"]

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs every failed frame with a traceback

_EXCEPTION_NAMES = {
    1: "illegal_function",
    2: "illegal_data_address",
    3: "illegal_data_value",
    4: "server_device_failure",
    5: "acknowledge",
    6: "server_device_busy",
    8: "memory_parity_error",
    10: "gateway_path_unavailable",
    11: "gateway_target_failed_to_respond",
}


class ModbusTcpDriver:
    def __init__(self, config: ModbusTcpDevice, first_index: int) -> None:
        self.config = config
        self._first = first_index
        self.unbridgeable: set[tuple[Table, int]] = set()
        self.blocks: list[tuple[Block, Decoder | BitDecoder]] = []
        self._replan()
        self._client: AsyncModbusTcpClient | None = None

    def _replan(self) -> None:
        """Build blocks and their decoders; rerun when a bridged gap turned out unreadable."""
        config = self.config
        self.blocks = []
        for block in plan(config.points, config.max_gap, config.max_bit_gap, self.unbridgeable):
            fields = []
            for member in block.members:
                pt = config.points[member]
                width = 1 if block.table.is_bit else 2
                fields.append(
                    Field(
                        index=self._first + member,
                        offset=(pt.address - block.address) * width,
                        data_type=pt.data_type,
                        order=pt.byte_order or config.byte_order,
                        bit=pt.bit,
                        length=pt.length or 0,
                        string_order=pt.string_order,
                        enum=pt.enum,
                    )
                )
            decoder: Decoder | BitDecoder = BitDecoder(fields) if block.table.is_bit else Decoder(fields)
            self.blocks.append((block, decoder))

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def requests_per_poll(self) -> int:
        return len(self.blocks)

    async def __aenter__(self) -> Self:
        cfg = self.config
        client = AsyncModbusTcpClient(cfg.host, port=cfg.port, timeout=cfg.timeout_ms / 1000, retries=0)
        try:
            ok = await client.connect()
        except (ModbusException, OSError) as err:
            client.close()
            raise ConnectError(cfg.name, f"cannot connect to {cfg.host}:{cfg.port}: {err}") from err
        if not ok:
            client.close()
            raise ConnectError(cfg.name, f"cannot connect to {cfg.host}:{cfg.port}")
        self._client = client
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(self) -> SampleBatch:
        """One poll: every block once.  An exception response spoils only its block's points."""
        client = self._client
        if client is None:
            raise ConnectError(self.config.name, "not connected")
        unit = self.config.unit_id
        out: SampleBatch = []
        replan = False
        for block, decoder in self.blocks:
            ts = now_ns()
            try:
                if block.table is Table.HOLDING_REGISTER:
                    rr = await client.read_holding_registers(block.address, count=block.count, device_id=unit)
                elif block.table is Table.INPUT_REGISTER:
                    rr = await client.read_input_registers(block.address, count=block.count, device_id=unit)
                elif block.table is Table.COIL:
                    rr = await client.read_coils(block.address, count=block.count, device_id=unit)
                else:
                    rr = await client.read_discrete_inputs(block.address, count=block.count, device_id=unit)
            except ConnectionException as err:
                raise ReadError(self.name, f"connection lost: {err}", reason="disconnected", disconnect=True) from err
            except (TimeoutError, ModbusException, OSError) as err:
                raise ReadError(self.name, f"no answer: {err}", reason="timeout", disconnect=True) from err
            if rr.isError():
                code = getattr(rr, "exception_code", 0)
                reason = f"modbus_exception_{code}_{_EXCEPTION_NAMES.get(code, 'unknown')}"
                out.extend((self._first + m, ts, None, Quality.BAD, reason) for m in block.members)
                if code == 2:
                    gaps = gap_addresses(block, self.config.points)
                    if gaps - self.unbridgeable:
                        self.unbridgeable |= gaps
                        replan = True
                continue
            if block.table.is_bit:
                bits = rr.bits
                if len(bits) < block.count:
                    raise ReadError(
                        self.name,
                        f"short response: asked {block.count} bits at {block.address}",
                        reason="malformed_response",
                    )
                values = decoder.decode(bits)  # type: ignore[arg-type]
            else:
                regs = rr.registers
                if len(regs) < block.count:
                    raise ReadError(
                        self.name,
                        f"short response: asked {block.count} registers at {block.address}, got {len(regs)}",
                        reason="malformed_response",
                    )
                values = decoder.decode(registers_to_bytes(regs[: block.count]))  # type: ignore[arg-type]
            out.extend(
                (i, ts, v, Quality.GOOD, None) if why is None else (i, ts, None, Quality.BAD, why)
                for i, v, why in values
            )
        if replan:
            self._replan()
        return out
