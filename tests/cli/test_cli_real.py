"""The real ``switchboard`` binary end to end: two homes joined through a real relay on loopback.

Every command runs as ``python -m switchboard`` in a subprocess against a temporary
SWITCHBOARD_HOME. One relay and two devices (``laptop`` with agent luna, ``server`` with agent
nova) are shared by the module; each test uses agent names and texts of its own, so the tests do
not depend on each other's order. Fresh-home behaviour (autostart, daemon lifecycle, init, relay
serve) is in ``test_cli_real_home.py``.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from cli_homes import (
    PY,
    Home,
    Lines,
    check_agent,
    check_event,
    check_keys,
    check_link,
    check_message,
    check_send_result,
    check_shape,
    interrupt,
    one_error_line,
    timeout,
)
from conftest import Pair

from switchboard import invites
from switchboard.daemon.shapes import Status

# -- groups, invites, links --------------------------------------------------------------------


def test_group_create_and_invite_print_the_invite_alone_on_the_last_line(pair: Pair) -> None:
    """`group create` and `invite` end with the bare invite, so `$(... | tail -n 1)` gets it."""
    last = pair.created.splitlines()[-1]
    assert last.startswith(invites.PREFIX)
    assert last == last.strip()
    assert " " not in last
    assert invites.parse(last).group == pair.group_id
    script = 'TOKEN=$("$PY" -m switchboard invite | tail -n 1); printf "%s" "$TOKEN"'
    token = subprocess.run(
        ["sh", "-c", script],
        env={**pair.ha.env, "PY": PY},
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=True,
    ).stdout
    assert invites.parse(token).group == pair.group_id
    assert pair.ha.run("invite").stdout.splitlines()[-1] == token


def test_join_reads_the_invite_from_stdin(pair: Pair, fresh_home: Home) -> None:
    """`join -` joins from stdin on a fresh home; `join TOKEN` again is harmless; junk fails."""
    token = pair.ha.run("invite").stdout.splitlines()[-1]
    joined = fresh_home.run("join", "-", stdin=token + "\n").stdout
    assert joined.startswith("joined group team ")
    groups = fresh_home.json("status")["groups"]
    assert [(g["id"], g["name"], g["link"]["url"]) for g in groups] == [
        (pair.group_id, "team", pair.relay.url)
    ]
    again = pair.hb.run("join", token, agent="nova").stdout
    assert again.startswith("joined group team ")
    assert len(pair.hb.json("status")["groups"]) == 1
    bad = fresh_home.run("join", "-", stdin="not an invite\n", code=1)
    one_error_line(bad)


def test_link_off_holds_messages_until_link_on(pair: Pair) -> None:
    """While B's link is off a message for B waits at the relay; `link on` brings it in."""
    ha, hb = pair.ha, pair.hb
    vega = f"vega:{pair.b_short}"
    assert hb.json("inbox", agent="vega") == []  # registers vega on B
    pair.a.wait_events(1, type="agent_registered", agent=vega)
    text = "sent while your link was off"
    where = f"json_extract(data, '$.text') = '{text}'"
    try:
        off = hb.json("link", "off")
        for link in off:
            check_link(link)
        assert [(link["name"], link["state"], link["enabled"]) for link in off] == [
            ("team", "off", False)
        ]
        status = hb.json("link", "status")
        assert isinstance(status, list)
        for link in status:
            check_link(link)
        assert [link["state"] for link in status] == ["off"]
        assert hb.run("link", "status").stdout.splitlines()[1].split()[-1] == "off"

        sent = json.loads(ha.run("send", "--json", f"@{vega}", "--", text, agent="luna").stdout)
        check_send_result(sent)
        assert sent["result"] == "queued"
        assert sent["recipients"] == [{"address": vega, "state": "queued"}]
        # The relay now holds the message (A's link is connected with no lag) ...
        synced = pair.a.call("link.sync", timeout=timeout(20))
        assert [(link["state"], link["lag"]) for link in synced] == [("connected", 0)]
        # ... and B, whose link is off, has not received it.
        assert hb.json("inbox", "--peek", agent="vega") == []
        assert hb.json_lines("events", "--type", "message_posted", "--where", where) == []

        on = hb.json("link", "on")
        for link in on:
            check_link(link)
        assert [(link["state"] != "off", link["enabled"]) for link in on] == [(True, True)]
        arrived = json.loads(hb.run("inbox", "--wait", "60", "--json", agent="vega").stdout)
        assert [(m["from"], m["text"]) for m in arrived] == [(f"luna:{pair.a_short}", text)]
    finally:
        hb.run("link", "on")


