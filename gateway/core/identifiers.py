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
import functools
import re
from dataclasses import dataclass

from gateway.core.errors import IdentifierError

__all__ = [
    "MAX_HANDLE_LEN",
    "MAX_PREFIX_LEN",
    "Handle",
    "Profile",
    "Verdict",
    "gs1_check_digit",
    "mint",
    "parse_handle",
    "parse_oid",
    "topic_safe",
    "validate_gs1",
    "verdict",
]

MAX_HANDLE_LEN = 255
MAX_PREFIX_LEN = 64

_NA_SEG = re.compile(r"[^./\x00-\x20\x7F]+")
_PREFIX_88 = re.compile(r"88(?:\.[0-9]{1,16}){1,3}")
_SUFFIX_88 = re.compile(r"\S{1,250}")
_SUFFIX_GW = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,190}")
_MINT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
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


@functools.lru_cache(maxsize=64)
def _check_prefix(prefix: str) -> None:
    """Validates a prefix once: a plant mints every point's code from the same one."""
    parse_handle(prefix + "/x")


def mint(prefix: str, *keys: str) -> str:
    """Deterministically mint ``<prefix>/<key1>.<key2>...`` from config keys.

    The same config always yields the same code.  Keys must use the gateway suffix alphabet
    (ASCII letters, digits, ``._-``), so minted codes are safe in URLs and MQTT payloads.
    """
    _check_prefix(prefix)
    if not keys:
        raise IdentifierError("minting needs at least one key")
    for key in keys:
        if not _MINT_KEY.fullmatch(key):
            raise IdentifierError(
                f"key {key!r} cannot be minted into a code: it must be non-empty, start with an ASCII "
                "letter or digit and contain only ASCII letters, digits, '.', '_' and '-'"
            )
    suffix = ".".join(keys)
    if not _SUFFIX_GW.fullmatch(suffix):
        raise IdentifierError(
            f"minted suffix {suffix!r} may only contain ASCII letters, digits, '.', '_' and '-' "
            "and must start with a letter or digit"
        )
    code = f"{prefix}/{suffix}"
    # the prefix was validated above and the suffix alphabet has no space, control or '/': only the
    # length is left to check (parse_handle(code) here was 15 % of `edgegw check` on 100,000 points)
    if len(code) > MAX_HANDLE_LEN:
        raise IdentifierError(f"identifier is {len(code)} characters long, the limit is {MAX_HANDLE_LEN}")
    return code


def topic_safe(code: str) -> str:
    """Percent-encode the characters MQTT reserves (``/ + #``) and ``%`` itself: one topic level."""
    return code.replace("%", "%25").replace("/", "%2F").replace("+", "%2B").replace("#", "%23")


_OID = re.compile(r"(?:0|1|2)(?:\.(?:0|[1-9][0-9]*))+")
_GS1_LENGTHS = {8: "GTIN-8", 12: "GTIN-12", 13: "GTIN-13", 14: "GTIN-14", 17: "GSIN", 18: "SSCC"}


def parse_oid(text: str) -> tuple[int, ...]:
    """Parse a dotted ISO/ITU object identifier (X.660): arcs are decimal without leading zeros.

    Leading zeros are rejected because ``1.02`` and ``1.2`` would name the same object twice.
    """
    if not _OID.fullmatch(text):
        raise IdentifierError(
            f"{text!r} is not an OID: expected decimal arcs like 1.2.156.xxx, first arc 0, 1 or 2, "
            "no leading zeros, at least two arcs"
        )
    arcs = tuple(int(a) for a in text.split("."))
    if arcs[0] < 2 and arcs[1] > 39:
        raise IdentifierError(f"OID {text!r}: under arc {arcs[0]} the second arc must be 0..39")
    return arcs


def gs1_check_digit(body: str) -> int:
    """GS1 mod-10 check digit of ``body`` (all digits except the check digit).

    Weights 3,1,3,1... from the rightmost body digit, as in the GS1 General Specifications §7.9.1.
    """
    if not body.isascii() or not body.isdigit():
        raise IdentifierError(f"GS1 key body {body!r} must be ASCII digits")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def validate_gs1(key: str) -> str:
    """Check a GS1 key (GTIN-8/12/13/14, GSIN, SSCC) and return its kind; raise saying why not."""
    if not key.isascii() or not key.isdigit():
        raise IdentifierError(f"GS1 key {key!r} must be ASCII digits only")
    kind = _GS1_LENGTHS.get(len(key))
    if kind is None:
        raise IdentifierError(f"GS1 key {key!r} has {len(key)} digits; expected 8, 12, 13, 14, 17 or 18")
    expected = gs1_check_digit(key[:-1])
    if int(key[-1]) != expected:
        raise IdentifierError(f"GS1 {kind} {key!r} has check digit {key[-1]}, expected {expected}")
    return kind


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a code was recognised as, or why it is invalid (``ok`` false): for ``edgegw ids validate``."""

    code: str
    ok: bool
    kind: str
    detail: str


def verdict(code: str, profile: Profile = Profile.NATIONAL) -> Verdict:
    """Classify ``code``: a Handle (``/`` present), an OID, or a GS1 key; never raises.

    The shape decides which grammar applies, so the message names the grammar the user meant.
    """
    try:
        if "/" in code:
            h = parse_handle(code, profile)
            return Verdict(code, True, f"handle ({profile.value})", f"prefix {h.prefix}, suffix {h.suffix}")
        if code.isascii() and code.isdigit():
            return Verdict(code, True, "gs1", validate_gs1(code))
        if "." in code and code[:1].isdigit() and not code.startswith("88."):
            return Verdict(code, True, "oid", f"{len(parse_oid(code))} arcs")
        parse_handle(code, profile)  # raises with the Handle-grammar reason
    except IdentifierError as err:
        if code.isascii() and code.isdigit():
            kind = "gs1"
        else:
            kind = "handle" if "/" in code or code.startswith("88.") else "oid"
        return Verdict(code, False, kind, str(err))
    return Verdict(code, False, "unknown", "not a handle, OID or GS1 key")  # pragma: no cover
