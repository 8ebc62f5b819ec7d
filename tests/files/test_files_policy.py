"""Shared files and what a device refuses or repairs: a chunk rotten in a store is caught,
fetched again (from another holder when the sharer's copy is the rotten one) and never
delivered; bad names, files over the size limit or the quota, and existing files fail with
clear errors and write nothing outside the downloads directory."""

from __future__ import annotations

import contextlib
import hashlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Device, Relay
from filekit import downloads, get, payload, rot, share, wait_for, write

from switchboard.errors import SwitchboardError
from switchboard.store.blobs import CHUNK_SIZE

NO_AUTO = {"SWITCHBOARD_FILES_AUTO_FETCH": "0"}


@contextlib.contextmanager
def devices(tmp: Path, *specs: tuple[str, str, dict[str, str]]) -> Iterator[list[Device]]:
    """A relay and devices (name, agent, extra environment) in one group."""
    relay = Relay(tmp / "relay").start()
    found = [Device(tmp / name, name) for name, _, _ in specs]
    try:
        for device, (_, _, env) in zip(found, specs, strict=True):
            device.env.update(env)
            device.start()
        invite = found[0].call("group.create", name="files", relay=relay.url)["invite"]
        for device, (_, agent, _) in zip(found[1:], specs[1:], strict=True):
            device.call("join", invite=invite)
            device.call("register", agent=agent)
        for _, agent, _ in specs[1:]:
            wait_for(lambda agent=agent: any(r["name"] == agent for r in found[0].call("agents")))
        yield found
    finally:
        for device in found:
            device.kill(signal.SIGTERM)
        relay.kill(signal.SIGTERM)


def counters(device: Device) -> dict[str, int]:
    return dict(device.call("status")["files"])


def test_files_rotten_chunk_in_a_store_is_fetched_again_never_delivered(tmp_path: Path) -> None:
    """A chunk rotten in the recipient's store is found before the file is written, and
    fetched again; one rotten in the sharer's store makes it refuse, and a third device gets
    the file from the recipient that fetched it."""
    specs = [("a", "luna", {}), ("b", "nova", NO_AUTO), ("c", "vega", NO_AUTO)]
    with devices(tmp_path, *specs) as (a, b, c):
        data = payload(3 * CHUNK_SIZE - 5, seed=7)
        digest = hashlib.sha256(data).digest()
        blob = share(a, write(tmp_path, "three.bin", data), "@nova", "@vega")["hash"]
        first = Path(get(b, blob)[-1]["saved"])
        assert first.read_bytes() == data and counters(b)["fetched_chunks"] == 3
        rot(b, blob, 1)
        first.unlink()
        again = Path(get(b, blob)[-1]["saved"])
        assert hashlib.sha256(again.read_bytes()).digest() == digest
        assert counters(b)["fetched_chunks"] == 4 and counters(b)["corrupt_chunks"] == 1
        rot(a, blob, 0)
        wait_for(lambda: c.call("events", type="file_fetched"), 30, "c never heard of b's copy")
        third = Path(get(c, blob, agent="vega")[-1]["saved"])
        assert hashlib.sha256(third.read_bytes()).digest() == digest
        assert counters(a)["corrupt_chunks"] == 1  # a refused its rotten chunk
        assert counters(c)["fetched_chunks"] == 3 and counters(b)["served_chunks"] >= 1


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("../../etc/passwd", "must not contain a path"),
        ("/abs/path", "must not contain a path"),
        ("con", "reserved for a device"),
        ("LPT1.txt", "reserved for a device"),
        ("two\nlines", "control characters or line breaks"),
        ("bell\x07", "control characters or line breaks"),
        ("..", "is not a name"),
        ("", "empty"),
    ],
)
def test_files_bad_names_fail_clearly(
    name: str, says: str, pair_ab: list[Device], tmp_path: Path
) -> None:
    """A name with a path, a device name, control characters or none at all is refused."""
    a, _ = pair_ab
    with pytest.raises(SwitchboardError, match=says):
        share(a, write(tmp_path, "fine.txt", b"x"), "@nova", name=name)


@pytest.fixture(scope="module")
def pair_ab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Device]]:
    tmp = tmp_path_factory.mktemp("names")
    env = {**NO_AUTO, "SWITCHBOARD_FILES_MAX_SIZE": "1000000", "SWITCHBOARD_FILES_QUOTA": "1500000"}
    with devices(tmp, ("a", "luna", {}), ("b", "nova", env)) as found:
        yield found


def test_files_size_quota_and_overwrite_fail_clearly(pair_ab: list[Device], tmp_path: Path) -> None:
    """Over the receiver's size limit or quota, or onto a file of other content, a get fails
    with a clear error (gc frees room; --force replaces); nothing lands outside downloads."""
    a, b = pair_ab
    before = set(tmp_path.rglob("*"))
    big = share(a, write(tmp_path, "big.bin", payload(1_200_000, 1)), "@nova")["hash"]
    with pytest.raises(SwitchboardError, match="exceeds this device's limit of 1000000"):
        get(b, big)
    x = share(a, write(tmp_path, "x.bin", payload(800_000, 2)), "@nova")["hash"]
    y_data = payload(800_000, 3)
    y = share(a, write(tmp_path, "y.bin", y_data), "@nova")["hash"]
    assert get(b, x)[-1]["saved"] == str(downloads(b) / "x.bin")
    with pytest.raises(SwitchboardError, match="quota of 1500000 bytes"):
        get(b, y)
    assert x in b.call("files.gc", keep_bytes=0)["removed"]
    clash = downloads(b) / "y.bin"
    clash.write_bytes(b"someone else's y")
    with pytest.raises(SwitchboardError, match="exists with other content: use --force"):
        get(b, y)
    assert clash.read_bytes() == b"someone else's y"
    assert get(b, "y.bin", force=True)[-1]["saved"] == str(clash)
    assert clash.read_bytes() == y_data
    with pytest.raises(SwitchboardError, match="absolute path"):
        get(b, y, output="relative/y.bin")
    assert sorted(downloads(b).iterdir()) == [downloads(b) / "x.bin", clash]
    new = set(tmp_path.rglob("*")) - set(before)
    assert all(p.parent == tmp_path / "outbox" or p == tmp_path / "outbox" for p in new), new
