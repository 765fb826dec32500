"""S7comm framing without I/O: bytes in, frames or values out (no event loop, no sockets).

The layers, outermost first:

- TPKT (RFC 1006): ``03 00 LEN_HI LEN_LO`` and the rest of the packet;
- COTP (ISO 8073 class 0): connection request / confirm carrying the TSAPs, then data TPDUs
  ``02 F0 80`` (the last bit: end of a PDU that may span several TPDUs);
- S7comm: a job (``32 01``) and its ack-data (``32 03``) with the header error class / code;
  the two functions used here are "setup communication" (``F0``: negotiates the PDU size and
  how many jobs may be outstanding) and "read variable" (``04``: up to N items, each an area,
  DB number, start bit address and byte count, answered per item with a return code).

Every parser raises :class:`FrameError` with what was wrong; nothing here trusts a length field
further than the bytes it has.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "COTP_DT",
    "RETURN_OK",
    "FrameError",
    "ItemResult",
    "ReadItem",
    "S7HeaderError",
    "SetupResult",
    "cotp_connect_request",
    "cotp_data_payload",
    "parse_connect_confirm",
    "parse_read_response",
    "parse_setup_response",
    "read_request",
    "read_request_size",
    "read_response_size",
    "return_code_reason",
    "setup_request",
    "tpkt",
    "tpkt_length",
]

TPKT_VERSION = 3
MAX_TPKT = 4096  # a PDU is at most 960 bytes; anything far larger is a stream out of step
COTP_CR, COTP_CC, COTP_DR, COTP_DT_CODE = 0xE0, 0xD0, 0x80, 0xF0
COTP_DT = bytes((0x02, COTP_DT_CODE, 0x80))  # length 2, data, EOT
S7_PROTOCOL = 0x32
ROSCTR_JOB, ROSCTR_ACK, ROSCTR_ACK_DATA = 0x01, 0x02, 0x03
FN_SETUP, FN_READ = 0xF0, 0x04
RETURN_OK = 0xFF
REQUEST_HEADER = 10  # S7 job header
RESPONSE_HEADER = 12  # ack-data header (with error class and code)
ITEM_SPEC = 12  # one read item in a request
ITEM_HEADER = 4  # return code, transport size, length, before each item's data in a response
READ_PARAM = 2  # function code and item count

# item return codes (S7comm "return code" of read / write data items)
_RETURN_REASONS = {
    0x01: "s7_hardware_fault",
    0x03: "s7_access_denied",
    0x05: "s7_address_out_of_range",
    0x06: "s7_type_not_supported",
    0x07: "s7_type_inconsistent",
    0x0A: "s7_object_does_not_exist",
}
# header error classes of an ack-data
_ERROR_CLASSES = {
    0x81: "application relationship", 0x82: "object definition", 0x83: "no resources available",
    0x84: "error on service processing", 0x85: "error on supplies", 0x87: "access error",
}


class FrameError(ValueError):
    """Bytes that are not the frame expected here (garbage, truncated, wrong function, wrong reference)."""


class S7HeaderError(Exception):
    """The CPU refused the whole job (ack-data with a non-zero error class)."""

    def __init__(self, error_class: int, error_code: int) -> None:
        self.error_class, self.error_code = error_class, error_code
        what = _ERROR_CLASSES.get(error_class, "unknown error class")
        super().__init__(
            f"the CPU refused the request: error class 0x{error_class:02X} ({what}), code 0x{error_code:02X}"
        )

    @property
    def reason(self) -> str:
        return f"s7_error_{self.error_class:02x}{self.error_code:02x}"


def return_code_reason(code: int) -> str:
    """Our reason for an item return code (``s7_address_out_of_range``...; unknown: ``s7_item_error_0x..``)."""
    return _RETURN_REASONS.get(code, f"s7_item_error_0x{code:02x}")


def tpkt(payload: bytes) -> bytes:
    return struct.pack(">BBH", TPKT_VERSION, 0, len(payload) + 4) + payload


def tpkt_length(header: bytes) -> int:
    """The whole packet's length from its 4-byte TPKT header (validated)."""
    if len(header) != 4:
        raise FrameError(f"TPKT header of {len(header)} bytes, need 4")
    version, length = header[0], int.from_bytes(header[2:4], "big")
    if version != TPKT_VERSION:
        raise FrameError(f"not a TPKT packet (version byte 0x{version:02X}, expected 0x03)")
    if not 7 <= length <= MAX_TPKT:
        raise FrameError(f"TPKT length {length} is outside 7..{MAX_TPKT}")
    return length


