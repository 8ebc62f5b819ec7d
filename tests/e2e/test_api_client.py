"""The sync and async API clients against a real ``ApiServer``, and ``connect()``'s autostart."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TIMEOUT, ApiHandlers, LoopThread

from switchboard.config import Settings, load_settings
from switchboard.daemon import process
from switchboard.daemon.api import ApiServer
from switchboard.daemon.autostart import connect
from switchboard.daemon.client import AsyncClient, Client, error_from_response
from switchboard.errors import (
    DaemonUnavailable,
    InvalidInvite,
    NotFound,
    QueryRejected,
    SwitchboardError,
)


@pytest.fixture
def handlers() -> ApiHandlers:
    return ApiHandlers()


@pytest.fixture
def server(serve: Callable[..., ApiServer], handlers: ApiHandlers) -> ApiServer:
    return serve(handlers)


@pytest.fixture
def client(server: ApiServer) -> Client:
    with Client.open(server.socket_path) as opened:
        yield opened


def run(coro: object) -> object:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))  # type: ignore[arg-type]


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("not_found", NotFound),
        ("invalid_invite", InvalidInvite),
        ("query_rejected", QueryRejected),
        ("daemon_unavailable", DaemonUnavailable),
    ],
)
def test_error_from_response_restores_the_class(code: str, cls: type[SwitchboardError]) -> None:
    """An error code comes back as the class that carries it, with the message."""
    exc = error_from_response({"code": code, "message": "it went wrong"})
    assert type(exc) is cls
    assert str(exc) == "it went wrong"


def test_error_from_response_keeps_unknown_codes() -> None:
    """An unknown code becomes a SwitchboardError that still carries the code."""
    exc = error_from_response({"code": "internal", "message": "internal error"})
    assert type(exc) is SwitchboardError
    assert exc.code == "internal"
    assert str(error_from_response("garbage")) == "error"


# -- sync client ---------------------------------------------------------------------------------


def test_client_call_returns_the_result(client: Client) -> None:
    """A call returns the handler's result; ids advance per call."""
    assert client.call("ping") == {"pong": True}
    assert client.call("send", {"text": "hi"}) == {"echo": {"text": "hi"}}


def test_client_call_raises_the_daemons_error(client: Client) -> None:
    """An error answer raises the matching SwitchboardError subclass; the client stays usable."""
    with pytest.raises(NotFound, match="unknown agent @ghost"):
        client.call("status")
    with pytest.raises(SwitchboardError, match="internal error"):
        client.call("agents")
    assert client.call("ping") == {"pong": True}


def test_client_stream_yields_items_until_the_result(client: Client) -> None:
    """A stream yields every item and ends at the final result; the client stays usable."""
    assert list(client.stream("events.follow", {"count": 3})) == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert client.call("ping") == {"pong": True}


def test_client_stream_raises_the_daemons_error(client: Client) -> None:
    """An error ending a stream is raised after the items before it."""
    items = []
    with pytest.raises(NotFound):
        for item in client.stream("events.follow", {"count": 2, "fail": True}):
            items.append(item)
    assert items == [{"n": 0}, {"n": 1}]


def test_client_stream_left_early_ends_the_stream(client: Client, handlers: ApiHandlers) -> None:
    """Leaving a stream early hangs up, which closes the daemon's generator."""
    stream = client.stream("events.follow", {"count": 1, "forever": True})
    assert next(stream) == {"n": 0}
    stream.close()
    assert handlers.stream_closed.wait(TIMEOUT)
    with pytest.raises(DaemonUnavailable, match="closed"):
        client.call("ping")


def test_client_stream_duration_ends_quietly(client: Client, handlers: ApiHandlers) -> None:
    """A stream bounded by ``duration`` ends without an error when the time is up."""
    items = list(client.stream("events.follow", {"count": 1, "forever": True}, duration=0.2))
    assert items == [{"n": 0}]
    assert handlers.stream_closed.wait(TIMEOUT)


def test_client_call_timeout_raises_and_closes(
    client: Client, handlers: ApiHandlers, loop_thread: LoopThread
) -> None:
    """A call that outlasts its timeout raises DaemonUnavailable and closes the connection."""
    with pytest.raises(DaemonUnavailable, match=r"did not answer inbox within 0\.1 s"):
        client.call("inbox", timeout=0.1)
    assert handlers.release is not None
    loop_thread.call(handlers.release.set)
    with pytest.raises(DaemonUnavailable):
        client.call("ping")


def test_client_open_without_a_listener_raises_daemon_unavailable(short_tmp: Path) -> None:
    """Connecting to a socket nobody serves says so."""
    with pytest.raises(DaemonUnavailable, match="no daemon is listening"):
        Client.open(short_tmp / "none.sock")


