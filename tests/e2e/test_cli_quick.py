"""The quick path (cli/quick.py) prints what the full parser's path prints, for the same arguments.

Each case runs ``main(argv)`` and ``main(argv, quick=False)`` against the same daemon (the fake
daemon, or a raw socket that answers badly) and compares exit status, stdout, stderr and the
requests the daemon received.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import TIMEOUT, FakeDaemon
from hypothesis import given
from hypothesis import strategies as st

from switchboard.cli import quick
from switchboard.cli.main import _command_name, main
from switchboard.config import default_agent_name
from switchboard.daemon import client

Capsys = pytest.CaptureFixture[str]


def both(capsys: Capsys, argv: list[str], daemon: FakeDaemon | None = None) -> list[Any]:
    """``[(status, out, err, calls)]`` of the quick path and of the full path."""
    results = []
    for fast in (True, False):
        if daemon is not None:
            daemon.calls.clear()
        code = main(list(argv), quick=fast)
        captured = capsys.readouterr()
        calls = list(daemon.calls) if daemon is not None else []
        results.append((code, captured.out, captured.err, calls))
    return results


def taken(argv: list[str]) -> bool:
    """Whether the quick path takes these arguments (rather than leave them to the parser)."""
    index = _command_name(argv)
    return index is not None and quick.parse(argv, index) is not None


QUICK_CASES = [
    ["agents"],
    ["agents", "--json"],
    ["--as", "luna", "agents", "--json", "--json"],
    ["send", "@nova", "--", "hi"],
    ["send", "--json", "@nova", "--", "hi"],
    ["send", "@nova", "hello", "world"],
    ["send", "@nova", "#room", "hello", "--json"],
    ["send", "@nova", "--", "--json", "-x", "--", "text that looks like options"],
    ["send", "+reviewer", "--", "+1 agreed"],
    [
        "send", "@nova", "--thread", "t1", "--reply-to", "42", "--intent", "request",
        "--priority", "urgent", "--", "a", "b",
    ],
    ["send", "--thread", "", "@nova", "--", "empty thread id"],
    ["--as", "luna", "send", "@nova", "--as", "nova", "--", "the last --as wins"],
    ["send", "@ghost", "--", "hi"],
    ["send", "--json", "@ghost", "--", "hi"],
    ["send", "@boom", "--", "hi"],
    ["inbox"],
    ["inbox", "--json"],
    ["inbox", "--peek"],
    ["--as", "luna", "inbox", "--peek", "--json"],
    ["inbox", "--wait", "0"],
    ["inbox", "--wait", "1.5", "--json", "--wait", "0.25"],
]  # fmt: skip


@pytest.mark.parametrize("argv", QUICK_CASES, ids=" ".join)
def test_quick_path_prints_what_the_full_path_prints(
    argv: list[str], fake_daemon: FakeDaemon, capsys: Capsys
) -> None:
    """The quick path takes the arguments, and its status, output, errors and requests are
    those of the full parser's path."""
    assert taken(argv)
    fast, full = both(capsys, argv, fake_daemon)
    assert fast == full
    assert full[3]  # the daemon was asked


FULL_CASES = [
    ["agents", "--help"],
    ["agents", "extra"],
    ["--as=luna", "agents"],
    ["--version", "agents"],
    ["agents", "--as"],
    ["agents", "--as", "--json"],
    ["send", "@nova"],
    ["send", "--", "hi"],
    ["send", "hello", "world"],
    ["send", "@nova", "--"],
    ["send", "@nova", "--", "   "],
    ["send", "@nova", "--", "-"],
    ["send", "@a", "--json", "@b", "--", "two runs of targets"],
    ["send", "@nova", "--intent", "bogus", "--", "x"],
    ["send", "@nova", "--file", "/nonexistent/note.txt"],
    ["send", "@nova", "--wait", "read", "--", "x"],
    ["send", "@nova", "-5"],
    ["inbox", "--wait"],
    ["inbox", "--wait", "-1"],
    ["inbox", "--wait", "nan"],
    ["inbox", "--wait", "inf"],
    ["inbox", "--wait=1"],
    ["inbox", "--follow"],
]


@pytest.mark.parametrize("argv", FULL_CASES, ids=" ".join)
def test_quick_path_leaves_other_shapes_to_the_parser(
    argv: list[str], fake_daemon: FakeDaemon, capsys: Capsys
) -> None:
    """Shapes the quick path is not sure of (help, usage errors, stdin or file text, options
    it does not take) go to the full parser, so they behave exactly as before."""
    assert not taken(argv)
    fast, full = both(capsys, argv, fake_daemon)
    assert fast == full


