"""``switchboard devices``: every device of the group, with its key fingerprint, over a relay."""

from __future__ import annotations

from pathlib import Path

from cluster import group_of

from switchboard.crypto import fingerprint, load_identity, public_bytes


def test_devices_lists_the_group_with_fingerprints(tmp_path: Path) -> None:
    """Both devices list both, each with the fingerprint of the key in the other's home."""
    with group_of(tmp_path, "laptop", "desk") as (relay, (a, b)):
        b.wait_events(2, type="device_joined")
        a.wait_events(2, type="device_joined")
        ids = {d.name: d.call("status")["device"]["id"] for d in (a, b)}
        prints = {}
        for d in (a, b):
            key = load_identity(d.settings.identity_path)
            assert key is not None
            prints[d.name] = fingerprint(public_bytes(key))
        listed = {row["id"]: row for row in a.cli_json("devices")}
        assert set(listed) == set(ids.values())
        for name, device_id in ids.items():
            row = listed[device_id]
            assert row["name"] == name
            assert row["fingerprint"] == prints[name]
            assert row["key_ok"] is True
            assert row["this"] is (name == "laptop")
        assert listed[ids["laptop"]]["link"] == "this device"
        b.wait_events(1, type="device_joined", where=f"origin = '{ids['laptop']}'")
        table = b.cli("devices").stdout
        assert "KEY FINGERPRINT" in table.splitlines()[0]
        assert prints["laptop"] in table and prints["desk"] in table
        assert relay.url in table  # the laptop is online, reached by the group's link
