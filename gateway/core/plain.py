"""Plain mode: the config model classes without pydantic, for a process that only reads configs.

``edgegw run`` reads, validates and compiles its config in another process (:mod:`gateway.prebuild`)
and gets back the validated models pickled.  Its own process never validates anything, so it has no
use for pydantic and pydantic-core (about 12 MB of its resident size with the model classes, #17).
:func:`enable`, called before any config module is imported, makes :mod:`gateway.core.models` hand
out the stand-ins below instead of pydantic's names: the same ``class`` statements then build
ordinary classes.

What a stand-in model does: it is made by unpickling (the state is pydantic's own ``__getstate__``
form, so one pickle loads in either mode, both ways), and then reads like the pydantic model
(fields, properties, methods, private attributes and their defaults), compares equal by type and
values, copies (``model_copy(update=...)``) and dumps (``model_dump``, Python values).  It does not
validate: validators are not run, ``Field(...)`` only records a default, and a model built in code
(``Model(a=1)``) takes the values as given, with the declared defaults for the others.  Parsing a
config (``TypeAdapter``, ``model_validate``) is refused: that is the reading process's job.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import inspect
import sys
import typing
from collections.abc import Callable
from typing import Any

__all__ = [
    "BaseModel",
    "ConfigDict",
    "Field",
    "PrivateAttr",
    "TypeAdapter",
    "ValidationError",
    "enable",
    "enabled",
    "field_validator",
    "model_validator",
]

_on = False
_MISSING: Any = object()


def enable() -> None:
    """From now on :mod:`gateway.core.models` gives the stand-ins; refused once it gave pydantic's."""
    global _on
    models = sys.modules.get("gateway.core.models")
    if models is not None and not getattr(models, "PLAIN", False):
        raise RuntimeError("plain mode must be switched on before any config model is imported")
    _on = True


def enabled() -> bool:
    return _on


class _FieldInfo:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None) -> None:
        self.default, self.default_factory = default, default_factory

    def value(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        return self.default


def Field(default: Any = _MISSING, *, default_factory: Callable[[], Any] | None = None,
          **_: Any) -> Any:
    return _FieldInfo(default, default_factory)


class _PrivateInfo(_FieldInfo):
    __slots__ = ()


def PrivateAttr(default: Any = _MISSING, *, default_factory: Callable[[], Any] | None = None) -> Any:
    return _PrivateInfo(default, default_factory)


def ConfigDict(**settings: Any) -> dict[str, Any]:
    return settings


def field_validator(*_: Any, **__: Any) -> Callable[[Any], Any]:
    return lambda fn: fn


def model_validator(*_: Any, **__: Any) -> Callable[[Any], Any]:
    return lambda fn: fn


class ValidationError(ValueError):
    """Never raised in plain mode (nothing validates); here so that ``except ValidationError`` reads."""


class TypeAdapter:
    def __init__(self, *_: Any, **__: Any) -> None:
        raise RuntimeError("this process reads no config (plain mode): validate in a process of its own")


class _Field:
    """What ``Model.model_fields[name]`` gives here: the field's annotation (as far as it resolves)."""

    __slots__ = ("annotation", "default")

    def __init__(self, annotation: Any, default: Any) -> None:
        self.annotation, self.default = annotation, default


class _ModelMeta(type):
    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any) -> _ModelMeta:
        privates: dict[str, _FieldInfo] = {}
        defaults: dict[str, _FieldInfo] = {}
        for base in reversed(bases):
            privates.update(getattr(base, "__private_attributes__", {}))
            defaults.update(getattr(base, "__plain_defaults__", {}))
        for key in [k for k in ns.get("__annotations__", {}) if not k.startswith("__")]:
            value = ns.get(key, _MISSING)
            if key.startswith("_"):
                privates[key] = value if isinstance(value, _FieldInfo) else _PrivateInfo(value, None)
                ns.pop(key, None)
            elif isinstance(value, _FieldInfo):
                defaults[key] = value
                del ns[key]
            elif key != "model_config":
                defaults[key] = _FieldInfo(value, None)
        ns["__private_attributes__"] = privates
        ns["__plain_defaults__"] = defaults
        return super().__new__(mcs, name, bases, ns, **kw)

    @property
    def model_fields(cls) -> dict[str, _Field]:
        """Every field with its annotation, evaluated in the module of the class that declares it."""
        out: dict[str, _Field] = {}
        for klass in reversed(cls.__mro__):
            module = sys.modules.get(klass.__module__)
            for key, ann in inspect.get_annotations(klass).items():
                if key.startswith("_") or key == "model_config":
                    continue
                if isinstance(ann, str):
                    with contextlib.suppress(Exception):  # a name only mypy sees: keep the text
                        ann = eval(ann, vars(module) if module else {}, dict(vars(typing)))
                out[key] = _Field(ann, cls.__plain_defaults__[key].default)  # type: ignore[attr-defined]
        return out