# -- agents and status -------------------------------------------------------------------------


def test_agents_json_lists_the_agents_of_both_devices(pair: Pair) -> None:
    """`agents --json` prints one array of agent objects from every device of the group."""
    luna, nova = f"luna:{pair.a_short}", f"nova:{pair.b_short}"
    for home, short in ((pair.ha, pair.a_short), (pair.hb, pair.b_short)):
        agents = home.json("agents")
        assert isinstance(agents, list)
        for agent in agents:
            check_agent(agent)
            assert agent["local"] is (agent["device"] == short)
        assert {luna, nova} <= {agent["address"] for agent in agents}
    header, *rows = pair.ha.run("agents").stdout.splitlines()
    assert header.split()[:3] == ["ADDRESS", "STATUS", "HARNESS"]
    assert any(row.startswith(nova) for row in rows)


def test_status_json_has_device_daemon_groups_and_agents(pair: Pair) -> None:
    """`status --json` prints one object: device ids, the daemon's pid, each link, the agents."""
    status = pair.ha.json("status")
    check_keys(status, frozenset({"device", "daemon", "groups", "agents"}), "status")
    check_shape(status, Status)
    device = status["device"]
    assert (device["short"], device["name"]) == (pair.a_short, "laptop")
    assert isinstance(device["id"], str)
    assert device["id"]
    assert pair.a.proc is not None
    assert (status["daemon"]["running"], status["daemon"]["pid"]) == (True, pair.a.proc.pid)
    [group] = status["groups"]
    assert (group["id"], group["name"]) == (pair.group_id, "team")
    check_link(group["link"])
    assert group["link"]["url"] == pair.relay.url
    assert group["link"]["state"] == "connected"
    assert isinstance(status["agents"], list)
    for agent in status["agents"]:
        check_agent(agent)
    text = pair.ha.run("status").stdout
    assert f"daemon  running, pid {pair.a.proc.pid}" in text
    assert f"group   team  {pair.relay.url}  connected" in text


# -- send and inbox ----------------------------------------------------------------------------


def test_send_to_self_is_delivered_and_inbox_marks_it_read_unless_peek(pair: Pair) -> None:
    """A note to yourself says delivered; `--peek` leaves it unread, plain `inbox` reads it."""
    me = f"reader:{pair.a_short}"
    home = pair.ha
    assert home.run("send", "@reader", "--", "note one", agent="reader").stdout == (
        f"delivered  {me}\n"
    )
    sent = json.loads(
        home.run("--as", "reader", "send", "--json", "@reader", "--", "note two").stdout
    )
    check_send_result(sent)
    assert sent["result"] == "delivered"
    assert sent["recipients"] == [{"address": me, "state": "delivered"}]

    peeked = home.json("inbox", "--peek", agent="reader")
    assert [m["text"] for m in peeked] == ["note one", "note two"]
    for message in peeked:
        check_message(message)
        assert (message["from"], message["to"], message["thread"]) == (me, ["@reader"], None)
    assert sent["id"] == peeked[1]["id"]
    assert home.json("inbox", "--peek", agent="reader") == peeked
    assert home.json("inbox", agent="reader") == peeked
    assert home.json("inbox", agent="reader") == []
    assert home.run("inbox", agent="reader").stdout == "no unread messages\n"


