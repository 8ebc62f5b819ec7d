"""The local API's clients: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

These are public as ``switchboard.Client`` and ``switchboard.AsyncClient`` (docs/python-api.md).
Each has ``call(method, params)`` and ``stream(...)`` for any API method, and typed methods for
the main ones (``status``, ``agents``, ``send``, ``inbox``, ``events``, ...) that answer with
the Structs of ``daemon/shapes.py``. A client only connects: starting a daemon that is not
running is the surfaces' policy (daemon/autostart.py).

Every CLI command imports this module, so it imports only light standard modules:
``switchboard send`` must start in well under 100 ms. ``AsyncClient`` imports ``asyncio`` when
first used, the typed methods import msgspec and the shapes when first used.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from switchboard import jsonlite
from switchboard.errors import BY_CODE, DaemonUnavailable, SwitchboardError

TYPE_CHECKING = False  # no typing at run time: every command's call comes through here
if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Iterator, Sequence
    from typing import Any, Final

    from switchboard.daemon.shapes import Agent, DaemonInfo, EventRow, Message, SendResult, Status

# How long a call waits for its answer unless told otherwise: the slowest ordinary call,
# ``group create``, waits up to 10 s for its relay; calls that wait on purpose pass their own.
DEFAULT_CALL_TIMEOUT: Final = 30.0
# The longest answer line we read: only a guard against a runaway daemon of our own; an
# ``events`` result of 10,000 rows of a few KiB each fits.
DEFAULT_MAX_RESPONSE_LINE: Final = 256 * 1024 * 1024


def _encode(request_id: int, method: str, params: dict[str, Any] | None) -> bytes:
    request = {"id": request_id, "method": method, "params": params or {}}
    return jsonlite.dumps(request, compact=True).encode() + b"\n"


def _decode(line: bytes, method: str) -> dict[str, Any]:
    if not line.endswith(b"\n"):
        raise DaemonUnavailable(f"the daemon closed the connection during {method}")
    try:
        message = jsonlite.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        raise DaemonUnavailable(f"the daemon sent a malformed answer to {method}")
    return message


def error_from_response(error: Any) -> SwitchboardError:
    """Turn a response's ``{"code", "message"}`` error back into the exception raised.

    Returns:
        An instance of the class ``errors.BY_CODE`` names for the code; for codes we don't
        know, a ``SwitchboardError`` whose ``code`` is the received one.
    """
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "error")
    message = str(error.get("message") or code)
    cls = BY_CODE.get(code, SwitchboardError)
    try:
        exc = cls(message)
    except TypeError:  # a class whose constructor takes more than a message
        exc = SwitchboardError(message)
    if exc.code != code:
        exc.code = code
    return exc


def _connect_error(path: Path | str, exc: OSError) -> DaemonUnavailable:
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return DaemonUnavailable(f"no daemon is listening on {path}")
    return DaemonUnavailable(f"cannot connect to {path}: {exc}")


def _result(
    message: dict[str, Any], request_id: int, method: str, *, streaming: bool = False
) -> tuple[bool, Any]:
    """Read one answer to request ``request_id``: ``(is_final, value)``; raise its error."""
    if message.get("id") not in (request_id, None):
        raise DaemonUnavailable(
            f"the daemon answered request {message.get('id')} while we waited for {request_id}"
        )
    if "error" in message:
        raise error_from_response(message["error"])
    if "result" in message:
        return True, message["result"]
    if "item" in message and streaming:
        return False, message["item"]
    raise DaemonUnavailable(f"the daemon sent a malformed answer to {method}")


def _typed(value: Any, cls: Any) -> Any:
    import msgspec  # noqa: PLC0415 - only typed calls pay for it

    return msgspec.convert(value, cls)


def _shape(method: str) -> Any:
    """The shape ``method`` answers with: ``Status`` or ``list[Agent]`` (``shapes.RESULTS``)."""
    from switchboard.daemon import shapes  # noqa: PLC0415 - only typed calls pay for it

    name = shapes.RESULTS.get(method)
    if name is None:
        raise SwitchboardError(f"{method} has no typed result: use call()")
    inner = name.removeprefix("list[").removesuffix("]")
    cls = getattr(shapes, inner)
    return list[cls] if inner != name else cls  # type: ignore[valid-type]


def _given(**values: Any) -> dict[str, Any]:
    """The params that were given (not ``None``), so the daemon's defaults hold."""
    return {key: value for key, value in values.items() if value is not None}


