"""Loading the optional native build: the mypyc-compiled kernels (setup.py), or None for pure Python.

A kernel module (``gateway/codec_kernel.py``, ``pipelines/normalise_kernel.py``) is used only when
it runs compiled, when ``EDGEGW_PURE_PYTHON`` is not set, and when the compiled file is not older
than its source (an editable install whose kernel was edited since the last ``pip install -e .``:
the stale extension would run the old code).  Anything else: None, and the caller's pure-Python
code does the work (same results, slower); a native build that is there but cannot be used says so
in the log, once, at import.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["load_kernel", "pure_python_forced"]

log = logging.getLogger("edgegw.native")


def pure_python_forced() -> bool:
    return os.environ.get("EDGEGW_PURE_PYTHON", "") not in ("", "0")


def load_kernel(module: str, name: str) -> Any:
    """``module.name`` from the compiled module, or None (see the module's doc)."""
    if pure_python_forced():
        return None
    try:
        mod = importlib.import_module(module)
    except (ImportError, ValueError) as err:
        # a native build that does not load here (an older glibc, another Python; librt, mypyc's runtime
        # library, missing or older than the build's: ValueError), or a pure install without librt
        spec = importlib.util.find_spec(module)
        if spec is not None and (spec.origin or "").endswith(".py"):
            return None  # a pure-Python install: nothing to say
        log.warning("The native build of %s does not load (%s); the pure-Python code runs instead "
                    "(same output, slower: docs/benchmarks.md).", module, err)
        return None
    if not getattr(mod, "COMPILED", False):
        return None  # a pure-Python install: nothing to say
    built = Path(mod.__file__ or "")
    source = built.with_name(module.rsplit(".", 1)[-1] + ".py")
    try:
        stale = source.stat().st_mtime > built.stat().st_mtime
    except OSError:  # no source beside it: nothing to compare
        stale = False
    if stale:
        log.warning("The native build of %s is older than its source %s (reinstall: pip install -e .); "
                    "the pure-Python code runs instead.", module, source.name)
        return None
    return getattr(mod, name)
