"""Identifier grammar: the reference's observed codes as fixtures, its negative cases, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cli import main
from gateway.core.errors import IdentifierError
from gateway.core.identifiers import (
    MAX_HANDLE_LEN,
    Profile,
    gs1_check_digit,
    mint,
    parse_handle,
    parse_oid,
    topic_safe,
    validate_gs1,
    verdict,
)

OBSERVED = [
    "88.608.24061301/App_scxt0716",
    "88.608.5288/APP_ccxt0716",
    "88.608.5288/META_2f23b2b600",
    "88.608.24061301/META_1390098d6e",
    "88.608.8899/META_zj02",
    "88.608.8889/87654321",
    "88.608.8889/User_12345",
    "88.709.911/123",
    "88.1021.150/002",
    "88.101.0042/001",
    "88.709.0000/6tcuB9XDqyPGyJK9Xm5h6wUTbtriaeDRjDAY4nbNN3Ta4TLoSzb34S2xUMBGwfEh",
    "88.111.1/0.0",
    "88.1000.2/mm",
    "88.1000.1/ADMIN",
    "88.888.3/20220121",
    "88.111.911/app",
]

NEGATIVE = [
    ("88.608.5288", "no '/'"),
    ("/x", "empty prefix"),
    ("88.1.1/", "empty suffix"),
    ("88..1/x", "empty segment"),
    (" 88.1.1/x", "whitespace"),
    ("88.1.1/x ", "whitespace"),
    ("88.1.1/a\x00b", "control character"),
    ("88.1.1/a\tb", "control character"),
    ("88.1.1/a b", "whitespace"),
    ("86.1.1/x", "not a national code prefix"),
    ("88.abc.1/x", "not a national code prefix"),
    ("88.1.1/" + "x" * (MAX_HANDLE_LEN - 6), "limit is 255"),
    ("88." + "1" * 70 + "/x", "limit is 64"),
]


@pytest.mark.parametrize("code", OBSERVED)
def test_observed_codes_parse_strict(code: str) -> None:
    h = parse_handle(code)
    assert str(h) == code
    assert h.prefix.startswith("88.")


def test_leading_zeros_are_kept() -> None:
    h = parse_handle("88.101.0042/001")
    assert (h.prefix, h.suffix) == ("88.101.0042", "001")
    assert parse_handle("88.101.42/1").key != h.key


@pytest.mark.parametrize(("code", "why"), NEGATIVE)
def test_negative_cases_say_why(code: str, why: str) -> None:
    with pytest.raises(IdentifierError, match=why):
        parse_handle(code)


def test_exactly_255_is_allowed() -> None:
    code = "88.1.1/" + "x" * (MAX_HANDLE_LEN - 7)
    assert len(code) == MAX_HANDLE_LEN
    parse_handle(code)


def test_prefix_case_insensitive_suffix_exact() -> None:
    lenient = Profile.HANDLE
    assert parse_handle("88.ABC.1/x", lenient).key == parse_handle("88.abc.1/x", lenient).key
    assert parse_handle("88.1.1/X").key != parse_handle("88.1.1/x").key


def test_suffix_may_contain_slash_split_at_first() -> None:
    h = parse_handle("88.1.1/a/b")
    assert (h.prefix, h.suffix) == ("88.1.1", "a/b")


def test_lenient_profile_accepts_other_handles() -> None:
    parse_handle("20.500.12345/abc", Profile.HANDLE)
    with pytest.raises(IdentifierError):
        parse_handle("20.500.12345/abc")


@pytest.mark.parametrize("bad", ["a/b", "a+b", "a#b", "a b", "", ".a"])
def test_mint_rejects_unsafe_keys(bad: str) -> None:
    with pytest.raises(IdentifierError):
        mint("88.608.5288", "DEV", bad)


def test_mint_is_deterministic_and_valid() -> None:
    a = mint("88.608.5288", "DEV", "bt-mine-01", "gas-sub-3")
    assert a == mint("88.608.5288", "DEV", "bt-mine-01", "gas-sub-3") == "88.608.5288/DEV.bt-mine-01.gas-sub-3"


@pytest.mark.parametrize(
    ("key", "kind"),
    [("96385074", "GTIN-8"), ("036000291452", "GTIN-12"), ("4006381333931", "GTIN-13"),
     ("10614141000415", "GTIN-14"), ("106141411234567897", "SSCC")],
)
def test_gs1_known_keys(key: str, kind: str) -> None:
    assert validate_gs1(key) == kind


@pytest.mark.parametrize(
    ("key", "why"), [("4006381333932", "expected 1"), ("12345", "5 digits"), ("40063813339a1", "digits")]
)
def test_gs1_negative(key: str, why: str) -> None:
    with pytest.raises(IdentifierError, match=why):
        validate_gs1(key)


@given(st.text(alphabet="0123456789", min_size=7, max_size=17).filter(lambda b: len(b) + 1 in (8, 12, 13, 14, 17, 18)))
def test_gs1_check_digit_roundtrip_and_single_digit_errors_caught(body: str) -> None:
    key = body + str(gs1_check_digit(body))
    validate_gs1(key)
    # Mod-10 with weights 3/1 catches every single-digit substitution.
    for pos in range(len(key) - 1):
        d = int(key[pos])
        altered = key[:pos] + str((d + 1) % 10) + key[pos + 1 :]
        with pytest.raises(IdentifierError):
            validate_gs1(altered)


@pytest.mark.parametrize("oid", ["1.2.156.10197.1", "2.16.156", "0.0"])
def test_oid_ok(oid: str) -> None:
    assert ".".join(map(str, parse_oid(oid))) == oid


@pytest.mark.parametrize("oid", ["3.1", "1.02.3", "1", "1..2", "1.40.1", "1.2."])
def test_oid_negative(oid: str) -> None:
    with pytest.raises(IdentifierError):
        parse_oid(oid)


_SEG = st.from_regex(r"[0-9]{1,8}", fullmatch=True)
_SUFFIX = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True)


@given(_SEG, _SEG, _SUFFIX)
def test_property_minted_roundtrip(node: str, ent: str, suffix: str) -> None:
    prefix = f"88.{node}.{ent}"
    code = mint(prefix, suffix)
    h = parse_handle(code)
    assert (h.prefix, h.suffix) == (prefix, suffix)
    assert "/" not in topic_safe(code) and "+" not in topic_safe(code) and "#" not in topic_safe(code)


_PREFIX = st.from_regex(r"88(\.[0-9]{1,16}){1,3}", fullmatch=True)
_KEY = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}", fullmatch=True)


@given(_PREFIX, st.lists(_KEY, min_size=1, max_size=4))
def test_property_mint_agrees_with_parse_handle(prefix: str, keys: list[str]) -> None:
    """mint() checks only the suffix and the length (the prefix once): whatever it returns parses,
    and what it refuses is refused for a reason parse_handle would also give (too long) or its own."""
    try:
        code = mint(prefix, *keys)
    except IdentifierError:
        suffix = ".".join(keys)
        with pytest.raises(IdentifierError):
            if len(suffix) <= 191:  # the gateway suffix limit: beyond it mint refuses on its own
                parse_handle(f"{prefix}/{suffix}")
        return
    assert parse_handle(code) == parse_handle(f"{prefix}/{'.'.join(keys)}")


@given(st.text(max_size=300))
def test_property_parse_never_crashes_otherwise(text: str) -> None:
    try:
        h = parse_handle(text, Profile.HANDLE)
    except IdentifierError:
        return
    assert str(h) == text and len(text) <= MAX_HANDLE_LEN


@given(st.text(alphabet="aAbB01./+#%", max_size=40))
def test_property_topic_safe_is_injective(text: str) -> None:
    enc = topic_safe(text)
    assert not any(c in enc for c in "/+#")
    from urllib.parse import unquote

    assert unquote(enc) == text


def test_verdict_kinds() -> None:
    assert verdict("88.608.5288/DEV.x").ok
    assert verdict("4006381333931").kind == "gs1"
    assert verdict("1.2.156.10197").kind == "oid"
    v = verdict("88..1/x")
    assert not v.ok and "empty segment" in v.detail


def test_cli_ids_validate_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ids", "validate", "88.608.5288/DEV.a", "4006381333931"]) == 0
    assert main(["ids", "validate", "88.608.5288/DEV.a", "88..1/x"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("INVALID") and "88..1/x" in out[-1]


def test_cli_ids_list_shows_minted_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "baotou-mine.toml"
    assert main(["ids", "list", "-c", str(example), "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert rows, "the example config has points"
    for row in rows:
        parse_handle(row["code"])
        assert row["code"].startswith(row["device_code"] + ".")
