"""The per-sample work of the v2 encoder (:meth:`gateway.codec.Encoder.encode`) as one typed loop, for mypyc.

This module is compiled to a C extension by the optional native build (``setup.py``, mypyc); it is
then used by :mod:`gateway.codec` for the common batch.  Interpreted it would be slower than the
codec's own column-at-a-time code, so the codec uses it only when compiled (:data:`COMPILED`), except
in the tests, which run it both ways and compare the bytes with the pure-Python path.

:func:`columns_v2` returns the columns of a batch (int point indices in the catalog, int times in
0..2**62, good / uncertain / bad qualities, values of the wire's kinds: int, finite float, bool,
None, str; reasons that are str) already msgpack-encoded, as the entries of the batch's map after
its head (v, c, seq, t): the bytes msgpack-python gives for the pure-Python path's columns, the same
keys in the same order, each int in the form msgpack-python picks (the smallest; unsigned when not
negative).  The bytes are written with ``librt.strings.BytesWriter`` (mypyc's runtime library:
compiled, one C store a byte; msgpack's packer costs ~20 ns a list item).  A batch with a bool, a
gap or a string is a *plain* one, as for the pure path (:func:`gateway.codec._values_v2`): every
float is then decided without the point's decimal hint (float32 when exact, else the smallest
decimal, else float64), and so is a batch where a float times its hint overflows.  For anything
else (NaN or infinity, an index or time out of range, an int beyond 64 bits, a value, quality or
reason of no wire type) it returns None and the pure-Python path decides (and raises what it
raises).  Keep the two in step: tests/test_codec_kernel.py compares them.
"""

from __future__ import annotations

import math
from typing import Any, Final

from librt.strings import BytesWriter, write_f32_le, write_f64_le, write_i16_be, write_i32_be, write_i64_be

from gateway.core.point import Quality

__all__ = ["COMPILED", "columns_v2"]

# the value kinds of gateway.codec (not imported: a compiled module reads them as C constants)
_K_NONE: Final = 0
_K_FALSE: Final = 1
_K_TRUE: Final = 2
_K_INT: Final = 3
_K_STR: Final = 4
_K_F64: Final = 5
_K_F32: Final = 6
_K_DEC: Final = 16
_DEC_MAX: Final = 9e9
_TS_MAX: Final = (1 << 62) - 1  # deltas stay in int64 (the codec's rule); unboxed in a compiled module
_F32_MIN_NORMAL: Final = 1.1754943508222875e-38  # 2**-126, float32's smallest normal
_F32_LIMIT: Final = 3.402823669209385e38  # 2**128: float32's largest is just below
_TWO29: Final = 536870912.0  # 2**29: a split of the double's 53 bits at 24
_TWO149: Final = 7.1362384635297994e44  # 2**149: float32's smallest subnormal is 2**-149
_ROUNDER: Final = 6755399441055744.0  # 1.5 * 2**52: x + it - it is x rounded to an integer (|x| < 2**51)


def _compiled() -> bool:
    """True when this module runs as a mypyc-compiled extension."""
    return not __file__.endswith((".py", ".pyc"))


COMPILED: Final = _compiled()


