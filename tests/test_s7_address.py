"""The S7 address parser: the notations engineers write, and one located error line for each mistake."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.s7.address import Address, AddressError, Area, Size, parse_address


@pytest.mark.parametrize(("text", "want"), [
    ("DB10.DBD4", Address(Area.DB, 10, 4, None, Size.DWORD)),
    ("DB10.DBX2.3", Address(Area.DB, 10, 2, 3, Size.BIT)),
    ("DB1.DBW0", Address(Area.DB, 1, 0, None, Size.WORD)),
    ("DB1.DBB20", Address(Area.DB, 1, 20, None, Size.BYTE)),
    ("db65535.dbx65535.7", Address(Area.DB, 65535, 65535, 7, Size.BIT)),
    ("%DB10.DBD4", Address(Area.DB, 10, 4, None, Size.DWORD)),
    (" M0.1 ", Address(Area.M, 0, 0, 1, Size.BIT)),
    ("MX0.1", Address(Area.M, 0, 0, 1, Size.BIT)),
    ("MB7", Address(Area.M, 0, 7, None, Size.BYTE)),
    ("MW10", Address(Area.M, 0, 10, None, Size.WORD)),
    ("MD20", Address(Area.M, 0, 20, None, Size.DWORD)),
    ("IW64", Address(Area.I, 0, 64, None, Size.WORD)),
    ("I0.0", Address(Area.I, 0, 0, 0, Size.BIT)),
    ("IX1.7", Address(Area.I, 0, 1, 7, Size.BIT)),
    ("ID4", Address(Area.I, 0, 4, None, Size.DWORD)),
    ("QX0.0", Address(Area.Q, 0, 0, 0, Size.BIT)),
    ("Q1.2", Address(Area.Q, 0, 1, 2, Size.BIT)),
    ("QB3", Address(Area.Q, 0, 3, None, Size.BYTE)),
    ("%QW2", Address(Area.Q, 0, 2, None, Size.WORD)),
])
def test_notations(text: str, want: Address) -> None:
    assert parse_address(text) == want


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "is empty"),
    ("DB10.DBQ4", "'Q' at position 8: expected a size letter X, B, W or D"),
    ("DB0.DBD4", "data block number 0 is outside 1..65535"),
    ("DB70000.DBD4", "data block number 70000 is outside"),
    ("DB10DBD4", "expected '.DB' after the data block number"),
    ("DB10.D4", "expected 'DB' after the '.'"),
    ("DB.DBD4", "expected the data block number after 'DB' (digits)"),
    ("DB10.DBX2", "at the end: a bit address needs '.bit' (0..7), e.g. 'DB10.DBX2.0'"),
    ("DB10.DBX2.8", "bit 8 is outside 0..7"),
    ("M0", "a bit address needs '.bit'"),
    ("MW10.1", "only bit addresses (size X) take '.bit'; a word address ends at its byte"),
    ("MW70000", "byte offset 70000 is outside 0..65535"),
    ("EW64", "German mnemonics are not accepted: write 'I'"),
    ("AW2", "write 'Q'"),
    ("T5", "expected an area: DB<n>.DB..., M, I or Q"),
    ("MWx", "expected the byte offset (digits)"),
    ("DB10.DBD4 x", "' ' at position 10: unexpected text after the address"),
    ("DB10.DBD4;", "';' at position 10: unexpected text"),
    ("MWß", "'ß' at position 3: not part of an S7 address"),
    ("DB１.DBD4", "'１' at position 3"),
])
def test_errors_say_where(text: str, fragment: str) -> None:
    with pytest.raises(AddressError) as err:
        parse_address(text)
    msg = str(err.value)
    assert fragment in msg, msg
    assert "\n" not in msg
    if text:
        assert repr(text.strip()) in msg  # names the address as written


def test_not_text() -> None:
    with pytest.raises(AddressError, match="must be text"):
        parse_address(12)  # type: ignore[arg-type]


addresses = st.builds(
    lambda area, db, byte, bit, size: Address(
        area, db if area is Area.DB else 0, byte, bit if size is Size.BIT else None, size),
    st.sampled_from(Area), st.integers(1, 65535), st.integers(0, 65535), st.integers(0, 7), st.sampled_from(Size),
)


@given(addresses)
def test_round_trip(a: Address) -> None:
    assert parse_address(str(a)) == a
    assert parse_address("%" + str(a).lower()) == a


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_address_error(text: str) -> None:
    try:
        parse_address(text)
    except AddressError as err:
        assert "\n" not in str(err)
