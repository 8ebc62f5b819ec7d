"""The real ``switchboard`` on two devices: send's text sources, --wait timeouts, tags, notices
and subscribed events in ``inbox``, receipts in ``sent``, the agents table, link lag while off,
display addresses in ``--where``, and one JSON value from every command with ``--json``.

Like ``test_cli_real.py``, every command runs in a subprocess against a real daemon; each test
uses agent names of its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli_homes import Device, Home, check_agent, check_message, one_error_line, timeout
from conftest import Pair

from switchboard import invites
from switchboard.cli.parser import build_parser


def _register(pair: Pair, home: Home, name: str, short: str) -> str:
    """Register agent ``name`` on ``home``'s device; wait until the other device knows it."""
    assert home.json("inbox", agent=name) == []
    other = pair.a if home is pair.hb else pair.b
    address = f"{name}:{short}"
    other.wait_events(1, type="agent_registered", agent=address)
    return address


# -- 1. send --wait and send's usage ----------------------------------------------------------


def test_send_wait_timeout_prints_a_human_line_and_json_only_with_json(pair: Pair) -> None:
    """A `send --wait read` that times out prints one line per recipient, not JSON (JSON with
    `--json`), and exits 1; `send --help` names --wait, --timeout and --priority in its usage."""
    me = _register(pair, pair.ha, "slowpoke", pair.a_short)
    argv = ("send", "--wait", "read", "--timeout", "0.5", "@slowpoke", "--", "read me")
    result = pair.ha.run(*argv, agent="luna", code=1)
    assert result.stdout.split() == ["delivered", me]
    assert result.stderr.startswith("switchboard: not every recipient reached read")
    result = pair.ha.run(*argv[:-2], "--json", "--", "read me", agent="luna", code=1)
    sent = json.loads(result.stdout)
    assert (sent["complete"], sent["recipients"]) == (
        False,
        [{"address": me, "state": "delivered"}],
    )
    usage = pair.ha.run("send", "--help").stdout.split("\n\n")[0]
    for option in ("--wait", "--timeout", "--priority", "--file"):
        assert option in usage


# -- 5. the text from stdin or a file ---------------------------------------------------------


def test_send_reads_the_text_from_stdin_or_a_file(pair: Pair, tmp_path: Path) -> None:
    """`send @x -`, `send @x` with a pipe, and `send @x --file PATH` send multi-line text
    unquoted; text and --file together, or no text at all, are usage errors."""
    home = pair.ha
    _register(pair, home, "pasted", pair.a_short)
    code = "def f(x):\n    return x * 2  # 'quotes' \"and\" $vars\n"
    log = tmp_path / "build.log"
    log.write_text("line 1\nline 2\n")
    home.run("send", "@pasted", "-", agent="luna", stdin=code)
    home.run("send", "@pasted", agent="luna", stdin=code)
    home.run("send", "@pasted", "--file", str(log), "--json", agent="luna")
    texts = [m["text"] for m in home.json("inbox", agent="pasted")]
    assert texts == [code.rstrip("\n"), code.rstrip("\n"), "line 1\nline 2"]
    both = home.run("send", "@pasted", "--file", str(log), "--", "hi", agent="luna", code=2)
    assert "not both" in both.stderr
    assert "no message text" in home.run("send", "@pasted", agent="luna", code=2).stderr
    empty = home.run("send", "@pasted", "-", agent="luna", stdin="\n", code=1)
    assert one_error_line(empty) == "switchboard: no message text in stdin"
    missing = home.run("send", "@pasted", "--file", str(tmp_path / "nope"), code=1)
    assert "nope" in one_error_line(missing)


# -- 6. tags ----------------------------------------------------------------------------------


