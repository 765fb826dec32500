"""What the tests of the native build's kernels share: a kernel module run by the interpreter, and
the compiled one or a skip (a failure under CI, where the native build must be there)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import IN_CI

__all__ = ["interpreted", "need_compiled"]

K = TypeVar("K")


def interpreted(source: Path, name: str) -> Any:
    """The kernel module at ``source`` run by the interpreter (a module of its own named ``name``,
    never the extension)."""
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.COMPILED is False
    return mod


def need_compiled(kernel: K | None) -> K:
    """``kernel`` (the compiled one), or skip the test where there is no native build."""
    if kernel is None:
        if IN_CI and os.environ.get("EDGEGW_PURE_PYTHON", "") in ("", "0"):
            pytest.fail("the native build is missing: `pip install -e .` compiles it (mypyc and gcc)")
        pytest.skip("no native build here (pure-Python install): the compiled kernel is not tested")
    return kernel
