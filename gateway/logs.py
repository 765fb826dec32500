"""Log output: sentences for a person (``text``, the default) or one JSON object per line (``json``).

JSON lines are for a log shipper (journald -> Loki / Elasticsearch, a plant's SIEM): every line is one
object with ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message`` (the formatted
sentence), the structured fields the log call passed with ``extra=`` (``device``, ``reason``, ``point``,
``topic``, ...) and, for an error with a traceback, ``exception`` (the traceback as one string). A
field that would shadow one of those four is prefixed ``field_``. Values that JSON cannot hold are
written as their ``str()``. Non-ASCII (Chinese display names) is written as is, in UTF-8.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["ENV_VAR", "TEXT_FORMAT", "JsonFormatter", "LogFormat", "configure_logging"]

ENV_VAR = "EDGEGW_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


# every attribute a bare LogRecord has: what is left on a record beyond these came from extra=
_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
_CORE = ("time", "level", "logger", "message")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside strings are escaped by json)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _RESERVED or key.startswith("_"):
                continue
            out[f"field_{key}" if key in _CORE else key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(fmt: LogFormat | str | None, *, verbose: bool = False, stream: TextIO | None = None) -> None:
    """Root handler on stderr.  ``fmt`` None: ``$EDGEGW_LOG_FORMAT``, else text.  Raises ValueError
    for an unknown format (the caller turns it into a usage error)."""
    chosen = LogFormat(fmt or os.environ.get(ENV_VAR) or LogFormat.TEXT)
    handler = logging.StreamHandler(stream or sys.stderr)
    if chosen is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)  # a library's warnings.warn() would otherwise print plain lines
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
