"""The 104 link rules without an event loop or a clock: times are plain numbers passed in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.iec104.codec import SEQ_MOD, Deframer, Frame, IFrame, SFrame, UFrame, UFunc, encode_frame
from drivers.iec104.session import LinkError, LinkParams, Session

ASDU = bytes.fromhex("64 01 06 00 01 00 00 00 00 14")


def sent(s: Session) -> list[Frame]:
    return Deframer().feed(s.take())


def started(params: LinkParams | None = None) -> Session:
    s = Session(params or LinkParams(), 0.0)
    s.start(0.0)
    assert sent(s) == [UFrame(UFunc.STARTDT_ACT)]
    s.receive(UFrame(UFunc.STARTDT_CON), 0.1)
    return s


def test_defaults_are_the_standards() -> None:
    assert LinkParams() == LinkParams(k=12, w=8, t0=30, t1=15, t2=10, t3=20)


def test_asdus_wait_for_startdt_con() -> None:
    s = Session(LinkParams(), 0.0)
    s.start(0.0)
    s.send_asdu(ASDU, 0.0)
    assert sent(s) == [UFrame(UFunc.STARTDT_ACT)]
    s.receive(UFrame(UFunc.STARTDT_CON), 0.2)
    assert sent(s) == [IFrame(0, 0, ASDU)]


def test_i_frame_before_startdt_is_a_protocol_error() -> None:
    s = Session(LinkParams(), 0.0)
    s.start(0.0)
    with pytest.raises(LinkError) as err:
        s.receive(IFrame(0, 0, ASDU), 0.1)
    assert err.value.reason == "protocol_error"


def test_acknowledge_after_w_frames() -> None:
    s = started(LinkParams(w=3))
    for i in range(2):
        assert s.receive(IFrame(i, 0, ASDU), 1.0) == ASDU
    assert sent(s) == []
    s.receive(IFrame(2, 0, ASDU), 1.0)
    assert sent(s) == [SFrame(3)]
    assert s.counters["s_sent"] == 1


def test_acknowledge_by_t2() -> None:
    s = started()
    s.receive(IFrame(0, 0, ASDU), 1.0)
    assert s.deadline() == pytest.approx(11.0)
    s.tick(10.9)
    assert sent(s) == []
    s.tick(11.0)
    assert sent(s) == [SFrame(1)]


def test_our_i_frame_carries_the_acknowledgement() -> None:
    s = started()
    s.receive(IFrame(0, 0, ASDU), 1.0)
    s.send_asdu(ASDU, 2.0)
    assert sent(s) == [IFrame(0, 1, ASDU)]
    s.tick(16.9)  # past t2 of the received frame, but no S-frame: the I-frame acknowledged it
    assert [f for f in sent(s) if isinstance(f, SFrame)] == []


def test_wrong_send_sequence_number_closes() -> None:
    s = started()
    s.receive(IFrame(0, 0, ASDU), 1.0)
    with pytest.raises(LinkError, match="expected 1") as err:
        s.receive(IFrame(2, 0, ASDU), 1.1)
    assert err.value.reason == "sequence_error"


def test_acknowledging_unsent_frames_closes() -> None:
    s = started()
    s.send_asdu(ASDU, 1.0)
    s.receive(SFrame(1), 1.1)
    with pytest.raises(LinkError, match="never sent") as err:
        s.receive(SFrame(5), 1.2)
    assert err.value.reason == "sequence_error"


def test_k_frames_at_most_in_flight() -> None:
    s = started(LinkParams(k=2, w=1))
    for _ in range(4):
        s.send_asdu(ASDU, 1.0)
    assert sent(s) == [IFrame(0, 0, ASDU), IFrame(1, 0, ASDU)]
    s.receive(SFrame(1), 2.0)
    assert sent(s) == [IFrame(2, 0, ASDU)]
    s.receive(SFrame(3), 2.0)
    assert sent(s) == [IFrame(3, 0, ASDU)]


def test_unacknowledged_i_frame_times_out_after_t1() -> None:
    s = started()
    s.send_asdu(ASDU, 5.0)
    s.tick(19.9)
    with pytest.raises(LinkError, match="t1 = 15") as err:
        s.tick(20.0)
    assert err.value.reason == "timeout"


def test_testfr_on_t3_idle_then_t1() -> None:
    s = started()
    s.receive(IFrame(0, 0, ASDU), 1.0)
    s.tick(11.0)  # the t2 acknowledgement
    sent(s)
    assert s.deadline() == pytest.approx(21.0)
    s.tick(21.0)
    assert sent(s) == [UFrame(UFunc.TESTFR_ACT)]
    assert s.deadline() == pytest.approx(36.0)  # now t1 for the con, not t3 again (no busy loop)
    s.tick(30.0)
    assert sent(s) == []  # one TESTFR at a time
    with pytest.raises(LinkError, match="no TESTFR con within t1"):
        s.tick(36.0)


def test_testfr_con_keeps_the_link() -> None:
    s = started()
    s.tick(20.1)
    assert sent(s) == [UFrame(UFunc.TESTFR_ACT)]
    s.receive(UFrame(UFunc.TESTFR_CON), 21.0)
    s.tick(40.9)
    assert sent(s) == []


def test_station_testfr_is_answered() -> None:
    s = started()
    s.receive(UFrame(UFunc.TESTFR_ACT), 3.0)
    assert sent(s) == [UFrame(UFunc.TESTFR_CON)]


@pytest.mark.parametrize("func", [UFunc.STARTDT_ACT, UFunc.STOPDT_ACT, UFunc.TESTFR_CON, UFunc.STARTDT_CON])
def test_unexpected_u_frames_are_protocol_errors(func: UFunc) -> None:
    s = started()
    with pytest.raises(LinkError) as err:
        s.receive(UFrame(func), 1.0)
    assert err.value.reason == "protocol_error"


def test_no_startdt_con_within_t1() -> None:
    s = Session(LinkParams(t1=2), 0.0)
    s.start(0.0)
    with pytest.raises(LinkError, match="STARTDT con"):
        s.tick(2.0)


@given(st.integers(0, SEQ_MOD - 1), st.integers(1, 300), st.integers(1, 20))
@settings(max_examples=100)
def test_sequence_numbers_wrap(start: int, n: int, w: int) -> None:
    """Whatever N(S) the station starts from (after wrap-around), acknowledgements follow every w."""
    s = started(LinkParams(w=w, k=max(w, 12)))
    s.vr = start
    acks = 0
    for i in range(n):
        s.receive(IFrame((start + i) % SEQ_MOD, 0, ASDU), 1.0)
        for f in sent(s):
            assert isinstance(f, SFrame) and f.nr == (start + i + 1) % SEQ_MOD
            acks += 1
    assert acks == n // w


def test_encoded_frames_match_the_deframer() -> None:
    assert Deframer().feed(encode_frame(IFrame(SEQ_MOD - 1, SEQ_MOD - 1, ASDU))) == [
        IFrame(SEQ_MOD - 1, SEQ_MOD - 1, ASDU)
    ]
