"""gateway.core.native.load_kernel when a kernel module does not import: a pure-Python install
without librt (mypyc's runtime library, which the compiled v2 encoder's kernel writes with) falls back
to the pure path silently; a compiled one that does not load says so."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.native import load_kernel

__all__: list[str] = []


@pytest.fixture
def kernel_pkg(tmp_path: Path) -> Iterator[Path]:
    pkg = tmp_path / "edgegw_fake_kernels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        yield pkg
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("edgegw_fake_kernels")]:
            del sys.modules[name]


def test_a_pure_module_that_needs_a_missing_runtime_library_is_silently_pure(
        kernel_pkg: Path, caplog: pytest.LogCaptureFixture) -> None:
    (kernel_pkg / "needs_librt.py").write_text("from librt_not_installed_here.strings import BytesWriter\n"
                                               "COMPILED = False\ndef kernel(): pass\n")
    with caplog.at_level(logging.DEBUG, logger="edgegw.native"):
        assert load_kernel("edgegw_fake_kernels.needs_librt", "kernel") is None
    assert not caplog.records


def test_a_compiled_module_that_does_not_load_is_reported(kernel_pkg: Path, caplog: pytest.LogCaptureFixture) -> None:
    # an extension file that is not one (as a native build for another machine): the import fails
    (kernel_pkg / f"broken{_ext_suffix()}").write_bytes(b"not an ELF file")
    (kernel_pkg / "broken.py").write_text("COMPILED = False\n")
    with caplog.at_level(logging.WARNING, logger="edgegw.native"):
        assert load_kernel("edgegw_fake_kernels.broken", "kernel") is None
    assert any("does not load" in r.getMessage() for r in caplog.records)


def _ext_suffix() -> str:
    import importlib.machinery

    return importlib.machinery.EXTENSION_SUFFIXES[0]
