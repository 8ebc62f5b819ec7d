"""Device ids, short ids, names, addresses, targets and event ids."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.errors import InvalidAddress
from switchboard.ids import (
    DEVICE_ID_LENGTH,
    MIN_SHORT_LENGTH,
    NAMES,
    Address,
    AgentTarget,
    AllTarget,
    EventId,
    RoomTarget,
    device_id_from_public_key,
    format_address,
    parse_address,
    parse_device_id,
    parse_event_id,
    parse_name,
    parse_room,
    parse_short,
    parse_target,
    pick_name,
    short_id,
    short_ids,
)

DEVICE = device_id_from_public_key(b"\x01" * 32)


def test_ids_device_id_is_26_base32_chars() -> None:
    """A device id is 26 lower-case base32 characters that parse back unchanged."""
    assert len(DEVICE) == DEVICE_ID_LENGTH
    assert parse_device_id(DEVICE) == DEVICE
    assert device_id_from_public_key(b"\x02" * 32) != DEVICE


def test_ids_device_id_refuses_wrong_key_size() -> None:
    """A public key that is not 32 bytes is refused."""
    with pytest.raises(InvalidAddress, match="public key of 31 bytes, expected 32"):
        device_id_from_public_key(b"\x01" * 31)


@pytest.mark.parametrize("text", ["", "a" * 25, "a" * 27, "A" * 26, "a" * 25 + "1", "a" * 25 + "é"])
def test_ids_parse_device_id_refuses_malformed(text: str) -> None:
    """Anything but 26 of a-z and 2-7 is not a device id."""
    with pytest.raises(InvalidAddress, match="invalid device id"):
        parse_device_id(text)


def test_ids_short_id_is_upper_case_and_extends_itself() -> None:
    """A short id is upper-case letters, and a longer one starts with the shorter one."""
    short = short_id(DEVICE)
    assert len(short) == MIN_SHORT_LENGTH and short.isalpha() and short.isupper()
    assert short_id(DEVICE, 6).startswith(short)
    assert parse_short(short.lower()) == short


def find_collision() -> tuple[str, str]:
    """Return two device ids whose 4-letter short ids collide (about 1000 tries)."""
    seen: dict[str, str] = {}
    for n in range(100_000):
        device = device_id_from_public_key(n.to_bytes(32, "big"))
        short = short_id(device)
        if short in seen:
            return seen[short], device
        seen[short] = device
    raise AssertionError("no collision found")


def test_ids_short_ids_lengthen_only_colliding_devices() -> None:
    """Colliding devices get longer, distinct short ids; the others keep four letters."""
    first, second = find_collision()
    loner = DEVICE
    shorts = short_ids({first, second, loner})
    assert len(shorts[loner]) == MIN_SHORT_LENGTH
    assert len(shorts[first]) == len(shorts[second]) > MIN_SHORT_LENGTH
    assert shorts[first] != shorts[second]
    assert shorts[first].startswith(short_id(first))


def test_ids_short_ids_of_no_devices_is_empty() -> None:
    """No devices, no short ids."""
    assert short_ids([]) == {}


def test_ids_short_ids_stop_at_full_length() -> None:
    """A device listed twice cannot be told apart from itself and stops at full length."""
    shorts = short_ids([DEVICE, DEVICE])
    assert shorts == {DEVICE: short_id(DEVICE, DEVICE_ID_LENGTH)}


@given(st.sets(st.binary(min_size=32, max_size=32), max_size=30))
def test_ids_short_ids_are_unique(keys: set[bytes]) -> None:
    """Every device of a group gets a different short id."""
    devices = {device_id_from_public_key(key) for key in keys}
    shorts = short_ids(devices)
    assert set(shorts) == devices
    assert len(set(shorts.values())) == len(devices)


@pytest.mark.parametrize("text", ["", "ABC", "AB1D", "A" * 27, "ÄBCD"])
def test_ids_parse_short_refuses_malformed(text: str) -> None:
    """A short id is 4 to 26 letters A-Z."""
    with pytest.raises(InvalidAddress, match="invalid device short id"):
        parse_short(text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("luna", "luna"),
        ("Luna", "luna"),
        ("a", "a"),
        ("9x_y.z-w", "9x_y.z-w"),
        ("a" * 32, "a" * 32),
    ],
)
def test_ids_parse_name_accepts_and_lowers(text: str, name: str) -> None:
    """Valid names parse to lower case."""
    assert parse_name(text) == name


@pytest.mark.parametrize("text", ["", "_luna", "-a", "a" * 33, "lu na", "lu:na", "luna!", "é"])
def test_ids_parse_name_refuses_malformed(text: str) -> None:
    """Names are 1 to 32 letters, digits, underscores, dots or dashes, starting alphanumeric."""
    with pytest.raises(InvalidAddress, match="invalid agent name"):
        parse_name(text)


@pytest.mark.parametrize("text", ["all", "ALL", "everyone", "here"])
def test_ids_parse_name_refuses_reserved(text: str) -> None:
    """Names that address many agents cannot be an agent's name."""
    with pytest.raises(InvalidAddress, match="is reserved"):
        parse_name(text)


