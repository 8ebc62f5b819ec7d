"""The daemon as a process: the pid lock, background start, status and stop."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

import pytest
from conftest import TIMEOUT

from switchboard.config import Settings
from switchboard.daemon import process
from switchboard.daemon.autostart import connect
from switchboard.errors import SwitchboardError


def test_hold_pid_lock_refuses_a_second_holder(settings: Settings) -> None:
    """While one holder has the home, a second one fails naming the home and the pid."""
    with process.hold_pid_lock(settings) as pid:
        assert pid == os.getpid()
        message = f"a daemon is already running for {settings.home} \\(pid {pid}\\)"
        with pytest.raises(SwitchboardError, match=message), process.hold_pid_lock(settings):
            pass


def test_hold_pid_lock_writes_the_pid_and_clears_it(settings: Settings) -> None:
    """The pid file holds the pid while locked (mode 0600) and is emptied, not removed, after."""
    with process.hold_pid_lock(settings):
        assert settings.pid_path.read_text() == f"{os.getpid()}\n"
        assert stat.S_IMODE(settings.pid_path.stat().st_mode) == 0o600
    assert settings.pid_path.read_text() == ""
    with process.hold_pid_lock(settings):  # released: can be taken again
        pass


def test_hold_pid_lock_is_released_when_the_block_raises(settings: Settings) -> None:
    """An exception leaving the block still releases the home."""
    with pytest.raises(ZeroDivisionError), process.hold_pid_lock(settings):
        raise ZeroDivisionError
    assert not process.read_status(settings)["running"]


def test_read_status_reports_the_holder(settings: Settings) -> None:
    """read_status says running, with the holder's pid, only while the lock is held."""
    assert process.read_status(settings) == {
        "running": False,
        "pid": None,
        "socket": str(settings.socket_path),
    }
    with process.hold_pid_lock(settings):
        status = process.read_status(settings)
        assert status["running"] is True
        assert status["pid"] == os.getpid()
    assert process.read_status(settings)["running"] is False


def test_hold_pid_lock_refuses_a_daemon_in_another_process(
    settings: Settings, fake_spawn: Callable[..., None]
) -> None:
    """The lock works across processes: a running daemon keeps a second one out."""
    fake_spawn()
    connect(settings, start_timeout=TIMEOUT).close()
    pid = process.read_status(settings)["pid"]
    with pytest.raises(SwitchboardError, match=f"pid {pid}"), process.hold_pid_lock(settings):
        pass
    assert process.stop(settings, timeout=TIMEOUT)


def test_start_background_logs_to_the_home(
    settings: Settings, fake_spawn: Callable[..., None]
) -> None:
    """The daemon's output is appended to the log file, which is private to the user."""
    settings.home.mkdir(exist_ok=True)
    settings.log_path.write_text("earlier run\n")
    fake_spawn()
    connect(settings, start_timeout=TIMEOUT).close()
    assert process.stop(settings, timeout=TIMEOUT)
    log = settings.log_path.read_text()
    assert log.startswith("earlier run\n")
    assert "fake daemon ready" in log


def test_stop_returns_false_when_nothing_runs(settings: Settings) -> None:
    """Stopping a home without a daemon is not an error."""
    assert process.stop(settings, timeout=TIMEOUT) is False


def test_stop_falls_back_to_sigterm(settings: Settings, fake_spawn: Callable[..., None]) -> None:
    """A daemon that answers shutdown but does not stop is ended with SIGTERM."""
    fake_spawn("--ignore-shutdown")
    connect(settings, start_timeout=TIMEOUT).close()
    pid = process.read_status(settings)["pid"]
    assert process.stop(settings, timeout=1.0) is True
    assert process.has_exited(pid)


def test_stop_also_stops_a_daemon_that_takes_the_home_over(
    settings: Settings, fake_spawn: Callable[..., None]
) -> None:
    """A daemon taking the home over as the first one stops (a late autostart) is stopped too."""
    fake_spawn("--hand-over")
    connect(settings, start_timeout=TIMEOUT).close()
    first = process.read_status(settings)["pid"]
    assert process.stop(settings, timeout=TIMEOUT) is True
    assert process.has_exited(first)
    assert not process.read_status(settings)["running"]


def test_stop_raises_when_the_daemon_will_not_stop(
    settings: Settings, fake_spawn: Callable[..., None]
) -> None:
    """A daemon ignoring shutdown and SIGTERM is reported, not waited on for ever."""
    fake_spawn("--ignore-shutdown", "--ignore-term")
    connect(settings, start_timeout=TIMEOUT).close()
    with pytest.raises(SwitchboardError, match=r"did not stop within 0\.4 s"):
        process.stop(settings, timeout=0.4)
    assert process.read_status(settings)["running"]


def test_autostart_waits_for_a_daemon_that_holds_the_home_but_does_not_listen_yet(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """connect() starts no second daemon while one starting holds the home."""
    started: list[Settings] = []
    monkeypatch.setattr(process, "start_background", started.append)
    with process.hold_pid_lock(settings), pytest.raises(SwitchboardError, match="did not answer"):
        connect(settings, start_timeout=0.3)
    assert started == []