def test_client_reports_a_daemon_that_dies_mid_call(
    client: Client, server: ApiServer, handlers: ApiHandlers, loop_thread: LoopThread
) -> None:
    """A connection closed before the answer raises DaemonUnavailable, not a socket error."""
    client.call("ping")
    loop_thread.run(server.aclose())
    with pytest.raises(DaemonUnavailable):
        client.call("ping")


# -- connect() and autostart ---------------------------------------------------------------------


def test_connect_without_autostart_names_the_home(settings: Settings) -> None:
    """With autostart off, a missing daemon is an error naming the home and the fix."""
    with pytest.raises(DaemonUnavailable, match=f"no daemon is running for {settings.home}"):
        connect(settings, autostart=False)
    assert not process.read_status(settings)["running"]


def test_connect_starts_the_daemon_and_waits_for_it(
    settings: Settings, fake_spawn: Callable[..., None]
) -> None:
    """connect() starts a daemon in the background and returns once it answers."""
    fake_spawn()
    with connect(settings) as client:
        pid = client.call("ping")["pid"]
    status = process.read_status(settings)
    assert status == {"running": True, "pid": pid, "socket": str(settings.socket_path)}
    assert os.getsid(pid) == pid  # detached: a session of its own
    assert process.stop(settings, timeout=TIMEOUT) is True
    assert not process.read_status(settings)["running"]


def test_connect_starts_the_daemon_of_a_relative_home(
    short_tmp: Path, fake_spawn: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative home means the same directory to the daemon, which runs inside it."""
    monkeypatch.chdir(short_tmp)
    settings = load_settings(env={}, home="rel")
    fake_spawn()
    connect(settings, start_timeout=TIMEOUT).close()
    assert (short_tmp / "rel" / "daemon.sock").is_socket()
    assert process.stop(settings, timeout=TIMEOUT)


def test_connect_does_not_start_a_daemon_for_a_broken_socket_path(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket path the system cannot use is reported at once; no daemon is started."""
    settings = load_settings(env={}, home=short_tmp / ("x" * 120))

    def refuse(settings: Settings) -> int:
        raise AssertionError("started a daemon")

    monkeypatch.setattr(process, "start_background", refuse)
    with pytest.raises(DaemonUnavailable, match=r"cannot connect to .*too long"):
        connect(settings)


def test_connect_reports_a_daemon_that_exits_at_start(
    settings: Settings, fake_spawn: Callable[..., None]
) -> None:
    """A daemon that dies while starting is reported at once, pointing at its log."""
    fake_spawn(script="import sys; print('cannot open the store'); sys.exit(3)")
    with pytest.raises(DaemonUnavailable, match=f"exited during start-up; see {settings.log_path}"):
        connect(settings, start_timeout=TIMEOUT)
    assert "cannot open the store" in settings.log_path.read_text()


def test_connect_gives_up_after_the_start_timeout(
    settings: Settings, fake_spawn: Callable[..., None]
) -> None:
    """A daemon that never answers is reported after ``start_timeout``."""
    fake_spawn(script="import signal; signal.pause()")  # runs, never answers
    with pytest.raises(DaemonUnavailable, match=r"did not answer .* within 0\.3 s"):
        connect(settings, start_timeout=0.3)


# -- async client --------------------------------------------------------------------------------


def test_async_client_calls_and_raises(server: ApiServer) -> None:
    """The async client returns results and raises the daemon's errors."""

    async def scenario() -> None:
        async with AsyncClient(server.socket_path) as client:
            assert await client.call("ping") == {"pong": True}
            with pytest.raises(NotFound):
                await client.call("status")
            assert await client.call("send", {"a": 1}) == {"echo": {"a": 1}}

    run(scenario())


def test_async_client_streams_on_a_connection_of_its_own(
    server: ApiServer, handlers: ApiHandlers
) -> None:
    """A stream runs beside calls; leaving it early closes the daemon's generator."""

    async def scenario() -> None:
        async with AsyncClient(server.socket_path) as client:
            stream = client.stream("events.follow", {"count": 1, "forever": True})
            assert await anext(stream) == {"n": 0}
            assert await client.call("ping") == {"pong": True}
            await stream.aclose()
            items = [item async for item in client.stream("events.follow", {"count": 2})]
            assert items == [{"n": 0}, {"n": 1}]

    run(scenario())
    assert handlers.stream_closed.wait(TIMEOUT)


def test_async_client_recovers_after_a_cancelled_call(
    server: ApiServer, handlers: ApiHandlers
) -> None:
    """A call cancelled mid-way drops its connection; the next call opens a fresh one."""

    async def scenario() -> None:
        async with AsyncClient(server.socket_path) as client:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await client.call("inbox")
            assert await client.call("ping") == {"pong": True}

    run(scenario())


def test_async_client_without_a_listener_raises_daemon_unavailable(short_tmp: Path) -> None:
    """The async client reports a missing daemon as DaemonUnavailable."""

    async def scenario() -> None:
        with pytest.raises(DaemonUnavailable):
            await AsyncClient(short_tmp / "none.sock").call("ping")

    run(scenario())
