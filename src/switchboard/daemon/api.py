"""The daemon's local API server: JSON Lines over a unix socket.

Theory of operation
-------------------
Each line a client sends is one request, ``{"id": 1, "method": "send", "params": {...}}``.
The server answers each with one line, ``{"id": 1, "result": ...}`` or
``{"id": 1, "error": {"code": "not_found", "message": "..."}}``. Requests on one connection
are handled one at a time, in order. A *streaming* method (``events.follow``) answers with
``{"id": 1, "item": ...}`` lines instead, until its generator ends (then a final
``{"id": 1, "result": null}``) or the client hangs up (then the generator is closed). While a
stream runs it occupies its connection: a line sent meanwhile gets a ``bad_request`` error
naming the stream, so clients open another connection for anything concurrent.

Bad input never ends the server and rarely ends the connection: malformed JSON, a missing
field or an unknown method gets a ``bad_request`` error and the connection keeps serving. Only
a line longer than ``max_line`` closes its connection, after an error line, because the rest of
that line cannot be told from the next request.

The server dispatches through one table, method name -> function (``Registry.bind``: every
feature's methods, bound to the daemon). A stand-in object (a test's fake daemon) is turned
into such a table by ``dispatch_of``: a method ``a.b`` is its ``a_b``, and only the names in
``METHODS`` count, so a helper on the object is never reachable from the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from switchboard.daemon.features import REGISTRY
from switchboard.errors import SwitchboardError

log = logging.getLogger("switchboard.daemon.api")

# A request line longer than this is refused. The biggest honest request is a message of up to
# 64 KiB of text (``handlers.MAX_TEXT_LENGTH``) escaped as JSON, at most 6 bytes a character;
# 1 MiB leaves room for that and bounds what one client can make us buffer.
DEFAULT_MAX_LINE: Final = 1024 * 1024

#: The methods a client may call: the merged tables of the daemon's features.
METHODS: Final = REGISTRY.names

#: The methods whose handler is an async generator; each item goes out as an ``item`` line.
STREAMING: Final = frozenset(REGISTRY.streams)

#: What the server dispatches through: method name -> (``fn(params)``, is streaming).
Dispatch = Mapping[str, tuple[Callable[[Any], Any], bool]]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class _LineTooLong(Exception):
    """A request line exceeded ``max_line``; the connection must close."""


class _ClientGone(Exception):
    """Our client hung up. Only our writes raise it, so a handler's ConnectionError is not it."""


