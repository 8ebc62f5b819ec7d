"""The pairing exchange's cryptography (``pake``) and the short forms (``invites.PairCode``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard import invites
from switchboard.errors import InvalidInvite
from switchboard.pake import HostSide, JoinSide
from switchboard.proto.frames import Hello, encode_frame
from switchboard.proto.pairing import (
    PairClaim,
    PairMsg,
    PairOpen,
    decode_pair,
    encode_pair,
    is_pairing,
)
from switchboard.wordlist import WORDS

SECRET = b"the group secret and invite token"


def exchange(host_code: str, join_code: str) -> tuple[HostSide, JoinSide, bytes]:
    """Run steps 1-3; return both sides and the joiner's sealed hello."""
    host, join = HostSide(host_code), JoinSide(join_code)
    answer = host.answer(join.start())
    return host, join, join.hello(answer, b"joiner: desk")


def test_the_same_code_carries_hello_and_welcome() -> None:
    host, join, hello = exchange("7-ember-violet", "7-ember-violet")
    assert host.open_hello(hello) == b"joiner: desk"
    assert join.open_welcome(host.welcome(SECRET)) == SECRET


@pytest.mark.parametrize("guess", ["7-ember-tiger", "8-ember-violet", "7-violet-ember"])
def test_a_wrong_code_fails_at_the_host_before_anything_is_sealed(guess: str) -> None:
    host, _, hello = exchange("7-ember-violet", guess)
    with pytest.raises(InvalidInvite, match="wrong pairing code"):
        host.open_hello(hello)
    with pytest.raises(InvalidInvite, match="out of order"):
        host.welcome(SECRET)  # the host cannot be made to seal for an unproven joiner


def test_a_message_cannot_be_reflected_to_its_sender() -> None:
    host, join, hello = exchange("7-ember-violet", "7-ember-violet")
    host.open_hello(hello)
    with pytest.raises(InvalidInvite):
        join.open_welcome(hello)  # the joiner's own box, sent back: other direction key


@given(st.binary(min_size=1, max_size=80), st.integers(min_value=0, max_value=79))
def test_any_tampered_hello_is_refused(noise: bytes, at: int) -> None:
    host, _, hello = exchange("3-fox-lemon", "3-fox-lemon")
    at %= len(hello)
    tampered = hello[:at] + bytes(b ^ n for b, n in zip(hello[at:], noise, strict=False))
    tampered += hello[at + len(noise) :]
    if tampered != hello:
        with pytest.raises(InvalidInvite):
            host.open_hello(tampered)


def test_a_damaged_spake_message_is_a_clear_error() -> None:
    with pytest.raises(InvalidInvite):
        HostSide("7-ember-violet").answer(b"\x00" * 5)


# -- forms ---------------------------------------------------------------------------------------


@given(
    st.integers(min_value=1, max_value=256), st.lists(st.integers(0, 255), min_size=3, max_size=3)
)
def test_code_phrase_and_link_name_the_same_code(nameplate: int, picks: list[int]) -> None:
    code = invites.new_code(nameplate, picks)
    assert invites.parse_pairing(code.code) == code
    assert invites.parse_pairing(code.phrase) == code
    assert invites.parse_pairing(code.phrase.upper()) == code
    linked = invites.parse_pairing(code.link("ws://10.0.0.5:7787"))
    assert linked == invites.PairCode(nameplate, code.words, "ws://10.0.0.5:7787")


def test_tokens_are_not_codes_and_words_stay_out_of_repr() -> None:
    assert invites.parse_pairing("sb1.abcdef") is None
    code = invites.parse_pairing("7-ember-violet")
    assert code is not None and "ember" not in repr(code)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7-ember-vilet", "not a word"),
        ("0-ember-violet", "not a pairing code"),
        ("300-ember-violet", "no pairing code has nameplate"),
        ("ember violet tiger lemonade", "not a word"),
        ("switchboard://join?relay=ws://x", "one code="),
        ("switchboard://join?code=7-ember-violet&relay=http://x", "ws:// or wss://"),
        ("7-ember", "not a pairing code"),
    ],
)
def test_bad_forms_get_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInvite, match=message):
        invites.parse_pairing(text)


def test_the_word_list_is_fixed() -> None:
    # Codes already handed out must keep working: never reorder or change a word.
    assert len(WORDS) == 256 and WORDS[0] == "acid" and list(WORDS) == sorted(WORDS)


# -- rendezvous frames -----------------------------------------------------------------------------


def test_pairing_frames_are_told_from_sync_frames() -> None:
    for frame in (PairOpen(1, 600.0), PairClaim(1, 7), PairMsg(b"x" * 33)):
        data = encode_pair(frame)
        assert is_pairing(data) and decode_pair(data) == frame
    hello = Hello(1, "g" * 26, "d" * 26, b"n" * 32, b"k" * 32, b"k" * 32)
    assert not is_pairing(encode_frame(hello))


@given(st.binary(max_size=64))
def test_no_bytes_crash_the_first_frame_test(data: bytes) -> None:
    assert is_pairing(data) in (True, False)