def test_set_tags_and_send_to_a_tag_group(pair: Pair) -> None:
    """`set tags` shows in `agents --json` on both devices; `send +tag` reaches every other
    agent with that tag and no one else; an unknown tag is an error."""
    tagged_b = _register(pair, pair.hb, "taggedb", pair.b_short)
    tagged_a = _register(pair, pair.ha, "taggeda", pair.a_short)
    agent = pair.hb.json("set", "tags", "Backend,db", agent="taggedb")
    assert agent["tags"] == ["backend", "db"]
    assert pair.ha.json("set", "tags", "backend", agent="taggeda")["tags"] == ["backend"]
    where = "json_extract(data, '$.tags') = '[\"backend\",\"db\"]'"
    pair.a.wait_events(1, type="agent_registered", agent=tagged_b, where=where)
    for home in (pair.ha, pair.hb):
        listed = {a["address"]: a for a in home.json("agents")}
        for item in listed.values():
            check_agent(item)
            assert isinstance(item["tags"], list)
        assert listed[tagged_b]["tags"] == ["backend", "db"]
        assert listed[tagged_a]["tags"] == ["backend"]
    assert "+backend +db" in pair.ha.run("agents").stdout

    sent = json.loads(
        pair.ha.run("send", "+backend", "--json", "--", "tag call", agent="luna").stdout
    )
    assert sorted(r["address"] for r in sent["recipients"]) == sorted([tagged_a, tagged_b])
    # The sender itself is left out of its tag group.
    own = json.loads(pair.ha.run("send", "+backend", "--json", "--", "hi", agent="taggeda").stdout)
    assert [r["address"] for r in own["recipients"]] == [tagged_b]
    [message] = pair.hb.json("inbox", "--wait", "30", agent="taggedb")[:1]
    assert (message["text"], message["to"]) == ("tag call", ["+backend"])
    nobody = pair.ha.run("send", "+nobodyhasit", "--", "x", agent="luna", code=1)
    assert one_error_line(nobody) == "switchboard: no other agent tagged +nobodyhasit"
    assert pair.hb.json("set", "tags", "--clear", agent="taggedb")["tags"] == []
    assert pair.hb.run("set", "tags", agent="taggedb", code=2).stderr


# -- 2, 3. notices and subscribed events in inbox ---------------------------------------------


def test_inbox_shows_a_room_notice_with_what_it_is_and_whom_it_concerns(pair: Pair) -> None:
    """A member_joined notice in `inbox` names its kind, subject and room, not ':DEV -> '."""
    host = _register(pair, pair.ha, "host", pair.a_short)
    guest = _register(pair, pair.hb, "guest", pair.b_short)
    pair.ha.json("room", "create", "noticeroom", agent="host")
    pair.b.wait_events(1, type="room_created", where="json_extract(data, '$.room') = 'noticeroom'")
    pair.hb.json("room", "join", "noticeroom", agent="guest")
    pair.a.wait_events(1, type="notice_posted", where="json_extract(data, '$.room') = 'noticeroom'")
    human = pair.ha.run("inbox", "--peek", agent="host").stdout
    header = human.splitlines()[0]
    assert f"notice member_joined about {guest} in #noticeroom (from {pair.b_short})" in header
    assert header.endswith("-> #noticeroom")
    [notice] = pair.ha.json("inbox", agent="host")
    check_message(notice)
    assert notice["from"] == pair.b_short
    assert notice["notice"]["kind"] == "member_joined"
    assert notice["notice"]["subject"] == guest
    assert notice["notice"]["room"] == "noticeroom"
    assert host not in notice["to"]


def test_events_sub_matches_reach_inbox_and_inbox_wait_as_notices(pair: Pair) -> None:
    """An agent at a shell that subscribed gets matching events in `inbox --wait` (woken by
    them) and `inbox --json`, once each, marked as notices; `--peek` keeps them."""
    watcher = _register(pair, pair.ha, "watcher", pair.a_short)
    editor = _register(pair, pair.hb, "editor", pair.b_short)
    sub = pair.ha.json("events", "sub", "--file", "*.py", agent="watcher")
    assert (sub["type"], sub["file"]) == ("file_edited", "*.py")
    proc = pair.ha.popen("inbox", "--wait", "60", agent="watcher")
    try:
        pair.b.call("event.record", agent="editor", type="file_edited",
                    data={"path": "src/app.py", "tool": "Edit"})  # fmt: skip
        pair.b.call("event.record", agent="editor", type="file_edited",
                    data={"path": "README.md", "tool": "Edit"})  # fmt: skip
        out, err = proc.communicate(timeout=timeout(60))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, err) == (0, "")
    header, text = out.splitlines()[:2]
    assert f"event file_edited by {editor} -> {watcher}" in header
    assert text == f"  {editor} edited src/app.py (Edit)"
    assert pair.ha.json("inbox", agent="watcher") == []  # told once; README.md did not match
    pair.b.call("event.record", agent="editor", type="file_edited",
                data={"path": "lib/b.py", "tool": "Write"})  # fmt: skip
    [peeked] = pair.ha.json("inbox", "--peek", "--wait", "60", agent="watcher")
    check_message(peeked)
    assert peeked["notice"]["kind"] == "event"
    assert peeked["notice"]["type"] == "file_edited"
    assert peeked["notice"]["subject"] == editor
    assert peeked["notice"]["event"]["data"]["path"] == "lib/b.py"
    assert pair.ha.json("inbox", agent="watcher") == [peeked]
    assert pair.ha.json("inbox", agent="watcher") == []
    assert pair.ha.json("events", "unsub", agent="watcher") == {"removed": 1}


