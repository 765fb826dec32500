"""Shared pieces of the typed config: the strict base model and the fields every point has.

Driver configs (``drivers/<protocol>/config.py``) build on these; the root model in
:mod:`gateway.config` unions them.  Validation here never does I/O.
"""

from __future__ import annotations

import enum
import math
import re
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.errors import IdentifierError
from pipelines.identifiers import parse_handle

__all__ = ["KEY_PATTERN", "DataGrade", "DeviceBase", "Key", "PointBase", "StrictModel", "check_code"]

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Key = Annotated[
    str,
    Field(pattern=KEY_PATTERN, description="letters, digits, '_', '.', '-'; used in topics and minted codes"),
]
_KEY_RE = re.compile(KEY_PATTERN)


class StrictModel(BaseModel):
    """Unknown keys are errors; models are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class DataGrade(enum.StrEnum):
    """GB/T 43697-2024 data grades."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"


def check_code(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_handle(value)
    except IdentifierError as err:
        raise ValueError(str(err)) from None
    return value


class PointBase(StrictModel):
    """What every point has, whatever its protocol."""

    name: Key
    code: str | None = Field(
        default=None,
        description="industrial-internet identifier code (88.<node>.<enterprise>/<suffix>); "
        "minted from gateway.enterprise_prefix + device + point name when omitted",
    )
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    min: float | None = Field(default=None, description="below this the sample is quality bad (out_of_range)")
    max: float | None = Field(default=None, description="above this the sample is quality bad (out_of_range)")
    data_grade: DataGrade = DataGrade.GENERAL
    tags: dict[str, str] = Field(default_factory=dict)

    _check_code = field_validator("code")(check_code)

    @field_validator("scale", "offset")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("tags")
    @classmethod
    def _tag_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not _KEY_RE.match(k):
                raise ValueError(f"tag name {k!r} must be letters, digits, '_', '.', '-'")
        return v

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class DeviceBase(StrictModel):
    name: Key
    code: str | None = Field(default=None, description="identifier code of the device itself")
    asset: str = ""
    line: str = ""
    poll_interval_ms: int = Field(default=1000, ge=10, le=86_400_000)
    timeout_ms: int = Field(default=1000, ge=10, le=600_000)
    backoff_max_ms: int = Field(default=30_000, ge=100, le=3_600_000)
    enabled: bool = True
    tags: dict[str, str] = Field(default_factory=dict)

    _check_code = field_validator("code")(check_code)