class _BadRequest(Exception):
    """A request line that cannot be served; carries the id to answer, if one was readable."""

    def __init__(self, request_id: int | None, message: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class _Connection:
    """One client connection: reads request lines and writes whole response lines."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_line: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_line = max_line
        # While a stream runs, its items and the errors for lines sent meanwhile are written by
        # two tasks; the lock keeps each drain from racing the other's.
        self._write_lock = asyncio.Lock()

    async def read_line(self) -> bytes | None:
        """Return the next request line, or ``None`` at end of input."""
        while True:
            try:
                line = await self.reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                # End of input; a last line without its newline is still a request.
                return exc.partial if exc.partial.strip() else None
            except asyncio.LimitOverrunError as exc:
                raise _LineTooLong from exc
            if line.strip():
                return line

    async def send(self, message: dict[str, Any]) -> None:
        """Write one response line.

        Raises:
            TypeError: ``message`` holds something that is not JSON-able (nothing is written).
            _ClientGone: the client has hung up.
        """
        data = _encoder.encode(message) + b"\n"
        async with self._write_lock:
            try:
                self.writer.write(data)
                await self.writer.drain()
            except ConnectionError as exc:
                raise _ClientGone from exc

    async def send_error(self, request_id: int | None, code: str, message: str) -> None:
        """Write one error line."""
        await self.send(_error(request_id, code, message))


def _error(request_id: int | None, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "error": {"code": code, "message": message}}


def _parse_request(line: bytes) -> tuple[int, str, dict[str, Any]]:
    """Parse one request line into ``(id, method, params)``.

    Args:
        line: the raw line, with or without its newline.

    Returns:
        The request id, the method name and the params (``{}`` when omitted).

    Raises:
        _BadRequest: the line is not a well-formed request for a known method.
    """
    try:
        request = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise _BadRequest(None, f"malformed JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise _BadRequest(None, "a request must be a JSON object")
    request_id = request.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise _BadRequest(None, "a request needs an integer 'id'")
    method = request.get("method")
    if not isinstance(method, str):
        raise _BadRequest(request_id, "a request needs a string 'method'")
    params = request.get("params", {})
    if not isinstance(params, dict):
        raise _BadRequest(request_id, "'params' must be a JSON object")
    return request_id, method, params


def dispatch_of(handlers: object) -> Dispatch:
    """The dispatch table of an object with one method per API method (``a.b`` -> ``a_b``)."""
    table: dict[str, tuple[Callable[[Any], Any], bool]] = {}
    for method in METHODS:
        fn = getattr(handlers, method.replace(".", "_"), None)
        if fn is not None:
            table[method] = (fn, method in STREAMING)
    return table


class ApiServer:
    """Serves API methods on a unix socket, one JSON request per line.

    Args:
        handlers: the dispatch table (``Registry.bind``), or an object turned into one by
            ``dispatch_of``. Plain methods are ``async def`` and return a JSON-able result (or
            a msgspec Struct); streaming methods are async generators.
        socket_path: where to listen. A stale socket left there by a dead daemon is replaced.
        max_line: the longest request line accepted, in bytes.
    """

    def __init__(
        self, handlers: object, socket_path: Path, *, max_line: int = DEFAULT_MAX_LINE
    ) -> None:
        self.handlers: Dispatch = (
            handlers if isinstance(handlers, Mapping) else dispatch_of(handlers)
        )
        self.socket_path = Path(socket_path)
        self.max_line = max_line
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Listen on the socket, private to the user (mode 0600) from the first moment.

        Raises:
            SwitchboardError: the socket path is too long, or a live server already answers
                there.
        """
        _remove_stale_socket(self.socket_path)
        # The umask is process-wide; while it is set, files created by other threads are only
        # ever more private than intended, never less.
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve_connection, path=str(self.socket_path), limit=self.max_line
            )
        except OSError as exc:
            raise SwitchboardError(f"cannot listen on {self.socket_path}: {exc}") from exc
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        self._inode = os.stat(self.socket_path).st_ino
        log.info("= listening on %s", self.socket_path)

    async def aclose(self) -> None:
        """Stop listening, end every connection and remove the socket file. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()
        # Remove the socket only if it is still ours: a newer daemon may have replaced it.
        with contextlib.suppress(OSError):
            if os.stat(self.socket_path).st_ino == self._inode:
                self.socket_path.unlink()
        log.info("x stopped listening on %s", self.socket_path)

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- one connection ------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = _Connection(reader, writer, self.max_line)
        log.debug("= client connected")
        try:
            await self._serve_lines(conn)
        except (_ClientGone, ConnectionError):
            log.debug("x client went away")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
            log.debug("x client disconnected")

    async def _serve_lines(self, conn: _Connection) -> None:
        try:
            while (line := await conn.read_line()) is not None:
                await self._handle_line(conn, line)
        except _LineTooLong:
            await conn.send_error(
                None, "bad_request", f"request line exceeds limit of {self.max_line} bytes"
            )

    async def _handle_line(self, conn: _Connection, line: bytes) -> None:
        try:
            request_id, method, params = _parse_request(line)
        except _BadRequest as exc:
            await conn.send_error(exc.request_id, "bad_request", str(exc))
            return
        log.debug("< %s #%d", method, request_id)
        entry = self.handlers.get(method)
        if entry is None:
            await conn.send_error(request_id, "bad_request", f"unknown method {method[:64]!r}")
        elif entry[1]:
            await self._stream(conn, request_id, method, entry[0], params)
        else:
            await self._call(conn, request_id, method, entry[0], params)

    async def _call(
        self, conn: _Connection, request_id: int, method: str, handler: Any, params: Any
    ) -> None:
        try:
            result = await handler(params)
            await conn.send({"id": request_id, "result": result})
        except SwitchboardError as exc:
            await conn.send_error(request_id, exc.code, str(exc))
        except _ClientGone:
            raise
        except Exception:  # a bug, or a result that is not JSON-able
            log.exception("! %s #%d failed", method, request_id)
            await conn.send_error(request_id, "internal", "internal error")

    async def _stream(
        self, conn: _Connection, request_id: int, method: str, handler: Any, params: Any
    ) -> None:
        pump = asyncio.create_task(
            self._pump(conn, request_id, method, handler, params),
            name=f"switchboard[api#{request_id}].pump_loop",
        )
        watch = asyncio.create_task(
            self._watch(conn, request_id), name=f"switchboard[api#{request_id}].watch_loop"
        )
        try:
            done, _ = await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
        if pump in done and (exc := pump.exception()) is not None:
            raise exc  # _ClientGone: the client went away while we wrote to it
        if watch in done:
            # The client hung up or sent an oversized line: the stream ended with the client.
            raise _ClientGone

    async def _pump(
        self, conn: _Connection, request_id: int, method: str, handler: Any, params: Any
    ) -> None:
        try:
            stream: AsyncIterator[Any] = handler(params)
            try:
                async for item in stream:
                    await conn.send({"id": request_id, "item": item})
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
        except SwitchboardError as exc:
            await conn.send_error(request_id, exc.code, str(exc))
        except _ClientGone:
            raise
        except Exception:  # a bug, or an item that is not JSON-able: the stream ends
            log.exception("! %s #%d failed", method, request_id)
            await conn.send_error(request_id, "internal", "internal error")
        else:
            await conn.send({"id": request_id, "result": None})

    async def _watch(self, conn: _Connection, streaming_id: int) -> None:
        """Answer lines sent during a stream; return once the client is gone."""
        busy = f"connection is busy streaming request {streaming_id}; open another connection"
        try:
            while (line := await conn.read_line()) is not None:
                try:
                    request_id: int | None = _parse_request(line)[0]
                except _BadRequest as exc:
                    request_id = exc.request_id
                # Shielded: a line we have read is answered even if the stream ends meanwhile.
                await asyncio.shield(_quietly(conn.send_error(request_id, "bad_request", busy)))
        except _LineTooLong:
            await conn.send_error(
                None, "bad_request", f"request line exceeds limit of {self.max_line} bytes"
            )


async def _quietly(reply: Coroutine[Any, Any, None]) -> None:
    # A shielded reply may outlive its caller; a vanished client is then nobody's concern.
    with contextlib.suppress(_ClientGone):
        await reply


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse to touch a live one or a non-socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SwitchboardError(f"{path} exists and is not a socket; remove it first")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        log.info("= removed stale socket %s", path)
        return
    except OSError as exc:
        raise SwitchboardError(f"cannot check socket {path}: {exc}") from exc
    finally:
        probe.close()
    raise SwitchboardError(f"another process is already serving {path}")
