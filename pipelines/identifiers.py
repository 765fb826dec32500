"""Industrial-internet identifier codes (Handle-style ``prefix/suffix``).

Grammar (see the project's identifier reference): a code splits at the FIRST ``/``; the prefix is
``.``-separated naming-authority segments, compared case-insensitively; the suffix is the
enterprise's local name, compared exactly (never case-folded, leading zeros kept: codes are
strings, never numbers).  The strict national profile is ``88.<node>[.<enterprise>]`` with
decimal segments.  Codes contain ``/`` and so never go raw into an MQTT topic: see
:func:`topic_safe`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from gateway.errors import IdentifierError

__all__ = [
    "MAX_HANDLE_LEN",
    "MAX_PREFIX_LEN",
    "Handle",
    "Profile",
    "mint",
    "parse_handle",
    "topic_safe",
]

MAX_HANDLE_LEN = 255
MAX_PREFIX_LEN = 64

_NA_SEG = re.compile(r"[^./\x00-\x20\x7F]+")
_PREFIX_88 = re.compile(r"88(?:\.[0-9]{1,16}){1,3}")
_SUFFIX_88 = re.compile(r"\S{1,250}")
_SUFFIX_GW = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,190}")
_CONTROL = re.compile(r"[\x00-\x1F\x7F]")


class Profile(enum.StrEnum):
    """How strictly a code is checked."""

    HANDLE = "handle"  # any Handle-style code (RFC 3651 syntax, e.g. 86.x, 20.500.x)
    NATIONAL = "national"  # the strict national 88. profile


@dataclass(frozen=True, slots=True)
class Handle:
    prefix: str
    suffix: str

    def __str__(self) -> str:
        return f"{self.prefix}/{self.suffix}"

    @property
    def key(self) -> str:
        """Equality key: prefix upper-cased (ASCII only), suffix byte-exact."""
        return f"{_upper_ascii(self.prefix)}/{self.suffix}"


def _upper_ascii(text: str) -> str:
    return "".join(c.upper() if "a" <= c <= "z" else c for c in text)


def parse_handle(code: str, profile: Profile = Profile.NATIONAL) -> Handle:
    """Parse and validate a code; raise :class:`IdentifierError` saying exactly what is wrong."""
    if not isinstance(code, str):
        raise IdentifierError(f"identifier must be a string, got {type(code).__name__}")
    if not code:
        raise IdentifierError("identifier is empty")
    if len(code) > MAX_HANDLE_LEN:
        raise IdentifierError(f"identifier is {len(code)} characters long, the limit is {MAX_HANDLE_LEN}")
    if code != code.strip():
        raise IdentifierError("identifier has leading or trailing whitespace")
    if _CONTROL.search(code):
        raise IdentifierError("identifier contains a control character")
    prefix, sep, suffix = code.partition("/")
    if not sep:
        raise IdentifierError(f"identifier {code!r} has no '/' between prefix and suffix")
    if not prefix:
        raise IdentifierError(f"identifier {code!r} has an empty prefix")
    if not suffix:
        raise IdentifierError(f"identifier {code!r} has an empty suffix")
    if len(prefix) > MAX_PREFIX_LEN:
        raise IdentifierError(f"prefix is {len(prefix)} characters long, the limit is {MAX_PREFIX_LEN}")
    for seg in prefix.split("."):
        if not seg:
            raise IdentifierError(f"prefix {prefix!r} has an empty segment")
        if not _NA_SEG.fullmatch(seg):
            raise IdentifierError(f"prefix segment {seg!r} contains whitespace or a reserved character")
    if profile is Profile.NATIONAL:
        if not _PREFIX_88.fullmatch(prefix):
            raise IdentifierError(
                f"prefix {prefix!r} is not a national code prefix: expected 88.<node>[.<enterprise>] "
                "with 2 to 4 decimal segments (e.g. 88.608.5288)"
            )
        if not _SUFFIX_88.fullmatch(suffix):
            raise IdentifierError(f"suffix {suffix!r} contains whitespace")
    return Handle(prefix, suffix)


def mint(prefix: str, *keys: str) -> str:
    """Deterministically mint ``<prefix>/<key1>.<key2>...`` from config keys.

    The same config always yields the same code.  Keys must use the gateway suffix alphabet
    (ASCII letters, digits, ``._-``), so minted codes are safe in URLs and MQTT payloads.
    """
    parse_handle(prefix + "/x")  # validates the prefix
    if not keys:
        raise IdentifierError("minting needs at least one key")
    suffix = ".".join(keys)
    if not _SUFFIX_GW.fullmatch(suffix):
        raise IdentifierError(
            f"minted suffix {suffix!r} may only contain ASCII letters, digits, '.', '_' and '-' "
            "and must start with a letter or digit"
        )
    code = f"{prefix}/{suffix}"
    parse_handle(code)
    return code


def topic_safe(code: str) -> str:
    """Percent-encode the characters MQTT reserves (``/ + #``) and ``%`` itself: one topic level."""
    return code.replace("%", "%25").replace("/", "%2F").replace("+", "%2B").replace("#", "%23")
