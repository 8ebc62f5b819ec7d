"""The local API server over a real unix socket: framing, dispatch, streaming, errors, limits."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TIMEOUT, ApiHandlers, LoopThread

from switchboard.daemon.api import DEFAULT_MAX_LINE, METHODS, STREAMING, ApiServer
from switchboard.daemon.features import REGISTRY
from switchboard.errors import SwitchboardError


class Raw:
    """A raw client: bytes in, JSON lines out."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def send(self, request: dict[str, Any] | bytes) -> None:
        data = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        self.sock.sendall(data)

    def receive(self) -> Any:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"connection ended: {line!r}"
        return json.loads(line)

    def at_eof(self) -> bool:
        try:
            return self.file.readline() == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def handlers() -> ApiHandlers:
    return ApiHandlers()


@pytest.fixture
def server(serve: Callable[..., ApiServer], handlers: ApiHandlers) -> ApiServer:
    return serve(handlers)


@pytest.fixture
def raw(server: ApiServer) -> Raw:
    client = Raw(server.socket_path)
    yield client
    client.close()


def test_api_server_answers_a_request(raw: Raw) -> None:
    """A request line gets one result line with the same id."""
    raw.send({"id": 1, "method": "ping", "params": {}})
    assert raw.receive() == {"id": 1, "result": {"pong": True}}


def test_api_server_passes_params_and_defaults_them(raw: Raw) -> None:
    """Params reach the handler as given; omitted params are an empty object."""
    raw.send({"id": 1, "method": "send", "params": {"to": ["@a"], "text": "hé"}})
    raw.send({"id": 2, "method": "send"})
    assert raw.receive() == {"id": 1, "result": {"echo": {"to": ["@a"], "text": "hé"}}}
    assert raw.receive() == {"id": 2, "result": {"echo": {}}}


def test_api_server_answers_pipelined_requests_in_order(raw: Raw) -> None:
    """Requests sent at once on one connection are answered one at a time, in order."""
    lines = [json.dumps({"id": i, "method": "send", "params": {"i": i}}) for i in range(1, 6)]
    raw.send(("\n".join(lines) + "\n").encode())
    assert [raw.receive()["id"] for _ in range(5)] == [1, 2, 3, 4, 5]


def test_api_server_streams_items_then_a_final_result(raw: Raw, handlers: ApiHandlers) -> None:
    """A streaming method sends one item line per item, then ``result: null``."""
    raw.send({"id": 3, "method": "events.follow", "params": {"count": 3}})
    assert [raw.receive() for _ in range(4)] == [
        {"id": 3, "item": {"n": 0}},
        {"id": 3, "item": {"n": 1}},
        {"id": 3, "item": {"n": 2}},
        {"id": 3, "result": None},
    ]
    assert handlers.stream_closed.wait(TIMEOUT)
    raw.send({"id": 4, "method": "ping"})
    assert raw.receive() == {"id": 4, "result": {"pong": True}}


def test_api_server_reports_a_stream_error_after_its_items(raw: Raw) -> None:
    """A SwitchboardError raised mid-stream ends the stream with an error line."""
    raw.send({"id": 3, "method": "events.follow", "params": {"count": 1, "fail": True}})
    assert raw.receive() == {"id": 3, "item": {"n": 0}}
    assert raw.receive() == {
        "id": 3,
        "error": {"code": "not_found", "message": "stream target vanished"},
    }


def test_api_server_closes_the_stream_when_the_client_hangs_up(
    raw: Raw, handlers: ApiHandlers
) -> None:
    """A client that disconnects mid-stream gets its generator closed."""
    raw.send({"id": 1, "method": "events.follow", "params": {"count": 1, "forever": True}})
    assert raw.receive() == {"id": 1, "item": {"n": 0}}
    raw.close()
    assert handlers.stream_closed.wait(TIMEOUT)