def columns_v2(samples: list[Any], npoints: int, kind_f: list[int]) -> tuple[int, bytes] | None:
    """The columns i, ts, vd, vg, vf, k, vi, vs, q, r of a v2 batch of ``samples`` (not empty) as msgpack
    map entries: (their number, their bytes: key, value, key, value...), or None when the batch needs the
    general path.  ``kind_f``: per point index, K_DEC + the decimal exponent of its scaling, K_DEC where
    it has none (:attr:`gateway.codec.DecimalHints.kind_f`)."""
    good, uncertain, bad = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD
    n = len(samples)
    # each column's msgpack items as they come (compiled: a C buffer, one store a byte)
    wi = BytesWriter()
    wt = BytesWriter()
    kinds = BytesWriter()  # one kind a sample (changed in place by the float search)
    wd = BytesWriter()  # the decimals' mantissas (those the hints decide; the search's are spliced in)
    wv = BytesWriter()
    wq = BytesWriter()
    n_vd = 0
    n_vi = 0
    n_q = 0
    vs: list[str] = []
    rp: list[Any] = []
    # floats no hint makes exact: (sample position, value, where in wd its mantissa goes), decided after the loop
    others: list[int] = []
    other_f: list[float] = []
    other_at: list[int] = []
    n_float = 0
    n_hinted = 0  # floats made decimals by their point's hint
    plain = False  # a bool, gap or string seen (or a hint overflowed): no hints, as the pure path
    prev_i = 0
    prev_t = 0
    for k in range(n):
        s: tuple[object, object, object, object, object] = samples[k]
        i_o, t_o, v, q, r = s
        if type(i_o) is not int or type(t_o) is not int:
            return None
        i: int = i_o
        t: int = t_o
        if i < 0 or i >= npoints or t < 0 or t > _TS_MAX:
            return None
        d = i - prev_i  # the first: the index itself (prev 0)
        if 0 <= d < 128:
            wi.append(d)
        else:
            _put_int(wi, d)
        d = t - prev_t
        if 0 <= d < 128:
            wt.append(d)
        else:
            _put_int(wt, d)
        prev_i = i
        prev_t = t
        if type(v) is float:
            f: float = v
            n_float += 1
            e = kind_f[i] - _K_DEC
            if not -_DEC_MAX < f < _DEC_MAX:
                if f - f != 0.0:  # NaN or an infinity: the general path raises
                    return None
                if e > 0 and not plain and (f * _pow10(e)) - (f * _pow10(e)) != 0.0:
                    plain = True  # the pure path's hinted product overflows: it searches them all
                kinds.append(_K_F64)  # float32 or float64 (no decimal beyond 9e9): decided below
                others.append(k)
                other_f.append(f)
                other_at.append(len(wd))
            elif e > 0 and not plain:
                p = _pow10(e)
                m = _round(f * p)
                # -0.0 passes the check (0 / p == -0.0) but would decode as +0.0: never a decimal
                if m / p == f and (f != 0.0 or math.copysign(1.0, f) > 0.0):
                    kinds.append(_K_DEC + e)
                    _put_int(wd, m)
                    n_vd += 1
                    n_hinted += 1
                else:
                    kinds.append(_K_F64)  # decided below
                    others.append(k)
                    other_f.append(f)
                    other_at.append(len(wd))
            else:  # no hint (or a plain batch)
                kinds.append(_K_F64)
                others.append(k)
                other_f.append(f)
                other_at.append(len(wd))
        elif type(v) is int:
            kinds.append(_K_INT)
            if not _put_int(wv, v):  # beyond 64 bits: the general path raises
                return None
            n_vi += 1
        elif type(v) is bool:
            kinds.append(_K_TRUE if v else _K_FALSE)
            plain = True
        elif v is None:
            kinds.append(_K_NONE)
            plain = True
        elif type(v) is str:
            kinds.append(_K_STR)
            vs.append(v)
            plain = True
        else:  # no wire type: the general path raises
            return None
        qv: int
        if q is good:
            qv = 0
        elif q is uncertain:
            qv = 1
        elif q is bad:
            qv = 2
        elif type(q) is int:
            qv = q
        else:
            return None
        if qv:
            _put_int(wq, k)
            if not _put_int(wq, qv):
                return None
            n_q += 2
        if r is not None:
            if type(r) is not str:  # (a reason is a str; anything else: the general path packs it)
                return None
            rp.append(k)
            rp.append(r)
    vd = wd.getvalue()
    vg = b""
    vf = b""
    if n_float:
        if plain and n_hinted:  # floats decided by a hint before the batch turned plain: decide them all
            others = []
            other_f = []
            other_at = []
            for k in range(n):
                if kinds[k] >= _K_F64:
                    sk: tuple[object, object, object, object, object] = samples[k]
                    fv = sk[2]
                    if type(fv) is float:  # (always: the floats' kinds)
                        others.append(k)
                        other_f.append(fv)
                        other_at.append(0)
            vd = b""
            n_vd = 0
        if others:
            vd, vg, vf, n_dec = _decide_others(others, other_f, other_at, kinds, vd)
            n_vd += n_dec
    return _finish(n, wi, wt, kinds, vd, n_vd, vg, vf, wv, n_vi, vs, wq, n_q, rp)


