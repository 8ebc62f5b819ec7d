"""Each command against a fake daemon on a real socket: the params it sends, what it prints.

The fake daemon (``conftest.FakeDaemon``) answers in DESIGN.md §5 shapes, so these tests pin
the CLI's half of the contract; the real daemon's half is tested against the real daemon.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from conftest import AGENT, EVENT, INVITE, LINK, MESSAGE, FakeDaemon

from switchboard.cli import quick
from switchboard.cli.main import EXIT_INTERRUPTED, main
from switchboard.config import default_agent_name
from switchboard.daemon.client import Client

Capsys = pytest.CaptureFixture[str]


def run(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- device --------------------------------------------------------------------------------------


def test_cli_init_sends_the_name_and_prints_the_ids(
    fake_daemon: FakeDaemon, capsys: Capsys
) -> None:
    """``init --name`` sends init{name} and prints the short id and full id."""
    code, out, _ = run(capsys, "init", "--name", "laptop")
    assert code == 0
    assert fake_daemon.calls == [("init", {"name": "laptop"})]
    assert out.splitlines() == ["device BOXE  laptop", "id     wfabbjsbct6qjam44mzpaipyo3"]
    run(capsys, "init")
    assert fake_daemon.calls[-1] == ("init", {})


def test_cli_status_prints_json_or_a_summary(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``status --json`` prints the daemon's status object; without it, a readable summary."""
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0
    assert json.loads(out)["device"]["short"] == "BOXE"
    code, out, _ = run(capsys, "status")
    assert out.splitlines()[:3] == [
        "device  BOXE  laptop",
        "daemon  running, pid 123",
        "group   team  ws://127.0.0.1:7787  connected  lag 0, last push -",
    ]
    assert "nova:ABCD" in out


# -- messages ------------------------------------------------------------------------------------