def test_api_server_refuses_requests_during_a_stream(raw: Raw) -> None:
    """A request on a connection that is streaming gets a busy error; the stream goes on."""
    raw.send({"id": 1, "method": "events.follow", "params": {"count": 1, "forever": True}})
    assert raw.receive() == {"id": 1, "item": {"n": 0}}
    raw.send({"id": 2, "method": "ping"})
    answer = raw.receive()
    assert answer["id"] == 2
    assert answer["error"]["code"] == "bad_request"
    assert "busy streaming request 1" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("line", "expected_id", "fragment"),
    [
        (b"{not json\n", None, "malformed JSON"),
        (b"[1, 2]\n", None, "JSON object"),
        (b'{"method": "ping"}\n', None, "integer 'id'"),
        (b'{"id": true, "method": "ping"}\n', None, "integer 'id'"),
        (b'{"id": "7", "method": "ping"}\n', None, "integer 'id'"),
        (b'{"id": 7}\n', 7, "string 'method'"),
        (b'{"id": 7, "method": "ping", "params": [1]}\n', 7, "'params' must be"),
        (b'{"id": 7, "method": "nope"}\n', 7, "unknown method 'nope'"),
        (b'{"id": 7, "method": "helper"}\n', 7, "unknown method 'helper'"),
        (b'{"id": 7, "method": "join"}\n', 7, "unknown method 'join'"),
    ],
)
def test_api_server_reports_bad_requests_and_keeps_serving(
    raw: Raw, line: bytes, expected_id: int | None, fragment: str
) -> None:
    """A malformed request gets a bad_request error; the connection keeps working."""
    raw.send(line)
    answer = raw.receive()
    assert answer["id"] == expected_id
    assert answer["error"]["code"] == "bad_request"
    assert fragment in answer["error"]["message"]
    raw.send({"id": 8, "method": "ping"})
    assert raw.receive() == {"id": 8, "result": {"pong": True}}


def test_api_server_ignores_blank_lines(raw: Raw) -> None:
    """Empty lines between requests are skipped, not answered."""
    raw.send(b"\n  \n" + json.dumps({"id": 1, "method": "ping"}).encode() + b"\n")
    assert raw.receive() == {"id": 1, "result": {"pong": True}}


def test_api_server_answers_a_last_line_without_newline(raw: Raw) -> None:
    """A request cut short by end of input (no newline) is still answered."""
    raw.send(json.dumps({"id": 1, "method": "ping"}).encode())
    raw.sock.shutdown(socket.SHUT_WR)
    assert raw.receive() == {"id": 1, "result": {"pong": True}}
    assert raw.at_eof()


def test_api_server_maps_switchboard_errors_to_their_code(raw: Raw) -> None:
    """A SwitchboardError becomes an error with its class's code and its message."""
    raw.send({"id": 1, "method": "status"})
    assert raw.receive() == {
        "id": 1,
        "error": {"code": "not_found", "message": "unknown agent @ghost"},
    }


def test_api_server_hides_internal_errors_and_logs_them(
    raw: Raw, caplog: pytest.LogCaptureFixture
) -> None:
    """Any other exception is logged with its traceback and answered as a bare internal error."""
    with caplog.at_level(logging.ERROR, logger="switchboard.daemon.api"):
        raw.send({"id": 1, "method": "agents"})
        answer = raw.receive()
    assert answer == {"id": 1, "error": {"code": "internal", "message": "internal error"}}
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)
    raw.send({"id": 2, "method": "ping"})
    assert raw.receive()["result"] == {"pong": True}


def test_api_server_tells_a_handlers_connection_error_from_a_hang_up(raw: Raw) -> None:
    """A ConnectionError raised by a handler is an internal error; the client stays connected."""
    raw.send({"id": 1, "method": "invite"})
    assert raw.receive() == {"id": 1, "error": {"code": "internal", "message": "internal error"}}
    raw.send({"id": 2, "method": "ping"})
    assert raw.receive()["id"] == 2


def test_api_server_reports_an_unencodable_result_as_internal(raw: Raw) -> None:
    """A result that is not JSON-able is an internal error, not a dead connection."""
    raw.send({"id": 1, "method": "register"})
    assert raw.receive() == {"id": 1, "error": {"code": "internal", "message": "internal error"}}
    raw.send({"id": 2, "method": "ping"})
    assert raw.receive()["id"] == 2


def test_api_server_ends_a_stream_whose_item_is_not_json_able(
    raw: Raw, handlers: ApiHandlers
) -> None:
    """An item that cannot be encoded ends its stream with an internal error."""
    raw.send({"id": 1, "method": "events.follow", "params": {"count": 1, "bad_item": True}})
    assert raw.receive() == {"id": 1, "item": {"n": 0}}
    assert raw.receive() == {"id": 1, "error": {"code": "internal", "message": "internal error"}}
    assert handlers.stream_closed.wait(TIMEOUT)
    raw.send({"id": 2, "method": "ping"})
    assert raw.receive()["id"] == 2


def test_api_server_closes_a_connection_with_an_oversized_line(
    serve: Callable[..., ApiServer], handlers: ApiHandlers, short_tmp: Path
) -> None:
    """A line over max_line gets an error and its connection closes; others keep working."""
    server = serve(handlers, short_tmp / "small.sock", max_line=1024)
    other = Raw(server.socket_path)
    big = Raw(server.socket_path)
    big.send(b'{"id": 1, "method": "send", "params": {"x": "' + b"a" * 2000 + b'"}}\n')
    answer = big.receive()
    assert answer["id"] is None
    assert answer["error"]["code"] == "bad_request"
    assert "exceeds limit of 1024 bytes" in answer["error"]["message"]
    assert big.at_eof()
    other.send({"id": 2, "method": "ping"})
    assert other.receive() == {"id": 2, "result": {"pong": True}}
    for client in (big, other):
        client.close()