def _put_int(w: BytesWriter, v: int) -> bool:
    """Appends msgpack's encoding of ``v``, the form msgpack-python picks: the smallest, unsigned for
    v >= 0 (fixint, uint 8..64), signed below (negative fixint, int 8..64).  False (nothing written)
    beyond 64 bits, where msgpack raises."""
    if v >= 0:
        if v < 128:
            w.append(v)
        elif v < 256:
            w.append(0xCC)
            w.append(v)
        elif v < 65536:
            w.append(0xCD)
            w.append(v >> 8)
            w.append(v & 0xFF)
        elif v < 4294967296:
            w.append(0xCE)
            write_i32_be(w, v if v < 2147483648 else v - 4294967296)  # the same 4 bytes
        elif v < 18446744073709551616:
            w.append(0xCF)
            write_i64_be(w, v if v < 9223372036854775808 else v - 18446744073709551616)  # the same 8 bytes
        else:
            return False
    elif v >= -32:
        w.append(v + 256)  # negative fixint: 0xe0..0xff
    elif v >= -128:
        w.append(0xD0)
        w.append(v + 256)
    elif v >= -32768:
        w.append(0xD1)
        write_i16_be(w, v)
    elif v >= -2147483648:
        w.append(0xD2)
        write_i32_be(w, v)
    elif v >= -9223372036854775808:
        w.append(0xD3)
        write_i64_be(w, v)
    else:
        return False
    return True


def _put_array(w: BytesWriter, n: int) -> None:
    """msgpack's array header for ``n`` items."""
    if n < 16:
        w.append(0x90 + n)
    elif n < 65536:
        w.append(0xDC)
        w.append(n >> 8)
        w.append(n & 0xFF)
    else:
        w.append(0xDD)
        write_i32_be(w, n)  # (below 2**31: a list's length)


def _put_size(w: BytesWriter, n: int, code8: int, code16: int, code32: int) -> None:
    """A msgpack length ``n`` (below 2**31) after the smallest of its three type codes: 8, 16 or 32 bits."""
    if n < 256:
        w.append(code8)
        w.append(n)
    elif n < 65536:
        w.append(code16)
        w.append(n >> 8)
        w.append(n & 0xFF)
    else:
        w.append(code32)
        write_i32_be(w, n)


def _put_bin(w: BytesWriter, b: bytes) -> None:
    """msgpack's bin (as msgpack-python packs bytes with use_bin_type)."""
    _put_size(w, len(b), 0xC4, 0xC5, 0xC6)
    w.write(b)


def _put_str(w: BytesWriter, s: str) -> None:
    """msgpack's str, UTF-8 (strict: a lone surrogate raises UnicodeEncodeError, as msgpack-python)."""
    b = s.encode("utf-8")
    n = len(b)
    if n < 32:
        w.append(0xA0 + n)
    else:
        _put_size(w, n, 0xD9, 0xDA, 0xDB)
    w.write(b)


def _pow10(e: int) -> float:
    """10.0 ** e for e in 1..6 (1.0 otherwise): compiled, a few C comparisons, where a list of floats
    costs a lookup and an unboxing (~3 ns a sample)."""
    if e == 1:
        return 10.0
    if e == 2:
        return 100.0
    if e == 3:
        return 1000.0
    if e == 4:
        return 10000.0
    if e == 5:
        return 100000.0
    if e == 6:
        return 1000000.0
    return 1.0


def _round(x: float) -> int:
    """``round(x)`` (half to even) for ``|x| < 2**53``, without a call to the builtin (compiled: C)."""
    t = int(x)  # toward zero; x - t is exact
    d = x - t
    if d > 0.5 or (d == 0.5 and t % 2 == 1):
        return t + 1
    if d < -0.5 or (d == -0.5 and t % 2 == 1):
        return t - 1
    return t