def cotp_connect_request(local_tsap: int, remote_tsap: int, tpdu_size_code: int = 0x0A) -> bytes:
    """COTP CR with the calling / called TSAPs and a TPDU size of 2**code bytes (0x0A: 1024)."""
    params = bytes((0xC1, 2)) + struct.pack(">H", local_tsap) + bytes((0xC2, 2)) + struct.pack(">H", remote_tsap)
    params += bytes((0xC0, 1, tpdu_size_code))
    body = bytes((COTP_CR,)) + struct.pack(">HHB", 0, 1, 0) + params
    return tpkt(bytes((len(body),)) + body)


def parse_connect_confirm(packet: bytes) -> None:
    """Accept a COTP CC; a disconnect request (wrong TSAP, no resources) or anything else raises."""
    body = packet[4:]
    if len(body) < 2 or body[0] + 1 > len(body):
        raise FrameError("truncated COTP connection confirm")
    code = body[1] & 0xF0
    if code == COTP_DR:
        raise FrameError("the CPU refused the connection (COTP disconnect request): check rack / slot or TSAP")
    if code != COTP_CC:
        raise FrameError(f"expected a COTP connection confirm (0xD0), got TPDU code 0x{code:02X}")


def cotp_data_payload(packet: bytes) -> tuple[bytes, bool]:
    """(S7 bytes, last fragment) of one COTP data TPDU inside a TPKT packet."""
    body = packet[4:]
    if len(body) < 3:
        raise FrameError(f"truncated COTP header ({len(body)} bytes)")
    li = body[0]
    if body[1] & 0xF0 != COTP_DT_CODE:
        raise FrameError(f"expected a COTP data TPDU (0xF0), got TPDU code 0x{body[1]:02X}")
    if li < 2 or li + 1 > len(body):
        raise FrameError(f"COTP header length {li} does not fit the {len(body)}-byte TPDU")
    return body[li + 1:], bool(body[2] & 0x80)


def _job(pdu_ref: int, params: bytes, data: bytes = b"") -> bytes:
    header = struct.pack(">BBHHHH", S7_PROTOCOL, ROSCTR_JOB, 0, pdu_ref, len(params), len(data))
    return tpkt(COTP_DT + header + params + data)


def setup_request(pdu_ref: int, pdu_size: int, max_jobs: int = 1) -> bytes:
    return _job(pdu_ref, struct.pack(">BBHHH", FN_SETUP, 0, max_jobs, max_jobs, pdu_size))


@dataclass(frozen=True, slots=True)
class SetupResult:
    pdu_size: int
    max_jobs_calling: int
    max_jobs_called: int


def _ack(pdu: bytes, pdu_ref: int, function: int) -> tuple[bytes, bytes]:
    """(parameters, data) of an ack-data for ``pdu_ref``; header errors raise S7HeaderError."""
    if len(pdu) < RESPONSE_HEADER:
        raise FrameError(f"truncated S7 header ({len(pdu)} bytes, need {RESPONSE_HEADER})")
    proto, rosctr, _, ref, plen, dlen, eclass, ecode = struct.unpack(">BBHHHHBB", pdu[:RESPONSE_HEADER])
    if proto != S7_PROTOCOL:
        raise FrameError(f"not S7comm (protocol id 0x{proto:02X}, expected 0x32)")
    if rosctr not in (ROSCTR_ACK, ROSCTR_ACK_DATA):
        raise FrameError(f"expected an ack-data (ROSCTR 3), got ROSCTR {rosctr}")
    if ref != pdu_ref:
        raise FrameError(f"answer to request {ref}, expected {pdu_ref} (stream out of step)")
    if eclass or ecode:
        raise S7HeaderError(eclass, ecode)
    if RESPONSE_HEADER + plen + dlen != len(pdu):
        raise FrameError(f"S7 lengths (parameters {plen} + data {dlen}) do not match the {len(pdu)}-byte PDU")
    params = pdu[RESPONSE_HEADER:RESPONSE_HEADER + plen]
    if not params or params[0] != function:
        got = f"0x{params[0]:02X}" if params else "none"
        raise FrameError(f"expected function 0x{function:02X} in the answer, got {got}")
    return params, pdu[RESPONSE_HEADER + plen:]