# -- 4. inbox intent/reply_to, sent's injected, the agents table, lag while off ----------------


def test_inbox_json_has_intent_and_reply_to_and_sent_shows_injected(pair: Pair) -> None:
    """`inbox --json` carries intent and reply_to; `sent` shows a message placed into the
    recipient's context as injected."""
    _register(pair, pair.ha, "asker", pair.a_short)
    answerer = _register(pair, pair.ha, "answerer", pair.a_short)
    argv = ("send", "@answerer", "--intent", "request", "--json", "--", "why?")
    ask = json.loads(pair.ha.run(*argv, agent="asker").stdout)
    [question] = pair.ha.json("inbox", "--peek", agent="answerer")
    assert (question["intent"], question["reply_to"]) == ("request", None)
    pair.a.call("inbox.take", agent="answerer", context="test:ctx#0", via="test")
    [sent] = pair.ha.json("sent", "--last", "1", agent="asker")
    [recipient] = sent["recipients"]
    assert (recipient["address"], recipient["state"]) == (answerer, "injected")
    assert recipient["injected"]
    assert f"-> {answerer} injected" in pair.ha.run("sent", "--last", "1", agent="asker").stdout
    pair.ha.run("send", "@asker", "--reply-to", str(ask["id"]), "--", "because", agent="answerer")
    [reply] = pair.ha.json("inbox", agent="asker")
    assert reply["reply_to"] == sent["ref"]
    assert reply["intent"] is None
    assert (reply["from"], reply["to"]) == (answerer, ["@asker"])


def test_agents_table_shows_a_clipped_summary(pair: Pair) -> None:
    """The `agents` table has a SUMMARY column, long summaries cut with '...'."""
    _register(pair, pair.ha, "summarist", pair.a_short)
    long = "porting the parser to the new grammar and fixing every test on the way"
    pair.ha.run("set", "summary", long, agent="summarist")
    header, *rows = pair.ha.run("agents").stdout.splitlines()
    assert "SUMMARY" in header.split()
    [row] = [r for r in rows if r.startswith(f"summarist:{pair.a_short}")]
    assert long not in row
    assert "porting the parser to the new grammar..." in row


def test_link_status_counts_events_waiting_while_off(pair: Pair) -> None:
    """While B's link is off, LAG counts the events B stored since (not '-')."""
    _register(pair, pair.hb, "laggard", pair.b_short)
    try:
        pair.hb.json("link", "off")
        for n in range(3):
            pair.hb.run("send", "@laggard", "--", f"note {n}", agent="laggard")
        [link] = pair.hb.json("link", "status")
        assert link["state"] == "off"
        assert isinstance(link["lag"], int)
        assert link["lag"] >= 6  # three messages and their delivered receipts
        row = pair.hb.run("link", "status").stdout.splitlines()[1].split()
        assert row[3] == str(link["lag"])
    finally:
        pair.hb.run("link", "on")


