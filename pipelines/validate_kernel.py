"""The clock check's scan of a batch's source times (:class:`pipelines.validate.ClockCheck`), for mypyc.

Compiled by the optional native build (``setup.py``) and then used by ``ClockCheck`` before its own
code: True means every sample's time is an int within ``[lo, hi]`` and the batch passes unchanged,
as the pure-Python check decides for such a batch; False hands the batch to the pure-Python check,
which decides everything else.  tests/pipelines/test_validate_kernel.py compares the two.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["COMPILED", "times_within"]


def _compiled() -> bool:
    """True when this module runs as a mypyc-compiled extension."""
    return not __file__.endswith((".py", ".pyc"))


COMPILED: Final = _compiled()


def times_within(batch: list[Any], lo: int, hi: int) -> bool:
    """Whether every sample's source time (its second element) is an int in ``[lo, hi]``."""
    prev: object = None  # a poll stamps its samples with one int object: checked once
    for sample in batch:
        if type(sample) is not tuple or len(sample) != 5:
            return False
        s: tuple[object, object, object, object, object] = sample
        t_o = s[1]
        if t_o is prev:
            continue
        if type(t_o) is not int:
            return False
        t: int = t_o
        if t < lo or t > hi:
            return False
        prev = t_o
    return True