def test_cli_send_prints_one_line_per_recipient(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``send`` sends send{agent,to,text} and prints each recipient's delivery state."""
    code, out, err = run(capsys, "--as", "luna", "send", "@nova", "#ops", "--", "hello", "there")
    assert (code, err) == (0, "")
    assert fake_daemon.calls == [
        ("send", {"agent": "luna", "to": ["@nova", "#ops"], "text": "hello there"})
    ]
    assert out == "delivered  nova:ABCD\nqueued     luna:EFGH\n"


def test_cli_send_text_after_dashes_may_look_like_options(
    fake_daemon: FakeDaemon, capsys: Capsys
) -> None:
    """Everything after ``--`` is text, even ``--json``; options before it still apply."""
    code, out, _ = run(
        capsys, "send", "--as", "luna", "--thread", "t1", "--json", "@nova", "--", "--json", "-x"
    )
    assert code == 0
    assert fake_daemon.calls[-1] == (
        "send",
        {"agent": "luna", "to": ["@nova"], "text": "--json -x", "thread": "t1"},
    )
    assert json.loads(out)["result"] == "queued"


def test_cli_send_without_dashes_takes_leading_targets(
    fake_daemon: FakeDaemon, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``--``, the leading @/# words are targets and the rest is the text."""
    monkeypatch.setenv("SWITCHBOARD_AGENT", "mars")
    assert run(capsys, "send", "@nova", "@all", "hi", "@you")[0] == 0
    assert fake_daemon.calls[-1] == (
        "send",
        {"agent": "mars", "to": ["@nova", "@all"], "text": "hi @you"},
    )


def test_cli_send_error_is_one_line_on_stderr(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """A daemon error exits 1 with exactly ``switchboard: <message>`` on stderr."""
    assert run(capsys, "send", "@ghost", "--", "hi") == (
        1,
        "",
        "switchboard: unknown agent @ghost\n",
    )
    assert run(capsys, "send", "@boom", "--", "hi") == (1, "", "switchboard: internal error\n")


def test_cli_inbox_prints_messages(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``inbox`` sends inbox{agent,peek,wait} and prints each message with its text indented."""
    code, out, _ = run(capsys, "--as", "nova", "inbox", "--peek", "--wait", "5")
    assert code == 0
    assert fake_daemon.calls == [("inbox", {"agent": "nova", "peek": True, "wait": 5.0})]
    lines = out.splitlines()
    assert lines[0].startswith("#7 ") and lines[0].endswith(" luna:BOXE -> @nova:ABCD")
    assert lines[1:] == ["  first line", "  second line"]


def test_cli_listings_print_one_json_array(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``agents``, ``inbox`` and ``link status`` with --json print one JSON array each."""
    for argv, expected in (
        (["agents", "--json"], [AGENT]),
        (["inbox", "--json"], [MESSAGE]),
        (["link", "status", "--json"], [LINK]),
    ):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        assert json.loads(out) == expected
    assert fake_daemon.calls[1] == (
        "inbox",
        {"agent": fake_daemon.calls[1][1]["agent"], "peek": False, "wait": 0.0},
    )


def test_cli_agents_prints_a_table(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``agents`` prints aligned columns: address, status, harness, last seen, summary, tags,
    directory."""
    code, out, _ = run(capsys, "agents")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == [
        "ADDRESS", "STATUS", "HARNESS", "LAST", "SEEN", "SUMMARY", "TAGS", "DIRECTORY"
    ]  # fmt: skip
    assert row.split()[:3] == ["nova:ABCD", "active", "claude"]
    assert row.endswith("/src/app")


# -- events --------------------------------------------------------------------------------------


def test_cli_events_prints_json_lines(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``events --json`` sends the filters and its reader (the acting agent) and prints one
    event object per line."""
    code, out, _ = run(
        capsys,
        "events",
        "--type",
        "message_posted",
        "--agent",
        "luna",
        "--where",
        "id > 3",
        "--last",
        "5",
        "--json",
    )
    assert code == 0
    assert fake_daemon.calls == [
        (
            "events",
            {
                "type": "message_posted",
                "agent": "luna",
                "where": "id > 3",
                "reader": default_agent_name(),
                "last": 5,
            },
        )
    ]
    run(capsys, "--as", "nova", "events")
    assert fake_daemon.calls[-1] == ("events", {"reader": "nova"})
    assert [json.loads(line) for line in out.splitlines()] == [EVENT]


def test_cli_events_human_line(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """Without --json each event is ``#id time agent type data``."""
    out = run(capsys, "events")[1]
    number, _time, agent, kind, data = out.rstrip("\n").split(" ", 4)
    assert (number, agent, kind, json.loads(data)) == (
        "#42",
        "luna:BOXE",
        "message_posted",
        {"text": "hi"},
    )


def test_cli_events_follow_streams_json_lines(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``events --follow --json`` follows from now and prints each event as it comes."""
    code, out, _ = run(capsys, "events", "--follow", "--type", "message_posted", "--json")
    assert code == 0
    reader = default_agent_name()
    assert fake_daemon.calls == [("events.follow", {"type": "message_posted", "reader": reader})]
    assert [json.loads(line)["id"] for line in out.splitlines()] == [43, 44]


def test_cli_events_last_then_follow_continues_after_the_last_shown(
    fake_daemon: FakeDaemon, capsys: Capsys
) -> None:
    """``--last N --follow`` prints the last N, then follows after the last one shown."""
    out = run(capsys, "events", "--last", "1", "--follow", "--json")[1]
    assert [json.loads(line)["id"] for line in out.splitlines()] == [42, 43, 44]
    reader = default_agent_name()
    assert fake_daemon.calls == [
        ("events", {"reader": reader, "last": 1}),
        ("events.follow", {"reader": reader, "after": 42}),
    ]


def test_cli_events_wait_bounds_the_follow(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``--wait S`` follows for S seconds, then exits 0 even if the stream goes on."""
    fake_daemon.follow_forever = True
    code, out, _ = run(capsys, "events", "--wait", "0.3", "--json")
    assert code == 0
    assert fake_daemon.calls == [("events.follow", {"reader": default_agent_name(), "wait": 0.3})]
    assert len(out.splitlines()) == 2


def test_cli_ctrl_c_ends_a_follow_with_0_and_other_commands_with_130(
    fake_daemon: FakeDaemon, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C is how a follow ends (exit 0); it interrupts any other command (exit 130)."""

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        yield EVENT
        raise KeyboardInterrupt

    monkeypatch.setattr(Client, "stream", interrupted)
    code, out, _ = run(capsys, "events", "--follow", "--json")
    assert (code, json.loads(out)) == (0, EVENT)

    def interrupt(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Client, "call", interrupt)
    monkeypatch.setattr(quick, "_ask", interrupt)  # the quick path's one call
    assert run(capsys, "agents")[0] == EXIT_INTERRUPTED
    assert run(capsys, "inbox", "--wait", "60")[0] == 0


# -- groups and links ----------------------------------------------------------------------------


def test_cli_group_create_prints_the_invite_on_the_last_line(
    fake_daemon: FakeDaemon, capsys: Capsys
) -> None:
    """``group create`` sends group.create{agent,name,relay}; stdout's last line is the invite."""
    code, out, _ = run(
        capsys,
        "--as",
        "luna",
        "group",
        "create",
        "--name",
        "team",
        "--relay",
        "ws://127.0.0.1:7787",
    )
    assert code == 0
    assert fake_daemon.calls == [
        ("group.create", {"agent": "luna", "name": "team", "relay": "ws://127.0.0.1:7787"})
    ]
    assert out.splitlines()[-1] == INVITE
    assert "team" in out.splitlines()[0]


def test_cli_invite_prints_only_the_invite(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``invite --group`` sends invite{group} and prints the invite alone."""
    assert run(capsys, "invite", "--group", "team") == (0, INVITE + "\n", "")
    assert fake_daemon.calls == [("invite", {"group": "team"})]


def test_cli_join_takes_the_invite_from_an_argument_or_stdin(
    fake_daemon: FakeDaemon, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``join INVITE`` and ``join -`` (invite on stdin) both send join{invite}."""
    assert run(capsys, "join", INVITE)[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(INVITE + "\n"))
    code, out, _ = run(capsys, "join", "-")
    assert code == 0
    assert fake_daemon.calls == [("join", {"invite": INVITE})] * 2
    assert out.startswith("joined group team")


def test_cli_link_on_off_status(fake_daemon: FakeDaemon, capsys: Capsys) -> None:
    """``link on|off`` send link.set{group,on}; ``link status`` sends link.status{group}."""
    assert run(capsys, "link", "off", "--group", "team")[0] == 0
    assert run(capsys, "link", "on")[0] == 0
    code, out, _ = run(capsys, "link", "status")
    assert code == 0
    assert fake_daemon.calls == [
        ("link.set", {"group": "team", "on": False}),
        ("link.set", {"on": True}),
        ("link.status", {}),
    ]
    header, row = out.splitlines()
    assert header.split()[:3] == ["GROUP", "URL", "STATE"]
    assert row.split()[:4] == ["team", "ws://127.0.0.1:7787", "connected", "0"]