def test_agents_show_an_unreachable_device_with_the_time_it_was_last_seen(pair: Pair) -> None:
    """When a third device's daemon dies, its agent shows `unreachable (since HH:MM:SS)`, and
    its JSON has status unreachable and device_last_seen."""
    root = Path(tempfile.mkdtemp(prefix="sbcli-", dir="/tmp"))
    c = Device(root / "c", "third")
    try:
        c.start()
        hc = Home(c.home)
        token = pair.ha.run("invite").stdout.splitlines()[-1]
        hc.run("join", token, agent="drifter")
        c_short = hc.json("status")["device"]["short"]
        drifter = f"drifter:{c_short}"
        pair.a.wait_events(1, type="agent_registered", agent=drifter)
        c.kill(signal.SIGKILL)
        # Poll until A hears (from the relay) that C went away; each look is a subprocess.
        deadline = time.monotonic() + timeout(30)
        listed = {a["address"]: a for a in pair.ha.json("agents")}
        while listed[drifter]["status"] != "unreachable" and time.monotonic() < deadline:
            listed = {a["address"]: a for a in pair.ha.json("agents")}
        assert listed[drifter]["status"] == "unreachable"
        assert listed[drifter]["device_last_seen"]
        [row] = [r for r in pair.ha.run("agents").stdout.splitlines() if r.startswith(drifter)]
        assert "unreachable (since " in row
    finally:
        c.kill(signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


# -- 8. display addresses in --where ---------------------------------------------------------


def test_events_where_finds_recipients_by_display_address(pair: Pair) -> None:
    """`display_data` and `display()` show internal addresses as name:DEV in --where."""
    target = _register(pair, pair.hb, "shown", pair.b_short)
    text = "find me by display address"
    pair.ha.run("send", f"@{target}", "--", text, agent="luna")
    by_text = f"json_extract(data, '$.text') = '{text}'"
    pair.b.wait_events(1, type="message_posted", where=by_text)
    raw = f"{by_text} AND json_extract(data, '$.recipients[0]') = '{target}'"
    assert pair.hb.json_lines("events", "--where", raw) == []
    first = f"display(json_extract(data, '$.recipients[0]')) = '{target}'"
    [found] = pair.hb.json_lines("events", "--where", f"{by_text} AND {first}")
    like = f"{by_text} AND display_data LIKE '%\"{target}\"%'"
    assert pair.hb.json_lines("events", "--where", like) == [found]
    assert found["data"]["recipients"][0].startswith("shown:")  # data itself is unchanged
    assert found["data"]["recipients"][0] != target


# -- 7. one JSON value from the action commands -----------------------------------------------


def test_action_commands_print_one_json_value(pair: Pair, fresh_home: Home, tmp_path: Path) -> None:
    """init, group create, invite, join, room leave/invite/kick, lease release/check,
    git-hook install, install, uninstall, daemon start/stop each print one JSON value."""
    ha = pair.ha
    device = ha.json("init")
    assert device["short"] == pair.a_short
    invite = ha.json("invite")
    assert invite["invite"].startswith(invites.PREFIX)
    joined = fresh_home.json("join", invite["invite"])
    assert joined["group"]["id"] == pair.group_id
    assert fresh_home.json("daemon", "stop") == {"stopped": True, "running": False}
    started = fresh_home.json("daemon", "start")
    assert (started["running"], started["started"]) == (True, True)
    assert fresh_home.json("daemon", "start")["started"] is False
    # group create on a home of its own (one group per home)
    with_group = Home(tmp_path / "g")
    try:
        created = with_group.json("group", "create", "--relay", pair.relay.url)
        assert created["invite"].startswith(invites.PREFIX)
        assert created["group"]["id"] != pair.group_id
    finally:
        with_group.close()

    _register(pair, ha, "roomer", pair.a_short)
    _register(pair, ha, "roomee", pair.a_short)
    ha.json("room", "create", "jsonroom", "--private", agent="roomer")
    assert ha.json("room", "invite", "jsonroom", "roomee", agent="roomer")["name"] == "jsonroom"
    ha.json("room", "join", "jsonroom", agent="roomee")
    assert ha.json("room", "kick", "jsonroom", "roomee", agent="roomer")["name"] == "jsonroom"
    assert ha.json("room", "leave", "jsonroom", agent="roomer")["name"] == "jsonroom"

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=timeout(30))
    installed = json.loads(ha.run("lease", "git-hook", "install", "--json", cwd=repo).stdout)
    assert installed["installed"].endswith("pre-commit")
    leased = json.loads(
        ha.run("lease", "acquire", "a.py", "--json", agent="roomer", cwd=repo).stdout
    )
    assert leased["leases"]
    checked = json.loads(
        ha.run("lease", "check", "a.py", "--json", agent="roomer", cwd=repo).stdout
    )
    assert checked["ok"] is True
    released = json.loads(ha.run("lease", "release", "--json", agent="roomer", cwd=repo).stdout)
    assert [lease["path"] for lease in released["released"]] == ["a.py"]

    env = {"HOME": str(tmp_path / "user")}
    (tmp_path / "user").mkdir()
    for verb in ("install", "uninstall"):
        out = ha.run(verb, "claude", "--dry-run", "--json", env=env, cwd=tmp_path).stdout
        report = json.loads(out)
        assert report["dry_run"] is True
        assert [h["harness"] for h in report["harnesses"]] == ["claude"]
    assert not any((tmp_path / "user").iterdir())  # a dry run writes nothing


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Any]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = list(_leaves(sub, (*path, name)))
                yield from inner or [((*path, name), sub)]


def test_every_command_accepts_json() -> None:
    """Every leaf command of the parser takes --json (and parses it to ``json=True``)."""
    leaves = list(_leaves(build_parser()))
    assert len(leaves) > 40
    for path, sub in leaves:
        assert "--json" in sub._option_string_actions, " ".join(path)
        required = [
            next(iter(a.choices)) if a.choices else "x"
            for a in sub._actions
            if not a.option_strings and a.nargs in (None, "+")
        ]
        options = [x for a in sub._actions if a.option_strings and a.required
                   for x in (a.option_strings[0], "x")]  # fmt: skip
        args = build_parser().parse_args([*path, *options, *required, "--json"])
        assert args.json is True, " ".join(path)
