"""The per-sample work of the v2 encoder (:meth:`gateway.codec.Encoder.encode`) as one typed loop, for mypyc.

This module is compiled to a C extension by the optional native build (``setup.py``, mypyc); it is
then used by :mod:`gateway.codec` for the common batch.  Interpreted it would be slower than the
codec's own column-at-a-time code, so the codec uses it only when compiled (:data:`COMPILED`), except
in the tests, which run it both ways and compare the bytes with the pure-Python path.

:func:`columns_v2` returns the columns of a batch (int point indices in the catalog, int times in
0..2**62, good / uncertain / bad qualities, values of the wire's kinds: int, finite float, bool,
None, str) exactly as the pure-Python path builds them: the same keys in the same order, the same
values, so the same bytes.  A batch with a bool, a gap or a string is a *plain* one, as for the pure
path (:func:`gateway.codec._values_v2`): every float is then decided without the point's decimal hint
(float32 when exact, else the smallest decimal, else float64), and so is a batch where a float times
its hint overflows.  For anything else (NaN or infinity, an index or time out of range, a value or
quality of no wire type) it returns None and the pure-Python path decides (and raises what it
raises).  Keep the two in step: tests/test_codec_kernel.py compares them.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Final

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


def columns_v2(samples: list[Any], npoints: int, kind_f: list[int]) -> dict[str, Any] | None:
    """The columns i, ts, vd, vg, vf, k, vi, vs, q, r of a v2 batch of ``samples`` (not empty), or None
    when the batch needs the general path.  ``kind_f``: per point index, K_DEC + the decimal exponent
    of its scaling, K_DEC where it has none (:attr:`gateway.codec.DecimalHints.kind_f`)."""
    good, uncertain, bad = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD
    pows = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0]  # a local list: C doubles, compiled
    n = len(samples)
    di: list[int] = []
    dts: list[int] = []
    kinds: list[int] = []  # one kind a sample, appended (compiled: no generic bytearray store)
    vd: list[int] = []
    vi: list[int] = []
    vs: list[str] = []
    qp: list[int] = []
    rp: list[Any] = []
    # floats no hint makes exact: (sample position, position in vd order, value), decided after the loop
    others: list[int] = []
    other_f: list[float] = []
    n_float = 0
    n_hinted = 0  # floats made decimals by their point's hint
    plain = False  # a bool, gap or string seen (or a hint overflowed): no hints, as the pure path
    prev_i = 0
    prev_t = 0
    first = True
    for k in range(n):
        s: tuple[object, object, object, object, object] = samples[k]
        i_o, t_o, v, q, r = s
        if type(i_o) is not int or type(t_o) is not int:
            return None
        i: int = i_o
        t: int = t_o
        if i < 0 or i >= npoints or t < 0 or t > _TS_MAX:
            return None
        if first:
            di.append(i)
            dts.append(t)
            first = False
        else:
            di.append(i - prev_i)
            dts.append(t - prev_t)
        prev_i = i
        prev_t = t
        if type(v) is float:
            f: float = v
            n_float += 1
            e = kind_f[i] - _K_DEC
            if not -_DEC_MAX < f < _DEC_MAX:
                if f - f != 0.0:  # NaN or an infinity: the general path raises
                    return None
                if e > 0 and not plain and (f * pows[e]) - (f * pows[e]) != 0.0:
                    plain = True  # the pure path's hinted product overflows: it searches them all
                kinds.append(_K_F64)  # float32 or float64 (no decimal beyond 9e9): decided below
                others.append(k)
                other_f.append(f)
                vd.append(0)
            elif e > 0 and not plain:
                p = pows[e]
                m = _round(f * p)
                # -0.0 passes the check (0 / p == -0.0) but would decode as +0.0: never a decimal
                if m / p == f and (f != 0.0 or math.copysign(1.0, f) > 0.0):
                    kinds.append(_K_DEC + e)
                    vd.append(m)
                    n_hinted += 1
                else:
                    kinds.append(_K_F64)  # decided below
                    others.append(k)
                    other_f.append(f)
                    vd.append(0)  # a placeholder, removed below unless the search finds a decimal
            else:  # no hint (or a plain batch)
                kinds.append(_K_F64)
                others.append(k)
                other_f.append(f)
                vd.append(0)
        elif type(v) is int:
            kinds.append(_K_INT)
            vi.append(v)
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
            qp.append(k)
            qp.append(qv)
        if r is not None:
            rp.append(k)
            rp.append(r)
    if n_float == 0:
        return _finish(di, dts, kinds, vd, vi, vs, qp, rp, b"", b"")
    if plain and n_hinted:  # floats decided by a hint before the batch turned plain: decide them all
        others = []
        other_f = []
        for k in range(n):
            if kinds[k] >= _K_F64:
                sk: tuple[object, object, object, object, object] = samples[k]
                fv = sk[2]
                if type(fv) is float:  # (always: the floats' kinds)
                    others.append(k)
                    other_f.append(fv)
        vd = [0] * len(others)
    f32s = b""
    f64s = b""
    if others:
        f32s, f64s = _decide_others(others, other_f, kinds, vd, n)
    return _finish(di, dts, kinds, vd, vi, vs, qp, rp, f32s, f64s)


def _round(x: float) -> int:
    """``round(x)`` (half to even) for ``|x| < 2**53``, without a call to the builtin (compiled: C)."""
    t = int(x)  # toward zero; x - t is exact
    d = x - t
    if d > 0.5 or (d == 0.5 and t % 2 == 1):
        return t + 1
    if d < -0.5 or (d == -0.5 and t % 2 == 1):
        return t - 1
    return t


def _decide_others(others: list[int], other_f: list[float], kinds: list[int], vd: list[int],
                   n: int) -> tuple[bytes, bytes]:
    """Floats the hint did not make exact: float32 when exact, else the smallest decimal (e 0..6) below
    9e9 in magnitude, else float64 (the codec's search).  Fills their kinds and mantissas; returns the
    packed vg and vf."""
    pows = [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0]
    m_list: list[int] = []  # per other float: its mantissa when a decimal (else 0, unused)
    f32_list: list[float] = []
    f64_list: list[float] = []
    for j in range(len(others)):
        k = others[j]
        f = other_f[j]
        if _is_float32(f):
            kinds[k] = _K_F32
            f32_list.append(f)
            m_list.append(0)
            continue
        found = False
        if -_DEC_MAX < f < _DEC_MAX:  # beyond, a mantissa could pass 2**53: never a decimal
            for e in range(7):
                p = pows[e]
                m = _round(f * p)
                if m / p == f:
                    kinds[k] = _K_DEC + e
                    m_list.append(m)
                    found = True
                    break
        if not found:
            kinds[k] = _K_F64
            f64_list.append(f)
            m_list.append(0)
    # vd holds one entry per float, in sample order: keep those of decimal floats, the others' from m_list
    out: list[int] = []
    pos = 0  # in vd: the floats so far
    j = 0  # in others
    n_others = len(others)
    for k in range(n):
        kd = kinds[k]
        if kd < _K_F64:  # not a float: none, false, true, int, str
            continue
        if j < n_others and others[j] == k:
            if kd >= _K_DEC:
                out.append(m_list[j])
            j += 1
        elif kd >= _K_DEC:  # decided by its hint
            out.append(vd[pos])
        pos += 1
    vd[:] = out
    vg = struct.pack(f"<{len(f32_list)}f", *f32_list) if f32_list else b""
    vf = struct.pack(f"<{len(f64_list)}d", *f64_list) if f64_list else b""
    return vg, vf


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


def _finish(di: list[int], dts: list[int], kinds: list[int], vd: list[int], vi: list[int], vs: list[str],
            qp: list[int], rp: list[Any], vg: bytes, vf: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"i": di, "ts": dts}
    if vd:
        out["vd"] = vd
    if vg:
        out["vg"] = vg
    if vf:
        out["vf"] = vf
    first = kinds[0]
    out["k"] = first if kinds.count(first) == len(kinds) else bytes(kinds)  # bytes(list): in C
    if vi:
        out["vi"] = vi
    if vs:
        out["vs"] = vs
    if qp:
        out["q"] = qp
    if rp:
        out["r"] = rp
    return out
