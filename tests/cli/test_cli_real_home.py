"""The real ``switchboard`` binary on fresh homes: autostart, the daemon's lifecycle, init, relay.

Every command runs as ``python -m switchboard`` in a subprocess against a new temporary
SWITCHBOARD_HOME; whatever daemon a test's commands start is stopped when the test ends.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator

import pytest
from cli_homes import (
    Device,
    Home,
    Lines,
    free_port,
    one_error_line,
    temporary_home,
    timeout,
    wait_gone,
)


@pytest.fixture
def home() -> Iterator[Home]:
    """A new, empty home; any daemon its commands start is stopped afterwards."""
    with temporary_home() as fresh:
        yield fresh


def test_send_to_self_autostarts_the_daemon_that_daemon_commands_manage(home: Home) -> None:
    """`send` starts the daemon; `daemon status|stop|start` report, stop and restart it."""
    assert home.json("daemon", "status")["running"] is False
    sent = home.run("send", "@me", "--", "hello me", agent="me").stdout
    assert re.fullmatch(r"delivered  me:[A-Z]{4,}\n", sent)
    pid = home.daemon_pid()
    assert pid is not None
    assert home.json("daemon", "status") == {
        "running": True,
        "pid": pid,
        "socket": str(home.settings.socket_path),
    }
    assert home.run("daemon", "status").stdout.startswith(f"daemon running (pid {pid}) on ")

    assert home.run("daemon", "stop").stdout == "daemon stopped\n"
    wait_gone(pid)
    assert home.daemon_pid() is None
    assert home.run("daemon", "status").stdout == f"daemon not running for {home.path}\n"
    assert home.run("daemon", "stop").stdout == "no daemon running\n"

    started = re.fullmatch(r"daemon started \(pid (\d+)\)\n", home.run("daemon", "start").stdout)
    assert started is not None
    again = int(started[1])
    assert again != pid
    assert home.daemon_pid() == again
    assert home.run("daemon", "start").stdout == f"daemon already running (pid {again})\n"
    # The message outlived the restart, unread.
    assert [m["text"] for m in home.json("inbox", agent="me")] == ["hello me"]


def test_concurrent_first_commands_share_one_autostarted_daemon(home: Home) -> None:
    """Commands racing on a fresh home each start a daemon; one wins and serves them all."""
    names = [f"racer{i}" for i in range(4)]
    procs = [home.popen("send", f"@{name}", "--", "hi", agent=name) for name in names]
    outputs = [proc.communicate(timeout=timeout(60)) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(names), outputs
    short = home.json("status")["device"]["short"]
    assert [out for out, _ in outputs] == [f"delivered  {name}:{short}\n" for name in names]
    assert [err for _, err in outputs] == [""] * len(names)
    addresses = {agent["address"] for agent in home.json("agents")}
    assert addresses == {f"{name}:{short}" for name in names}


def test_daemon_run_serves_in_the_foreground_until_sigterm_or_sigint(home: Home) -> None:
    """`daemon run` answers commands, refuses a second `daemon run`, exits 0 on SIGTERM/SIGINT."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        daemon = Device(home.path, "foreground").start()  # waits for its "ready on" line
        try:
            assert daemon.proc is not None
            pid = daemon.proc.pid
            status = home.json("status")
            assert (status["daemon"]["running"], status["daemon"]["pid"]) == (True, pid)
            assert home.daemon_pid() == pid
            second = one_error_line(home.run("daemon", "run", code=1))
            assert second == f"switchboard: a daemon is already running for {home.path} (pid {pid})"
            daemon.proc.send_signal(signum)
            assert daemon.proc.wait(timeout(20)) == 0, signum
        finally:
            daemon.kill()
        assert home.daemon_pid() is None


def test_init_is_idempotent_and_renames_the_device(home: Home) -> None:
    """`init` prints the short and the full device id, keeps both, and `--name` renames."""
    first = home.run("init").stdout
    match = re.fullmatch(r"device ([A-Z]{4,})  (.+)\nid     ([a-z0-9]+)\n", first)
    assert match is not None, first
    short, device_id = match[1], match[3]
    assert home.run("init").stdout == first
    renamed = home.run("init", "--name", "build box").stdout
    assert renamed == f"device {short}  build box\nid     {device_id}\n"
    assert home.json("status")["device"] == {"id": device_id, "short": short, "name": "build box"}


def test_daemon_killed_with_sigkill_is_replaced_by_the_next_command(home: Home) -> None:
    """After `kill -9` the daemon shows not running, and `status` starts a new one over the
    stale socket."""
    first = home.json("status")  # starts the daemon
    pid = first["daemon"]["pid"]
    assert home.daemon_pid() == pid
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    assert home.json("daemon", "status") == {
        "running": False,
        "pid": None,
        "socket": str(home.settings.socket_path),
    }
    assert home.settings.socket_path.is_socket()  # left behind by the dead daemon
    second = home.json("status")
    assert second["daemon"]["running"] is True
    assert second["daemon"]["pid"] not in (None, pid)
    assert second["device"] == first["device"]
    assert home.daemon_pid() == second["daemon"]["pid"]


def test_relay_serve_prints_its_listening_line_and_stores_in_its_data_dir(home: Home) -> None:
    """`relay serve --port P --data DIR` says where it listens, keeps relay.db in DIR, and
    exits 0 on Ctrl-C."""
    port = free_port()
    data = home.path.parent / "relay-data"
    proc = home.popen("relay", "serve", "--port", str(port), "--data", str(data))
    try:
        assert proc.stdout is not None
        lines = Lines(proc.stdout)
        pattern = rf"^relay listening on ws://127\.0\.0\.1:{port} \(id [A-Z]{{4,}}\)$"
        lines.wait_for(pattern, 30)
        assert (data / "relay.db").is_file()
        assert not (home.path / "relay").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout(20)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