def test_api_server_accepts_a_line_of_exactly_max_line_bytes(
    serve: Callable[..., ApiServer], handlers: ApiHandlers, short_tmp: Path
) -> None:
    """The limit counts the line without its newline, and a line at the limit is served."""
    server = serve(handlers, short_tmp / "small.sock", max_line=1024)
    head = b'{"id": 1, "method": "send", "params": {"x": "'
    tail = b'"}}'
    line = head + b"a" * (1024 - len(head) - len(tail)) + tail
    assert len(line) == 1024
    client = Raw(server.socket_path)
    client.send(line + b"\n")
    assert client.receive()["id"] == 1
    client.close()


def test_api_server_default_limit_is_one_mebibyte(raw: Raw) -> None:
    """By default a request line of more than 1 MiB is refused."""
    assert DEFAULT_MAX_LINE == 1024 * 1024
    # The server may hang up before we finish writing.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        raw.send(b'{"id": 1, "method": "send", "params": {"x": "' + b"a" * DEFAULT_MAX_LINE)
    answer = raw.receive()
    assert "exceeds limit of 1048576 bytes" in answer["error"]["message"]


def test_api_server_serves_clients_concurrently(
    raw: Raw, handlers: ApiHandlers, server: ApiServer, loop_thread: LoopThread
) -> None:
    """A request that blocks one connection does not hold up another connection."""
    raw.send({"id": 1, "method": "inbox"})
    assert handlers.entered.wait(TIMEOUT)
    other = Raw(server.socket_path)
    other.send({"id": 1, "method": "ping"})
    assert other.receive() == {"id": 1, "result": {"pong": True}}
    assert handlers.release is not None
    loop_thread.call(handlers.release.set)
    assert raw.receive() == {"id": 1, "result": "released"}
    other.close()


def test_api_server_socket_is_private_to_the_user(server: ApiServer) -> None:
    """The socket is mode 0600 and the process umask is restored after binding."""
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(server.socket_path).st_mode) == 0o600
    assert umask != 0o177


def test_api_server_replaces_a_stale_socket(
    serve: Callable[..., ApiServer], handlers: ApiHandlers, short_tmp: Path
) -> None:
    """A socket file nobody listens on (a dead daemon's) is replaced."""
    path = short_tmp / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    serve(handlers, path)
    client = Raw(path)
    client.send({"id": 1, "method": "ping"})
    assert client.receive()["result"] == {"pong": True}
    client.close()


def test_api_server_refuses_a_live_socket(
    server: ApiServer, handlers: ApiHandlers, loop_thread: LoopThread
) -> None:
    """A second server on a socket that answers fails and leaves the first one serving."""
    second = ApiServer(handlers, server.socket_path)
    with pytest.raises(SwitchboardError, match="already serving"):
        loop_thread.run(second.start())
    client = Raw(server.socket_path)
    client.send({"id": 1, "method": "ping"})
    assert client.receive()["id"] == 1
    client.close()


def test_api_server_refuses_to_remove_a_regular_file(
    handlers: ApiHandlers, short_tmp: Path, loop_thread: LoopThread
) -> None:
    """A file that is not a socket is never deleted to make room for one."""
    path = short_tmp / "daemon.sock"
    path.write_text("keep me")
    with pytest.raises(SwitchboardError, match="not a socket"):
        loop_thread.run(ApiServer(handlers, path).start())
    assert path.read_text() == "keep me"


def test_api_server_aclose_ends_streams_and_removes_the_socket(
    server: ApiServer, raw: Raw, handlers: ApiHandlers, loop_thread: LoopThread
) -> None:
    """Closing the server closes open streams and connections and removes its socket file."""
    raw.send({"id": 1, "method": "events.follow", "params": {"count": 1, "forever": True}})
    assert raw.receive() == {"id": 1, "item": {"n": 0}}
    loop_thread.run(server.aclose())
    assert handlers.stream_closed.wait(TIMEOUT)
    assert raw.at_eof()
    assert not server.socket_path.exists()
    loop_thread.run(server.aclose())  # idempotent


def test_api_methods_cover_the_internals_contract() -> None:
    """METHODS holds every documented method, and only events.follow, room.follow, task.logs
    and file.get (its progress) stream."""
    documented = {
        "ping",
        "status",
        "init",
        "register",
        "agents",
        "send",
        "inbox",
        "events",
        "events.follow",
        "group.create",
        "invite",
        "join",
        "link.set",
        "link.status",
        "shutdown",
    }
    assert documented <= METHODS
    assert frozenset(REGISTRY.streams) == STREAMING
    assert {"events.follow", "room.follow", "task.logs", "file.get"} == STREAMING
