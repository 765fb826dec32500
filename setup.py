"""The optional native build: the gateway's two hot loops compiled to C extensions by mypyc.

``gateway/codec_kernel.py`` (the v2 encoder's per-sample loop) and ``pipelines/normalise_kernel.py``
(the common samples of the normalise stage) are compiled when mypyc (part of mypy, a build
requirement) and a C compiler are there; the metadata is in pyproject.toml.  Without a compiler,
on a Python or platform mypyc does not support, or with ``EDGEGW_PURE_PYTHON=1`` in the build's
environment, the package is pure Python and behaves the same, slower (docs/benchmarks.md, pipeline).
A failed compile is a warning, never a failed install: the extensions are optional.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import setup

NATIVE_MODULES = ["gateway/codec_kernel.py", "pipelines/normalise_kernel.py"]


def _native_extensions() -> list[Any]:
    if os.environ.get("EDGEGW_PURE_PYTHON", "") not in ("", "0"):
        print("edgegw: EDGEGW_PURE_PYTHON is set: pure-Python build", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as err:  # a build without its build requirements (--no-build-isolation)
        print(f"edgegw: mypyc is not available ({err}): pure-Python build", file=sys.stderr)
        return []
    try:
        extensions = mypycify(NATIVE_MODULES, opt_level="3", debug_level="0", group_name="edgegw_native")
    except Exception as err:  # noqa: BLE001  # a mypyc that cannot compile these (any reason): pure Python
        print(f"edgegw: mypyc failed ({err}): pure-Python build", file=sys.stderr)
        return []
    for ext in extensions:
        ext.optional = True  # no C compiler, or it fails: build_ext warns and the install goes on
        if os.name != "nt":  # (gcc, clang) no fused multiply-add: each float operation rounds, as Python's
            ext.extra_compile_args = [*(ext.extra_compile_args or []), "-ffp-contract=off"]
    return extensions


setup(ext_modules=_native_extensions())