def test_ids_parse_room_accepts_and_refuses() -> None:
    """Rooms are 1 to 64 name characters, lower-cased."""
    assert parse_room("Dev-Ops") == "dev-ops"
    for bad in ("", "a" * 65, "#dev", "a b"):
        with pytest.raises(InvalidAddress, match="invalid room name"):
            parse_room(bad)


def test_ids_address_round_trips() -> None:
    """name:SHORT parses, with or without @, and formats back."""
    address = parse_address("@Luna:boxe")
    assert address == Address("luna", "BOXE")
    assert str(address) == format_address("luna", "BOXE") == "luna:BOXE"
    assert parse_address(str(address)) == address


@pytest.mark.parametrize("text", ["luna", "@luna", ":BOXE", "luna:", "luna:BOX", "all:BOXE"])
def test_ids_parse_address_refuses_malformed(text: str) -> None:
    """An address needs a valid name, a colon and a valid short id."""
    with pytest.raises(InvalidAddress):
        parse_address(text)


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("@luna", AgentTarget("luna")),
        ("luna", AgentTarget("luna")),
        ("  @Luna:boxe ", AgentTarget("luna", "BOXE")),
        ("luna:BOXE", AgentTarget("luna", "BOXE")),
        ("#Dev", RoomTarget("dev")),
        ("@all", AllTarget()),
        ("ALL", AllTarget()),
    ],
)
def test_ids_parse_target_accepts_every_form(text: str, target: object) -> None:
    """Every documented target form parses to its target."""
    assert parse_target(text) == target


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (AgentTarget("luna"), "@luna"),
        (AgentTarget("luna", "BOXE"), "@luna:BOXE"),
        (RoomTarget("dev"), "#dev"),
        (AllTarget(), "@all"),
    ],
)
def test_ids_targets_format_and_reparse(target: object, text: str) -> None:
    """A target's text form parses back to the same target."""
    assert str(target) == text
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["", "   ", "@", "#", "@luna:", "@all:BOXE", "#a b", "@-x"])
def test_ids_parse_target_refuses_malformed(text: str) -> None:
    """Empty or malformed targets raise InvalidAddress."""
    with pytest.raises(InvalidAddress):
        parse_target(text)


def test_ids_event_id_round_trips_and_orders() -> None:
    """origin/seq parses back to the same id, and ids order by origin then seq."""
    event_id = parse_event_id(f"{DEVICE}/42")
    assert event_id == EventId(DEVICE, 42)
    assert str(event_id) == f"{DEVICE}/42"
    assert EventId(DEVICE, 2) < EventId(DEVICE, 10)


@pytest.mark.parametrize(
    "seq", ["", "0", "-1", "x", "1.5", "²", "١٢", "9" * 20, "9" * 5000, " 1"], ids=repr
)
def test_ids_parse_event_id_refuses_bad_seq(seq: str) -> None:
    """A seq must be 1 to 19 ASCII digits and positive, never a ValueError."""
    with pytest.raises(InvalidAddress, match="invalid event id"):
        parse_event_id(f"{DEVICE}/{seq}")


def test_ids_parse_event_id_refuses_bad_origin_and_missing_slash() -> None:
    """The origin must be a device id and the slash must be there."""
    with pytest.raises(InvalidAddress, match="invalid device id"):
        parse_event_id("nope/1")
    with pytest.raises(InvalidAddress, match="invalid event id"):
        parse_event_id(DEVICE)


@given(st.text(max_size=40))
def test_ids_parsers_are_total(text: str) -> None:
    """Every parser returns a value or raises InvalidAddress, for any text."""
    for parse in (
        parse_device_id,
        parse_short,
        parse_name,
        parse_room,
        parse_address,
        parse_target,
        parse_event_id,
    ):
        with contextlib.suppress(InvalidAddress):
            parse(text)


def test_ids_pick_name_prefers_free_plain_names() -> None:
    """pick_name picks among free names, by the caller's choice."""
    assert pick_name(set(), 0) == NAMES[0]
    assert pick_name({NAMES[0]}, 0) == NAMES[1]
    assert pick_name(set(), len(NAMES)) == NAMES[0]


def test_ids_pick_name_numbers_once_all_taken() -> None:
    """Once every plain name is taken, pick_name adds the first free number."""
    taken = set(NAMES)
    assert pick_name(taken, 0) == f"{NAMES[0]}-2"
    assert pick_name(taken | {f"{NAMES[0]}-2"}, 0) == f"{NAMES[0]}-3"


def test_ids_lookalike_characters_refused() -> None:
    """Names and short ids with non-ASCII lookalikes are refused, not folded into ASCII."""
    for call, text in (
        (parse_name, "\u212aai"),
        (parse_short, "\u00df\u00dfab"),
        (parse_room, "\u212aai"),
    ):
        with pytest.raises(InvalidAddress):
            call(text)
