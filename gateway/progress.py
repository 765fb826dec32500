"""Progress bars for long commands (``buffer export``), on stderr and only for a person watching.

A bar is drawn only when stderr is a terminal and the logs are text: under systemd, in a pipe, in a
test or with ``--log-format json`` the callback does nothing, so stderr stays the log and stdout the data.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar", "wanted"]


def wanted() -> bool:
    from gateway.logs import JsonFormatter

    json_logs = any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
    return sys.stderr.isatty() and not json_logs


@contextmanager
def progress_bar(description: str, total: int | None, unit: str) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``; the bar (count, rate, time left) is removed when the block ends."""
    if not wanted():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