def test_quick_path_with_settings_from_config_toml(
    fake_daemon: FakeDaemon, capsys: Capsys, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a config.toml (read by load_settings) the quick path still answers as the full
    path; a malformed one, or a malformed timeout in the environment, is the same error."""
    config = short_tmp / "config.toml"
    config.write_text("offline_timeout = 60\n")
    fast, full = both(capsys, ["send", "@nova", "--", "hi"], fake_daemon)
    assert fast == full
    assert full[0] == 0
    config.write_text("offline_timeout = [\n")
    fast, full = both(capsys, ["agents"], fake_daemon)
    assert fast == full
    assert (full[0], full[2].startswith("switchboard: invalid settings:")) == (1, True)
    config.unlink()
    monkeypatch.setenv("SWITCHBOARD_EDIT_WINDOW", "soon")
    fast, full = both(capsys, ["inbox", "--json"], fake_daemon)
    assert fast == full
    assert full[:3] == (1, "", "switchboard: invalid settings: could not convert string to "
                        "float: 'soon'\n")  # fmt: skip


def test_quick_path_without_a_daemon_is_the_full_path(
    short_tmp: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, fake_spawn: Any
) -> None:
    """No daemon listening: the quick path does nothing and the full path starts one (here a
    stand-in that fails at once), with the same error either way."""
    monkeypatch.setenv("SWITCHBOARD_HOME", str(short_tmp))
    fake_spawn(script="import sys; sys.exit(3)")
    assert quick.run(["agents"], 0) is None
    fast, full = both(capsys, ["agents", "--json"])
    assert fast == full
    assert full[0] == 1
    assert "the daemon exited during start-up" in full[2]


@pytest.fixture
def bad_daemon(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """A raw socket at the home's daemon.sock: each connection reads a line and gets the next
    answer of the list (bytes, sent as they are), then is closed."""
    monkeypatch.setenv("SWITCHBOARD_HOME", str(short_tmp))
    answers: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(short_tmp / "daemon.sock"))
    server.listen()
    server.settimeout(TIMEOUT)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.makefile("rb").readline()
                conn.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield answers
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept (Linux); close alone does not
    server.close()
    thread.join(TIMEOUT)


BAD_ANSWERS = {
    "malformed": b"{not json\n",
    "not an object": b"[1, 2]\n",
    "closed": b'{"id": 1, "result": {}}',
    "another id": b'{"id": 7, "result": {}}\n',
    "no result": b'{"id": 1}\n',
    "an error": b'{"id": 1, "error": {"code": "not_found", "message": "unknown agent @x"}}\n',
    "an unknown error": b'{"id": 1, "error": {"code": "weird", "message": "odd"}}\n',
    "an item": b'{"id": 1, "item": {}}\n',
    "no id": b'{"result": {}, "id": null}\n',
}


@pytest.mark.parametrize("answer", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
@pytest.mark.parametrize("argv", [["agents"], ["inbox", "--json"], ["send", "@x", "--", "hi"]])
def test_quick_path_reads_bad_answers_as_the_client_does(
    argv: list[str], answer: bytes, bad_daemon: list[bytes], capsys: Capsys
) -> None:
    """A malformed answer, a closed connection, another request's answer and error answers
    give the client's own errors and exit statuses on both paths."""
    assert taken(argv)
    bad_daemon.extend([answer, answer])
    fast, full = both(capsys, argv)
    assert fast == full


def test_quick_path_agrees_with_the_client_and_config() -> None:
    """The quick path's limits are the client's, and its default home is config's."""
    assert quick.CALL_TIMEOUT == client.DEFAULT_CALL_TIMEOUT
    assert quick.MAX_RESPONSE_LINE == client.DEFAULT_MAX_RESPONSE_LINE
    assert client.Client.open.__kwdefaults__["timeout"] == quick.CONNECT_TIMEOUT
    if sys.platform == "linux":
        probe = (
            "from switchboard.cli import quick; from switchboard.config import default_home; "
            "print(quick.default_home() == str(default_home()))"
        )
        for data in ("", "relative/dir", "/srv/data"):
            env = {**os.environ, "XDG_DATA_HOME": data}
            done = subprocess.run(
                [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
            )
            assert done.stdout.strip() == "True"


LOGIN_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")


@given(st.lists(st.text(max_size=40) | st.sampled_from(["Ada.Lovelace", "-x-", "İK", "ß"]),
                min_size=4, max_size=4))  # fmt: skip
def test_quick_login_agent_is_config_default_agent_name(logins: list[str]) -> None:
    """The quick path's acting agent from the login name is config's: the same variables in
    the same order, the same characters replaced, the same fallbacks."""
    values = dict(zip(LOGIN_VARIABLES, logins, strict=True))
    environ = {key: value for key, value in os.environ.items() if key not in LOGIN_VARIABLES}
    environ.update({key: value for key, value in values.items() if "\0" not in value})
    with mock.patch.dict(os.environ, environ, clear=True):
        assert quick.login_agent() == default_agent_name()


def test_quick_login_agent_without_login_variables() -> None:
    """Without any login variable both ask the password database."""
    environ = {key: value for key, value in os.environ.items() if key not in LOGIN_VARIABLES}
    with mock.patch.dict(os.environ, environ, clear=True):
        assert quick.login_agent() == default_agent_name()