def _dump(v: Any, mode: str, exclude_none: bool) -> Any:
    if isinstance(v, BaseModel):
        return v.model_dump(mode=mode, exclude_none=exclude_none)
    if isinstance(v, dict):
        return {k: _dump(x, mode, exclude_none) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        items = [_dump(x, mode, exclude_none) for x in v]
        return items if mode == "json" else type(v)(items)
    if mode == "json" and isinstance(v, enum.Enum):
        return v.value
    return v


class BaseModel(metaclass=_ModelMeta):
    """A pydantic model's stand-in (see the module's text)."""

    __slots__ = ("__dict__", "__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__")
    __private_attributes__: dict[str, _FieldInfo]
    __plain_defaults__: dict[str, _FieldInfo]

    def __init__(self, **values: Any) -> None:
        fields = {}
        for key, info in type(self).__plain_defaults__.items():
            if key in values:
                fields[key] = values.pop(key)
            elif info.default is not _MISSING or info.default_factory is not None:
                fields[key] = info.value()
            else:
                raise TypeError(f"{type(self).__name__}: field {key!r} is required")
        if values:
            raise TypeError(f"{type(self).__name__}: unknown fields {sorted(values)}")
        privates = type(self).__private_attributes__
        private = {k: i.value() for k, i in privates.items() if i.default is not _MISSING or i.default_factory}
        self.__setstate__({"__dict__": fields, "__pydantic_fields_set__": set(fields),
                           "__pydantic_private__": private if privates else None})

    def __getstate__(self) -> dict[str, Any]:
        return {
            "__dict__": self.__dict__,
            "__pydantic_extra__": self.__pydantic_extra__,
            "__pydantic_fields_set__": self.__pydantic_fields_set__,
            "__pydantic_private__": self.__pydantic_private__,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "__pydantic_fields_set__", state.get("__pydantic_fields_set__", set()))
        setattr_(self, "__pydantic_extra__", state.get("__pydantic_extra__"))
        setattr_(self, "__pydantic_private__", state.get("__pydantic_private__"))
        setattr_(self, "__dict__", state.get("__dict__", {}))

    def __getattr__(self, name: str) -> Any:
        info = type(self).__private_attributes__.get(name)
        if info is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        try:
            private = object.__getattribute__(self, "__pydantic_private__")
        except AttributeError:
            private = None
        if private is not None and name in private:
            return private[name]
        if info.default is _MISSING and info.default_factory is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        value = info.value()
        self.__setattr__(name, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).__private_attributes__:
            private = getattr(self, "__pydantic_private__", None)
            if private is None:
                private = {}
                object.__setattr__(self, "__pydantic_private__", private)
            private[name] = value
        else:
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseModel):
            return NotImplemented
        return (type(self) is type(other) and self.__dict__ == other.__dict__
                and (self.__pydantic_private__ or {}) == (other.__pydantic_private__ or {}))

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"

    def __copy__(self) -> Any:
        return self.model_copy()

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        new = type(self).__new__(type(self))
        state = copy.deepcopy(self.__getstate__()) if deep else self.__getstate__()
        fields = dict(state["__dict__"])
        fields_set = set(state["__pydantic_fields_set__"] or ())
        if update:
            fields.update(update)
            fields_set.update(update)
        private = state["__pydantic_private__"]
        new.__setstate__({"__dict__": fields, "__pydantic_fields_set__": fields_set,
                          "__pydantic_extra__": state["__pydantic_extra__"],
                          "__pydantic_private__": dict(private) if private is not None else None})
        return new

    def model_dump(self, *, mode: str = "python", exclude_none: bool = False, **_: Any) -> dict[str, Any]:
        """The fields as a dict, nested models as dicts (``mode="json"``: enum members as their values,
        sequences as lists; other values as they are)."""
        return {k: _dump(v, mode, exclude_none) for k, v in self.__dict__.items() if not (exclude_none and v is None)}