def test_inbox_wait_returns_when_a_message_arrives(pair: Pair) -> None:
    """`inbox --wait` blocks until another process (on another device) sends it a message."""
    waiter = f"waiter:{pair.a_short}"
    proc = pair.ha.popen("inbox", "--wait", "600", "--json", agent="waiter")
    try:
        # The daemon registers the waiting agent when the inbox call comes in.
        pair.a.wait_events(1, type="agent_registered", agent=waiter)
        pair.b.wait_events(1, type="agent_registered", agent=waiter)
        pair.hb.run("send", f"@{waiter}", "--", "wake up", agent="nova")
        out, err = proc.communicate(timeout=timeout(60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, err) == (0, "")
    messages = json.loads(out)
    assert [(m["from"], m["text"]) for m in messages] == [(f"nova:{pair.b_short}", "wake up")]


def test_inbox_wait_ends_with_exit_0_on_ctrl_c(pair: Pair) -> None:
    """Ctrl-C on a waiting `inbox --wait` ends it quietly with status 0."""
    proc = pair.ha.popen("inbox", "--wait", "600", agent="sleeper")
    try:
        pair.a.wait_events(1, type="agent_registered", agent=f"sleeper:{pair.a_short}")
        assert interrupt(proc) == (0, "", "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_send_to_an_unknown_agent_exits_1_with_one_stderr_line(pair: Pair) -> None:
    """An unknown recipient is an error: status 1 and one `switchboard: ` line, nothing sent."""
    before = len(pair.ha.json_lines("events", "--type", "message_posted"))
    result = pair.ha.run("send", "@ghost", "--", "anyone?", agent="luna", code=1)
    assert one_error_line(result) == "switchboard: unknown agent @ghost"
    result = pair.ha.run("send", "@nova:ZZZZ", "--", "anyone?", agent="luna", code=1)
    assert one_error_line(result) == "switchboard: unknown device ZZZZ"
    assert len(pair.ha.json_lines("events", "--type", "message_posted")) == before


# -- events ------------------------------------------------------------------------------------


def test_events_follow_json_sees_the_other_device_and_ends_with_exit_0_on_ctrl_c(
    pair: Pair,
) -> None:
    """`events --follow --json` on B prints A's message as a JSON line; Ctrl-C exits 0."""
    proc = pair.hb.popen("events", "--last", "1", "--follow", "--json")
    try:
        assert proc.stdout is not None
        lines = Lines(proc.stdout)
        lines.wait_for(r"^\{", 30)  # the --last event: the follow now runs from there
        text = "seen by the follower"
        pair.ha.run("send", f"@nova:{pair.b_short}", "--", text, agent="luna")
        lines.wait_for(text, 60, start=1)
        code, _, err = interrupt(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (code, err) == (0, "")
    events = [json.loads(line) for line in lines.lines if line]
    for event in events:
        check_event(event)
    [posted] = [e for e in events if e["type"] == "message_posted" and e["data"]["text"] == text]
    assert (posted["agent"], posted["device"]) == (f"luna:{pair.a_short}", pair.a_short)
    assert posted["data"]["to"] == [f"@nova:{pair.b_short}"]


def test_events_filters_select_the_last_message_of_an_agent(pair: Pair) -> None:
    """`--type --agent --last 1 --json` prints exactly that event; `--where` finds it too."""
    luna = f"luna:{pair.a_short}"
    text = "the last word"
    where = f"json_extract(data, '$.text') = '{text}'"
    pair.ha.run("send", f"@nova:{pair.b_short}", "--", text, agent="luna")
    pair.b.wait_events(1, type="message_posted", where=where)
    args = ("events", "--type", "message_posted", "--agent", luna, "--last", "1")
    [event] = pair.hb.json_lines(*args)
    check_event(event)
    assert (event["type"], event["agent"]) == ("message_posted", luna)
    assert event["device"] == pair.a_short
    assert event["data"]["text"] == text
    assert [e["id"] for e in pair.hb.json_lines("events", "--where", where)] == [event["id"]]
    human = pair.hb.run(*args).stdout.splitlines()
    assert len(human) == 1
    assert human[0].startswith(f"#{event['id']} ")
    assert f" {luna} message_posted " in human[0]


def test_events_wait_follows_for_a_while_then_exits_0(pair: Pair) -> None:
    """`events --wait 1` follows for a second and exits 0; with `--last` it shows those first."""
    for line in pair.ha.run("events", "--wait", "1", "--json").stdout.splitlines():
        check_event(json.loads(line))
    shown = pair.ha.json_lines("events", "--last", "2", "--wait", "1")
    assert len(shown) >= 2
    for event in shown:
        check_event(event)


def test_events_where_refuses_to_write(pair: Pair) -> None:
    """`--where` is read-only SQL: a DELETE exits 1 with one line and deletes nothing."""
    before = pair.ha.json_lines("events", "--type", "agent_registered")
    result = pair.ha.run("events", "--where", "DELETE FROM events", code=1)
    one_error_line(result)
    assert pair.ha.json_lines("events", "--type", "agent_registered") == before


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        ["send", "@luna"],
        ["send", "--", "no target"],
        ["events", "--last", "0"],
        ["events", "--wait", "soon"],
        ["inbox", "--wait", "-1"],
        ["daemon"],
        ["link", "sideways"],
        ["join"],
        ["relay", "serve", "--port", "70000"],
    ],
)
def test_usage_errors_exit_2(pair: Pair, argv: list[str]) -> None:
    """A malformed command line exits 2 with argparse's usage message and prints nothing else."""
    result = pair.ha.run(*argv, code=2)
    assert result.stdout == ""
    assert "usage: switchboard" in result.stderr