def _decide_others(others: list[int], other_f: list[float], other_at: list[int], kinds: BytesWriter,
                   vd: bytes) -> tuple[bytes, bytes, bytes, int]:
    """Floats the hint did not make exact: float32 when exact, else the smallest decimal (e 0..6) below
    9e9 in magnitude, else float64 (the codec's search).  Sets their kinds; returns vd with their
    mantissas spliced in (``other_at``: where in vd each one goes), the float32 and float64 values
    (little endian) and the number of mantissas added."""
    pows = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0]
    out = BytesWriter()
    f32s = BytesWriter()
    f64s = BytesWriter()
    done = 0  # vd's bytes copied to out
    n_dec = 0
    for j in range(len(others)):
        k = others[j]
        f = other_f[j]
        if _is_float32(f):
            kinds[k] = _K_F32
            write_f32_le(f32s, f)
            continue
        found = False
        if -_DEC_MAX < f < _DEC_MAX:  # beyond, a mantissa could pass 2**53: never a decimal
            for e in range(7):
                p = pows[e]
                m = _round(f * p)
                if m / p == f:
                    kinds[k] = _K_DEC + e
                    at = other_at[j]
                    if at > done:
                        out.write(vd[done:at])
                        done = at
                    _put_int(out, m)
                    n_dec += 1
                    found = True
                    break
        if not found:
            kinds[k] = _K_F64
            write_f64_le(f64s, f)
    if n_dec == 0:
        return vd, f32s.getvalue(), f64s.getvalue(), 0
    if done < len(vd):
        out.write(vd[done:])
    return out.getvalue(), f32s.getvalue(), f64s.getvalue(), n_dec


def _is_float32(f: float) -> bool:
    """Whether ``f`` is exactly a float32 (what a ``struct`` "<f" round trip tells), in float arithmetic.

    In float32's normal range, Veltkamp's split of f at 24 bits (c = f * (2**29 + 1), f rounded to 24
    bits is c - (c - f)) gives f back exactly when f has at most 24 significant bits.  The product is
    written f * 2**29 + f: exact, then one rounding, so a C compiler's fused multiply-add gives the same
    c (setup.py also turns contraction off).  Below it, float32's subnormals: the multiples of 2**-149.
    Beyond 2**128: not a float32.  For finite floats (the only ones here)."""
    a = f if f >= 0.0 else -f
    if _F32_MIN_NORMAL <= a < _F32_LIMIT:
        c = f * _TWO29 + f
        return c - (c - f) == f
    if a < _F32_MIN_NORMAL:
        g = a * _TWO149  # exact (a power of two), below 2**23
        return (g + _ROUNDER) - _ROUNDER == g  # an integer: rounding it to one changes nothing
    return False


def _finish(n: int, wi: BytesWriter, wt: BytesWriter, kinds: BytesWriter, vd: bytes, n_vd: int, vg: bytes,
            vf: bytes, wv: BytesWriter, n_vi: int, vs: list[str], wq: BytesWriter, n_q: int,
            rp: list[Any]) -> tuple[int, bytes]:
    """The map entries, in the pure path's order: i, ts, vd, vg, vf, k, vi, vs, q, r."""
    out = BytesWriter()
    out.write(b"\xa1i")
    _put_array(out, n)
    out.write(wi.getvalue())
    out.write(b"\xa2ts")
    _put_array(out, n)
    out.write(wt.getvalue())
    entries = 3  # i, ts, k
    if n_vd:
        out.write(b"\xa2vd")
        _put_array(out, n_vd)
        out.write(vd)
        entries += 1
    if vg:
        out.write(b"\xa2vg")
        _put_bin(out, vg)
        entries += 1
    if vf:
        out.write(b"\xa2vf")
        _put_bin(out, vf)
        entries += 1
    kb = kinds.getvalue()
    first = kb[0]
    out.write(b"\xa1k")
    if kb.count(first) == n:  # one kind: an int
        _put_int(out, first)
    else:
        _put_bin(out, kb)
    if n_vi:
        out.write(b"\xa2vi")
        _put_array(out, n_vi)
        out.write(wv.getvalue())
        entries += 1
    if vs:
        out.write(b"\xa2vs")
        _put_array(out, len(vs))
        for x in vs:
            _put_str(out, x)
        entries += 1
    if n_q:
        out.write(b"\xa1q")
        _put_array(out, n_q)
        out.write(wq.getvalue())
        entries += 1
    if rp:
        out.write(b"\xa1r")
        _put_array(out, len(rp))
        for j in range(0, len(rp), 2):
            kr: int = rp[j]
            rs: str = rp[j + 1]
            _put_int(out, kr)
            _put_str(out, rs)
        entries += 1
    return entries, out.getvalue()