def _send_params(agent: str, to: str | Sequence[str], text: str, **more: Any) -> dict[str, Any]:
    targets = [to] if isinstance(to, str) else list(to)
    return {"agent": agent, "to": targets, "text": text, **_given(**more)}


def _home_socket(home: str | Path | None, agent: str | None) -> tuple[Path, str]:
    from switchboard.config import load_settings  # noqa: PLC0415

    settings = load_settings(home=home)
    return settings.socket_path, agent or settings.acting_agent()


class Client:
    """A blocking connection to the local API; calls run one at a time.

    A timed-out call, or a stream left early, closes the connection (a late answer could not be
    told from the next one's); further calls raise ``DaemonUnavailable``.

    Args:
        sock: a connected unix stream socket.
        max_line: the longest answer line accepted, in bytes.
        agent: the acting agent of the typed methods (``send``, ``inbox``, ...).
    """

    def __init__(
        self, sock: socket.socket, *, max_line: int = DEFAULT_MAX_RESPONSE_LINE, agent: str = ""
    ) -> None:
        self._sock: socket.socket | None = sock
        self._file = sock.makefile("rb")
        self._max_line = max_line
        self._next_id = 1
        self.agent = agent

    @classmethod
    def open(cls, socket_path: Path | str, *, timeout: float = 5.0, agent: str = "") -> Client:
        """Connect to a socket path; raise ``DaemonUnavailable`` if nothing listens there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            sock.close()
            raise _connect_error(socket_path, exc) from exc
        return cls(sock, agent=agent)

    @classmethod
    def for_home(cls, home: str | Path | None = None, *, agent: str | None = None) -> Client:
        """Connect to the daemon of a home.

        Args:
            home: the data directory; default ``$SWITCHBOARD_HOME``, else the user data dir.
            agent: the acting agent; default ``$SWITCHBOARD_AGENT``, else the login name.

        Raises:
            DaemonUnavailable: no daemon runs there (``switchboard.connect`` starts one).
        """
        path, name = _home_socket(home, agent)
        return cls.open(path, agent=name)

    def close(self) -> None:
        """Close the connection. Idempotent."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._file.close()
            sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, method: str, params: dict[str, Any] | None) -> int:
        if self._sock is None:
            raise DaemonUnavailable("the connection to the daemon is closed")
        request_id, self._next_id = self._next_id, self._next_id + 1
        try:
            self._sock.sendall(_encode(request_id, method, params))
        except OSError as exc:
            self.close()
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from exc
        return request_id

    def _receive(self, method: str, timeout: float | None) -> dict[str, Any]:
        assert self._sock is not None
        self._sock.settimeout(timeout)
        try:
            line = self._file.readline(self._max_line + 1)
            if len(line) > self._max_line:
                raise DaemonUnavailable(f"answer to {method} exceeds {self._max_line} bytes")
            return _decode(line, method)
        except TimeoutError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from exc
        except DaemonUnavailable:
            self.close()
            raise

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ) -> Any:
        """Call one API method and return its result.

        Args:
            method: the method name (``send``, ``group.create``, ...).
            params: its parameters.
            timeout: seconds to wait for the answer; ``None`` waits for ever.

        Returns:
            The method's result.

        Raises:
            SwitchboardError: the daemon's error, as the subclass its code names.
            DaemonUnavailable: the connection failed or the answer took longer than ``timeout``.
        """
        request_id = self._send(method, params)
        try:
            message = self._receive(method, timeout)
        except TimeoutError as exc:
            raise DaemonUnavailable(
                f"the daemon did not answer {method} within {timeout:g} s"
            ) from exc
        return _result(message, request_id, method)[1]

    def stream(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        duration: float | None = None,
    ) -> Iterator[Any]:
        """Call a streaming method (``events.follow``) and yield its items as they come.

        Args:
            method: the streaming method.
            params: its parameters.
            duration: end quietly after this many seconds; ``None``: when the daemon ends it.

        Raises:
            SwitchboardError: the daemon's error, as the subclass its code names.
        """
        request_id = self._send(method, params)
        deadline = None if duration is None else time.monotonic() + duration
        finished = False
        try:
            while True:
                remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                if remaining == 0.0:
                    return
                try:
                    message = self._receive(method, remaining)
                except TimeoutError:
                    return
                finished, value = _result(message, request_id, method, streaming=True)
                if finished:
                    return
                yield value
        finally:
            if not finished:
                self.close()  # the daemon ends the stream when we hang up

    # -- typed calls ------------------------------------------------------------------------

    def typed(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        """Like ``call``, and decode the answer into the method's shape (``shapes.RESULTS``:
        ``room.list`` gives ``list[Room]``); a method without one raises ``SwitchboardError``."""
        return _typed(self.call(method, params, **kw), _shape(method))

    def ping(self) -> DaemonInfo:
        """The daemon's pid and version."""
        info: DaemonInfo = self.typed("ping")
        return info

    def status(self) -> Status:
        """The device, the daemon, each group's link, and the agents."""
        status: Status = self.typed("status")
        return status

    def agents(self, *, all: bool = False) -> list[Agent]:
        """Agents of every device of the group (``all``: hidden and expired ones too)."""
        found: list[Agent] = self.typed("agents", {"agent": self.agent, "all": all})
        return found

    def send(
        self,
        to: str | Sequence[str],
        text: str,
        *,
        thread: str | None = None,
        reply_to: str | int | None = None,
        intent: str | None = None,
        priority: str | None = None,
        wait: float | None = None,
    ) -> SendResult:
        """Send ``text`` as the acting agent to ``to`` (``@name``, ``@name:DEV``, ``#room``,
        ``+tag``, ``@all``); say per recipient whether it was delivered or queued."""
        values = _send_params(
            self.agent, to, text, thread=thread, reply_to=reply_to, intent=intent,
            priority=priority, wait=wait,
        )  # fmt: skip
        result: SendResult = self.typed("send", values)
        return result

    def inbox(self, *, peek: bool = False, wait: float = 0.0) -> list[Message]:
        """The acting agent's unread messages (waiting up to ``wait`` s for one); marks them
        read unless ``peek``."""
        values = {"agent": self.agent, "peek": peek, "wait": wait}
        found: list[Message] = self.typed("inbox", values, timeout=wait + DEFAULT_CALL_TIMEOUT)
        return found

    def events(
        self,
        *,
        type: str | None = None,
        agent: str | None = None,
        where: str | None = None,
        last: int | None = None,
        after: int | None = None,
    ) -> list[EventRow]:
        """Events of the log the acting agent may see: filters and read-only SQL (``where``)."""
        values = _given(
            type=type, agent=agent, where=where, last=last, after=after, reader=self.agent
        )
        found: list[EventRow] = self.typed("events", values)
        return found

    def follow(
        self,
        *,
        type: str | None = None,
        agent: str | None = None,
        where: str | None = None,
        after: int | None = None,
        duration: float | None = None,
    ) -> Iterator[EventRow]:
        """Yield events as they are stored, from now (or after ``after``), for ``duration`` s
        (``None``: until you stop iterating)."""
        values = _given(type=type, agent=agent, where=where, after=after, reader=self.agent)
        cls = _shape("events.follow")
        for item in self.stream("events.follow", values, duration=duration):
            yield _typed(item, cls)


class AsyncClient:
    """An asyncio connection to the local API, for long-lived surfaces (the MCP server).

    Calls are serialised on one connection, (re)opened on demand: a cancelled call drops it, so
    a late answer is never taken for the next one's. Each ``stream()`` has its own connection.

    Args:
        socket_path: the daemon's socket.
        max_line: the longest response line accepted, in bytes.
        agent: the acting agent of the typed methods (``send``, ``inbox``, ...).
    """

    def __init__(
        self,
        socket_path: Path | str,
        *,
        max_line: int = DEFAULT_MAX_RESPONSE_LINE,
        agent: str = "",
    ) -> None:
        self.socket_path = Path(socket_path)
        self.agent = agent
        self._max_line = max_line
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock: asyncio.Lock | None = None
        self._next_id = 1

    @classmethod
    def for_home(cls, home: str | Path | None = None, *, agent: str | None = None) -> AsyncClient:
        """A client of the daemon of a home (connected at the first call).

        Args:
            home: the data directory; default ``$SWITCHBOARD_HOME``, else the user data dir.
            agent: the acting agent; default ``$SWITCHBOARD_AGENT``, else the login name.
        """
        path, name = _home_socket(home, agent)
        return cls(path, agent=name)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        import asyncio  # noqa: PLC0415 - keeps the sync client's import path light

        try:
            return await asyncio.open_unix_connection(str(self.socket_path), limit=self._max_line)
        except OSError as exc:
            raise _connect_error(self.socket_path, exc) from exc

    async def _request(self, writer: asyncio.StreamWriter, method: str, params: Any) -> int:
        request_id, self._next_id = self._next_id, self._next_id + 1
        writer.write(_encode(request_id, method, params))
        try:
            await writer.drain()
        except OSError as exc:
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from exc
        return request_id

    @staticmethod
    async def _answer(reader: asyncio.StreamReader, method: str) -> dict[str, Any]:
        try:
            line = await reader.readline()
        except (OSError, ValueError) as exc:  # ValueError: a line over max_line
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from exc
        return _decode(line, method)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call one API method and return its result.

        Bound the wait with ``asyncio.timeout()`` around the call; a cancelled call drops the
        connection, and the next call opens a new one.

        Args:
            method: the method name.
            params: its parameters.

        Returns:
            The method's result.

        Raises:
            SwitchboardError: the daemon's error, as the subclass its code names.
            DaemonUnavailable: the connection failed.
        """
        import asyncio  # noqa: PLC0415

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._streams is None:
                self._streams = await self._open()
            reader, writer = self._streams
            try:
                request_id = await self._request(writer, method, params)
                message = await self._answer(reader, method)
            except BaseException:
                await self.aclose()
                raise
        return _result(message, request_id, method)[1]

    async def stream(self, method: str, params: dict[str, Any] | None = None) -> AsyncIterator[Any]:
        """Call a streaming method on a connection of its own and yield its items.

        Leaving the loop early (``break``, cancellation, ``aclose()``) hangs up, which ends the
        stream in the daemon.

        Raises:
            SwitchboardError: the daemon's error, as the subclass its code names.
        """
        reader, writer = await self._open()
        try:
            request_id = await self._request(writer, method, params)
            while True:
                message = await self._answer(reader, method)
                finished, value = _result(message, request_id, method, streaming=True)
                if finished:
                    return
                yield value
        finally:
            await _close_writer(writer)

    async def aclose(self) -> None:
        """Close the connection. Idempotent; a later call opens a new one."""
        streams, self._streams = self._streams, None
        if streams is not None:
            await _close_writer(streams[1])

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- typed calls ------------------------------------------------------------------------

    async def typed(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Like ``call``, decoded into the method's shape; see ``Client.typed``."""
        return _typed(await self.call(method, params), _shape(method))

    async def ping(self) -> DaemonInfo:
        """The daemon's pid and version."""
        info: DaemonInfo = await self.typed("ping")
        return info

    async def status(self) -> Status:
        """The device, the daemon, each group's link, and the agents."""
        status: Status = await self.typed("status")
        return status

    async def agents(self, *, all: bool = False) -> list[Agent]:
        """Agents of every device of the group (``all``: hidden and expired ones too)."""
        values = {"agent": self.agent, "all": all}
        found: list[Agent] = await self.typed("agents", values)
        return found

    async def send(
        self,
        to: str | Sequence[str],
        text: str,
        *,
        thread: str | None = None,
        reply_to: str | int | None = None,
        intent: str | None = None,
        priority: str | None = None,
        wait: float | None = None,
    ) -> SendResult:
        """Send ``text`` as the acting agent to ``to``; see ``Client.send``."""
        values = _send_params(
            self.agent, to, text, thread=thread, reply_to=reply_to, intent=intent,
            priority=priority, wait=wait,
        )  # fmt: skip
        result: SendResult = await self.typed("send", values)
        return result

    async def inbox(self, *, peek: bool = False, wait: float = 0.0) -> list[Message]:
        """The acting agent's unread messages; see ``Client.inbox``."""
        values = {"agent": self.agent, "peek": peek, "wait": wait}
        found: list[Message] = await self.typed("inbox", values)
        return found

    async def events(
        self,
        *,
        type: str | None = None,
        agent: str | None = None,
        where: str | None = None,
        last: int | None = None,
        after: int | None = None,
    ) -> list[EventRow]:
        """Events of the log the acting agent may see; see ``Client.events``."""
        values = _given(
            type=type, agent=agent, where=where, last=last, after=after, reader=self.agent
        )
        found: list[EventRow] = await self.typed("events", values)
        return found

    async def follow(
        self,
        *,
        type: str | None = None,
        agent: str | None = None,
        where: str | None = None,
        after: int | None = None,
    ) -> AsyncIterator[EventRow]:
        """Yield events as they are stored, from now (or after ``after``), on a connection of
        its own; leaving the loop ends the stream."""
        values = _given(type=type, agent=agent, where=where, after=after, reader=self.agent)
        cls = _shape("events.follow")
        async for item in self.stream("events.follow", values):
            yield _typed(item, cls)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