def parse_setup_response(pdu: bytes, pdu_ref: int) -> SetupResult:
    params, _ = _ack(pdu, pdu_ref, FN_SETUP)
    if len(params) != 8:
        raise FrameError(f"setup communication answer has {len(params)} parameter bytes, expected 8")
    _, _, calling, called, size = struct.unpack(">BBHHH", params)
    if not 32 <= size <= 8192:
        raise FrameError(f"the CPU offers a PDU size of {size} bytes")
    return SetupResult(size, calling, called)


@dataclass(frozen=True, slots=True)
class ReadItem:
    """One "read variable" item: ``count`` bytes from ``start`` in an area (and DB)."""

    area_code: int
    db: int
    start: int
    count: int


def read_request(pdu_ref: int, items: list[ReadItem]) -> bytes:
    params = bytearray((FN_READ, len(items)))
    for it in items:
        # 12 0A 10: variable specification, 10 bytes follow, syntax S7ANY; transport size 02 = BYTE
        params += struct.pack(">BBBBHHB", 0x12, 0x0A, 0x10, 0x02, it.count, it.db, it.area_code)
        params += (it.start * 8).to_bytes(3, "big")  # bit address
    return _job(pdu_ref, bytes(params))


def read_request_size(n_items: int) -> int:
    """The S7 PDU bytes of a read request for ``n_items`` items."""
    return REQUEST_HEADER + READ_PARAM + ITEM_SPEC * n_items


def read_response_size(counts: list[int]) -> int:
    """The S7 PDU bytes of the answer to items of these byte counts, in this order (fill bytes after odd
    items except the last)."""
    size = RESPONSE_HEADER + READ_PARAM
    for i, n in enumerate(counts):
        size += ITEM_HEADER + n + (n % 2 if i < len(counts) - 1 else 0)
    return size


@dataclass(frozen=True, slots=True)
class ItemResult:
    code: int  # RETURN_OK or the CPU's return code
    data: bytes


def parse_read_response(pdu: bytes, pdu_ref: int, counts: list[int]) -> list[ItemResult]:
    """The items of a read answer, checked against the byte counts asked for."""
    params, data = _ack(pdu, pdu_ref, FN_READ)
    if len(params) != 2 or params[1] != len(counts):
        got = params[1] if len(params) == 2 else "?"
        raise FrameError(f"answer carries {got} items, {len(counts)} were asked for")
    out: list[ItemResult] = []
    pos = 0
    for i, want in enumerate(counts):
        if pos + ITEM_HEADER > len(data):
            raise FrameError(f"item {i + 1} of {len(counts)} is missing (answer truncated)")
        code, tsize, length = struct.unpack(">BBH", data[pos:pos + ITEM_HEADER])
        pos += ITEM_HEADER
        if code != RETURN_OK:
            # a failed item is its 4-byte header alone: CPUs send length 0, Snap7's server sends 4 (and
            # no data, as its PDU's data length shows), so the length of a failed item is not trusted
            out.append(ItemResult(code, b""))
            continue
        n = length // 8 if tsize in (0x03, 0x04, 0x05) else length  # bit lengths for BIT / BYTE / INT sizes
        if n != want:
            raise FrameError(f"item {i + 1}: {n} bytes, {want} were asked for")
        if pos + n > len(data):
            raise FrameError(f"item {i + 1}: {n} bytes announced, {len(data) - pos} present (answer truncated)")
        out.append(ItemResult(code, data[pos:pos + n]))
        pos += n
        if i < len(counts) - 1 and n % 2:
            pos += 1  # fill byte
    return out
