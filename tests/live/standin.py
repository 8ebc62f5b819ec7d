"""A loopback stand-in for a model API: a scripted tool call, then a final answer, all recorded.

Each real harness is pointed at one of these instead of its vendor's endpoint. The script is
stateless, read from the conversation the harness sends: a request whose conversation holds
no tool result yet is answered with one shell tool call (``echo hi``); a request that holds
one gets a final text answer. So a harness that goes on after its turn ended (a blocked stop,
a follow-up prompt) gets another final answer, and the turn converges.

Requests that are not the agent's conversation (titles, summaries, quota probes: a request
without tools) get a short text answer and are recorded too. Before the stand-in answers a
conversation request, it calls the test's ``before`` callback with the step it is about to
take (``"tool"`` or ``"final"``): a test sends its Switchboard message there, so the message
is waiting when the harness's hook runs after the tool, or at the end of the turn.

Four dialects, one per API the harnesses speak:

- ``anthropic``: the Messages API, streamed as SSE (Claude Code).
- ``responses``: OpenAI's Responses API, streamed as SSE (Codex).
- ``gemini``: ``generateContent`` and ``streamGenerateContent`` (Gemini CLI).
- ``chat``: OpenAI-compatible chat completions, streamed as SSE (OpenCode, Pi).
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMAND = "echo hi"
FINAL = "All done: the command printed hi."
AUX = "Switchboard live test"
_IDS = itertools.count(1)


# Where the scripted tool call sits in a later request body (its JSON text), per dialect.
_CALL_MARKS = {
    "anthropic": '"type": "tool_use"',
    "responses": '"type": "function_call"',
    "gemini": '"functionCall"',
    "chat": '"tool_calls"',
}


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    body: Any
    step: str  # "tool", "final", "aux" or "other"
    dialect: str = ""
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        """The whole body as JSON text, for ``in`` checks."""
        return json.dumps(self.body)

    def after_tool_call(self, needle: str) -> bool:
        """Whether ``needle`` appears in the conversation after the (first) tool call: in or
        beside its result (Codex places hook context just before the output item)."""
        text = self.text
        start = text.find(_CALL_MARKS[self.dialect])
        return start >= 0 and text.find(needle, start) > start


# -- what a conversation holds, per dialect ------------------------------------------------


def _anthropic_has_result(body: dict[str, Any]) -> bool:
    return any(
        isinstance(block, dict) and block.get("type") == "tool_result"
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
    )


def _responses_has_result(body: dict[str, Any]) -> bool:
    items = body.get("input") if isinstance(body.get("input"), list) else []
    return any(
        isinstance(item, dict) and str(item.get("type", "")).endswith("call_output")
        for item in items
    )


def _gemini_has_result(body: dict[str, Any]) -> bool:
    return any(
        "functionResponse" in part
        for content in body.get("contents", [])
        for part in content.get("parts", [])
    )


def _chat_has_result(body: dict[str, Any]) -> bool:
    return any(message.get("role") == "tool" for message in body.get("messages", []))


def _tool_names(tools: Any) -> list[str]:
    names = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function") if isinstance(tool.get("function"), dict) else {}
        names.append(str(tool.get("name") or function.get("name") or ""))
        for declaration in tool.get("functionDeclarations", []):
            names.append(str(declaration.get("name", "")))
    return names


def _pick(names: list[str], wanted: tuple[str, ...]) -> str:
    for name in wanted:
        if name in names:
            return name
    raise AssertionError(f"no shell tool among the harness's tools: {names}")


# -- answers, per dialect ---------------------------------------------------------------------


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append(f"{head}data: {payload}\n\n")
    return "".join(out).encode()


def anthropic_answer(body: dict[str, Any], step: str) -> tuple[str, bytes]:
    """A Messages API answer (SSE when ``stream`` is asked for, else one JSON message)."""
    msg_id = f"msg_{next(_IDS)}"
    usage = {"input_tokens": 10, "output_tokens": 5}
    if step == "tool":
        tool = _pick(_tool_names(body.get("tools")), ("Bash",))
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": f"toolu_{next(_IDS)}",
            "name": tool,
            "input": {},
        }
        args = {"command": COMMAND, "description": "Print hi"}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(args)}
        full = {**block, "input": args}
        stop = "tool_use"
    else:
        text = FINAL if step == "final" else AUX
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": text}
        full = {"type": "text", "text": text}
        stop = "end_turn"
    message = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "stand-in"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        done = {**message, "content": [full], "stop_reason": stop}
        return "application/json", json.dumps(done).encode()
    return "text/event-stream", _sse(
        [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )


def responses_answer(body: dict[str, Any], step: str) -> tuple[str, bytes]:
    """A Responses API answer, streamed (Codex always streams)."""
    resp_id = f"resp_{next(_IDS)}"
    if step == "tool":
        names = _tool_names(body.get("tools"))
        tool = _pick(names, ("shell_command", "exec_command", "shell", "local_shell"))
        args = {
            "shell_command": {"command": COMMAND},
            "exec_command": {"cmd": COMMAND},
            "shell": {"command": ["bash", "-lc", COMMAND]},
        }.get(tool, {"command": ["bash", "-lc", COMMAND]})
        item: dict[str, Any] = {
            "type": "function_call",
            "id": f"fc_{next(_IDS)}",
            "call_id": f"call_{next(_IDS)}",
            "name": tool,
            "arguments": json.dumps(args),
            "status": "completed",
        }
    else:
        text = FINAL if step == "final" else AUX
        item = {
            "type": "message",
            "id": f"msg_{next(_IDS)}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    response = {"id": resp_id, "object": "response", "status": "in_progress", "output": []}
    completed = {**response, "status": "completed", "output": [item], "usage": usage}
    return "text/event-stream", _sse(
        [
            ("response.created", {"type": "response.created", "response": response}),
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": 0, "item": item},
            ),
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": 0, "item": item},
            ),
            ("response.completed", {"type": "response.completed", "response": completed}),
        ]
    )


def gemini_answer(body: dict[str, Any], step: str, *, stream: bool) -> tuple[str, bytes]:
    """A ``generateContent`` answer (``streamGenerateContent?alt=sse``: one SSE chunk).

    A side request asking for JSON (Gemini CLI's model router, its next-speaker check) gets
    a value of its schema: the smallest that validates, and ``"user"`` where the user may be
    chosen, so the harness hands the turn back instead of going on.
    """
    config = body.get("generationConfig") or {}
    if step == "tool":
        tool = _pick(_tool_names(body.get("tools")), ("run_shell_command",))
        part: dict[str, Any] = {"functionCall": {"name": tool, "args": {"command": COMMAND}}}
    elif step == "aux" and "json" in str(config.get("responseMimeType", "")):
        schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        part = {"text": json.dumps(_fill(schema))}
    else:
        part = {"text": FINAL if step == "final" else AUX}
    chunk = {
        "candidates": [
            {"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": "stand-in",
    }
    if not stream:
        return "application/json", json.dumps(chunk).encode()
    return "text/event-stream", _sse([(None, chunk)])


def _fill(schema: dict[str, Any]) -> Any:
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        return "user" if "user" in schema["enum"] else schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        return {key: _fill(props[key]) for key in schema.get("required", props)}
    return {"string": "stand-in", "integer": 10, "number": 10, "boolean": False}.get(kind, [])


def chat_answer(body: dict[str, Any], step: str) -> tuple[str, bytes]:
    """A chat completions answer (SSE chunks and ``[DONE]`` when streaming)."""
    chat_id = f"chatcmpl-{next(_IDS)}"
    base = {"id": chat_id, "object": "chat.completion.chunk", "created": 0, "model": "stand-in"}
    if step == "tool":
        tool = _pick(_tool_names(body.get("tools")), ("bash", "shell", "Bash"))
        call = {
            "index": 0,
            "id": f"call_{next(_IDS)}",
            "type": "function",
            "function": {
                "name": tool,
                "arguments": json.dumps({"command": COMMAND, "description": "Print hi"}),
            },
        }
        delta: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        delta = {"role": "assistant", "content": FINAL if step == "final" else AUX}
        finish = "stop"
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    if not body.get("stream"):
        message = {k: v for k, v in delta.items() if v is not None}
        done = {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        return "application/json", json.dumps(done).encode()
    return "text/event-stream", _sse(
        [
            (None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}),
            (None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}),
            (None, {**base, "choices": [], "usage": usage}),
            (None, "[DONE]"),
        ]
    )


# -- the server -------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A harness that exits (or is stopped) while an answer is on its way is no error here.
        pass


@dataclass
class Standin:
    """A stand-in for one model API on a free loopback port, in a thread of the test process.

    Args:
        dialect: ``anthropic``, ``responses``, ``gemini`` or ``chat``.
        before: called with the step (``"tool"``/``"final"``) and the request's body before
            each conversation request is answered; the answer waits for it to return.
    """

    dialect: str
    before: Callable[[str, Any], None] | None = None
    requests: list[Recorded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin._record(self, None)
                self._send(404, "application/json", b'{"error": {"message": "not here"}}')

            def do_POST(self) -> None:
                try:
                    body = json.loads(self._body() or b"null")
                    status, kind, data = standin._answer(self, body)
                except Exception as exc:  # the test fails on it (Home.turn checks errors)
                    standin.errors.append(f"{self.path}: {exc!r}")
                    status, kind, data = 500, "application/json", b'{"error": "stand-in"}'
                self._send(status, kind, data)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    raw = bytes(data)
                else:
                    raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "").lower()
                if encoding == "gzip":
                    return gzip.decompress(raw)
                if encoding == "deflate":
                    return zlib.decompress(raw)
                assert encoding in ("", "identity"), f"request body in {encoding}"
                return raw

            def _send(self, status: int, kind: str, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                if kind == "text/event-stream":
                    self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.wfile.write(data)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what it received ---------------------------------------------------------------------

    def clear(self) -> None:
        """Forget what was recorded (a second turn starts afresh)."""
        with self._lock:
            self.requests.clear()

    def wait_for(self, predicate: Callable[[list[Recorded]], bool], seconds: float) -> bool:
        """Wait until what was recorded satisfies ``predicate`` (``False`` after ``seconds``)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self.requests)), seconds)

    def _record(self, handler: BaseHTTPRequestHandler, body: Any, step: str = "other") -> None:
        with self._changed:
            self.requests.append(Recorded(handler.command, handler.path, body, step, self.dialect))
            self._changed.notify_all()

    # -- what it answers ----------------------------------------------------------------------

    def _step(self, body: Any) -> str:
        if not isinstance(body, dict) or not _tool_names(body.get("tools")):
            return "aux"
        has_result = {
            "anthropic": _anthropic_has_result,
            "responses": _responses_has_result,
            "gemini": _gemini_has_result,
            "chat": _chat_has_result,
        }[self.dialect](body)
        return "final" if has_result else "tool"

    def _answer(self, handler: BaseHTTPRequestHandler, body: Any) -> tuple[int, str, bytes]:
        path = handler.path
        if self.dialect == "anthropic" and "/count_tokens" in path:
            self._record(handler, body)
            return 200, "application/json", b'{"input_tokens": 10}'
        if self.dialect == "gemini" and ":countTokens" in path:
            self._record(handler, body)
            return 200, "application/json", b'{"totalTokens": 10}'
        step = self._step(body)
        self._record(handler, body, step)
        if step != "aux" and self.before is not None:
            self.before(step, body)
        if self.dialect == "anthropic":
            kind, data = anthropic_answer(body, step)
        elif self.dialect == "responses":
            kind, data = responses_answer(body, step)
        elif self.dialect == "gemini":
            kind, data = gemini_answer(body, step, stream="streamGenerateContent" in path)
        else:
            kind, data = chat_answer(body, step)
        return 200, kind, data
