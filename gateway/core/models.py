"""The names the config models are built from: pydantic's, or in plain mode their stand-ins.

Every config model module imports ``BaseModel``, ``Field``, the validators and the rest from here,
never from pydantic.  In a normal process (``edgegw check``, ``ingest``, tests) these are pydantic's
own.  The process of ``edgegw run`` reads no config itself (a child process does, :mod:`gateway.prebuild`)
and switches plain mode on (:func:`gateway.core.plain.enable`) before any config module is imported:
the same class statements then make ordinary classes that load the child's pickled models, and the
gateway's process never imports pydantic (#17).  mypy always sees pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.core import plain

__all__ = [
    "PLAIN",
    "BaseModel",
    "ConfigDict",
    "Field",
    "PrivateAttr",
    "TypeAdapter",
    "ValidationError",
    "field_validator",
    "model_validator",
]

if TYPE_CHECKING or not plain.enabled():  # mypy always sees pydantic
    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        PrivateAttr,
        TypeAdapter,
        ValidationError,
        field_validator,
        model_validator,
    )
else:
    from gateway.core.plain import (
        BaseModel,
        ConfigDict,
        Field,
        PrivateAttr,
        TypeAdapter,
        ValidationError,
        field_validator,
        model_validator,
    )

PLAIN: bool = plain.enabled()
