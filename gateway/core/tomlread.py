"""Reading TOML: ``tomli`` where it is installed (a dependency: its compiled build reads a
100,000-point config in about a third of the time), else the standard library's ``tomllib`` (the
same parser, pure Python; same results and error messages)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tomllib import TOMLDecodeError, loads
else:
    try:
        from tomli import TOMLDecodeError, loads
    except ImportError:  # pragma: no cover - an install without the dependency still works
        from tomllib import TOMLDecodeError, loads

__all__ = ["TOMLDecodeError", "loads"]
