"""A headless task run through the Agent Client Protocol, so its permission prompts travel.

Gemini CLI and OpenCode cannot hand a permission prompt to anyone in their own headless
modes: ``gemini`` with piped stdin fails every call that would ask ("requires user
confirmation, which is not supported in non-interactive mode", checked *after* its
``BeforeTool`` hook, whose only verdicts are deny and ask), and ``opencode run`` answers
every ``permission.asked`` itself with ``reject`` (its plugin hook ``permission.ask`` is no
longer triggered in 1.18). Both are ACP agents, though (``gemini --acp``, ``opencode acp``),
and an ACP agent asks its *client* with ``session/request_permission``. So a spawned task of
either runs this module as that client::

    python -P -m switchboard.harnesses.acp -- gemini --acp      # the task text on stdin

It starts the agent, opens one session in the working directory, sends the task as the
prompt, writes what the agent says (and each tool call's title) to stdout, the task's
output log, and answers each permission request with ``prompt.ask`` of this device's daemon
(daemon/approvals.py): the task shows ``blocked`` everywhere until someone the policy allows
answers, and the agent gets ``allow_once`` or ``reject_once``. When the daemon cannot be
asked, the answer is reject, the harness's own headless default. The exit status is 0 when
the turn ended normally (``end_turn``), 1 otherwise, the agent's own when it dies.

Gemini CLI's ACP mode runs its tools itself, without the scheduler that fires hooks, so our
installed hooks do not run there and no message rides on a tool result. This client makes up
for the end of the turn: when a Gemini turn ends and messages wait for the agent (a ``task
nudge``), it sends them as the next prompt (``inbox.take``), up to ``MAX_FOLLOW_UPS`` times.
OpenCode's plugin runs under ACP as it does elsewhere (messages ride on tool results).

ACP carries no reason with a rejection: the agent reports the call as rejected by the user.
OpenCode then ends its turn (unless ``experimental.continue_loop_on_deny`` is set); Gemini
tells the model and goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import IO, Any, Final

#: ACP's protocol version both pinned agents speak.
PROTOCOL_VERSION: Final = 1
# Beyond the prompt's own wait (daemon/approvals.py), the daemon's answer may take this long.
ASK_MARGIN: Final = 60.0
PROMPT_WAIT: Final = 300.0
MAX_DETAIL: Final = 500
#: Harnesses whose ACP mode runs no hooks: this client delivers their messages between turns.
HOOKLESS: Final = ("gemini",)
MAX_FOLLOW_UPS: Final = 10


class AgentGone(Exception):
    """The agent closed its output (it exited)."""


class Connection:
    """JSON-RPC 2.0 over the agent's stdin and stdout, one message a line."""

    def __init__(self, proc: subprocess.Popen[bytes], out: IO[str]) -> None:
        self.proc = proc
        self.out = out
        self.next_id = 1
        self.said = False  # whether the last thing written was agent text (no newline yet)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        data = json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":"))
        self.proc.stdin.write(data.encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> Any:
        """Send a request, serve what the agent sends meanwhile, return the result.

        Raises:
            AgentGone: the agent exited first.
            RuntimeError: the agent answered with an error.
        """
        my_id = self.next_id
        self.next_id += 1
        self.send({"id": my_id, "method": method, "params": params})
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AgentGone
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours (a stray print of the agent)
            if not isinstance(message, dict):
                continue
            if "method" not in message and message.get("id") == my_id:
                if "error" in message:
                    error = message["error"] or {}
                    raise RuntimeError(f"{method}: {str(error.get('message', error))[:300]}")
                return message.get("result")
            if "method" in message:
                self.serve(message)

    def serve(self, message: dict[str, Any]) -> None:
        """A notification or a request of the agent."""
        method, params = message["method"], message.get("params") or {}
        if method == "session/update":
            self.show(params.get("update") or {})
            return
        if "id" not in message:
            return
        if method == "session/request_permission":
            self.send({"id": message["id"], "result": permission_answer(params, ask)})
            return
        self.send({"id": message["id"],
                   "error": {"code": -32601, "message": f"{method} is not offered"}})  # fmt: skip

    def show(self, update: dict[str, Any]) -> None:
        """Write the agent's words and its tool calls to the task's output."""
        kind = update.get("sessionUpdate")
        if kind == "agent_message_chunk":
            content = update.get("content") or {}
            if content.get("type") == "text":
                self.out.write(content.get("text", ""))
                self.said = True
        elif kind == "tool_call":
            self.line(f"[{update.get('kind') or 'tool'}] {update.get('title', '')}")
        self.out.flush()

    def line(self, text: str) -> None:
        if self.said:
            self.out.write("\n")
            self.said = False
        self.out.write(text + "\n")


def _detail(tool: dict[str, Any]) -> str:
    """The command or path the permission is for, as the approver reads it."""
    raw = tool.get("rawInput") or {}
    if isinstance(raw, dict):
        for key in ("command", "file_path", "filePath", "path", "url", "pattern"):
            value = raw.get(key)
            if isinstance(value, str) and value:
                return value[:MAX_DETAIL]
    paths = [loc.get("path", "") for loc in tool.get("locations") or [] if isinstance(loc, dict)]
    return " ".join([str(tool.get("title") or ""), *paths]).strip()[:MAX_DETAIL]


def ask(tool: str, detail: str) -> bool:
    """``prompt.ask`` of this device's daemon; any failure is a no."""
    from switchboard.daemon.autostart import connect_home  # noqa: PLC0415 - only when asked

    try:
        with connect_home(autostart=False) as client:
            answer = client.call(
                "prompt.ask",
                {"agent": os.environ.get("SWITCHBOARD_AGENT", ""), "tool": tool,
                 "detail": detail, "wait": PROMPT_WAIT},
                timeout=PROMPT_WAIT + ASK_MARGIN,
            )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the prompt is refused
        print(f"switchboard: permission refused, the daemon could not be asked: {exc}"[:300],
              file=sys.stderr, flush=True)  # fmt: skip
        return False
    return bool(isinstance(answer, dict) and answer.get("allowed"))


def waiting_messages() -> str:
    """What waits for this task's agent, wrapped as the hooks would (marked delivered);
    ``""`` when nothing does or the daemon cannot be asked."""
    from switchboard.daemon.autostart import connect_home  # noqa: PLC0415 - only at a turn's end

    harness = os.environ.get("SWITCHBOARD_HARNESS", "")
    try:
        with connect_home(autostart=False) as client:
            taken = client.call("inbox.take", {
                "agent": os.environ.get("SWITCHBOARD_AGENT", ""), "via": f"acp:{harness}",
                "ack": True, "mcp": False,
            })  # fmt: skip
    except Exception:  # noqa: BLE001 - no delivery now; the agent's inbox still holds them
        return ""
    return str(taken.get("text") or "") if isinstance(taken, dict) else ""


def permission_answer(params: dict[str, Any], decide: Any) -> dict[str, Any]:
    """The result of ``session/request_permission``: the agent's own allow-once or
    reject-once option, as ``decide(tool, detail)`` says."""
    tool = params.get("toolCall") or {}
    name = str(tool.get("kind") or tool.get("title") or "tool")[:100]
    allowed = decide(name, _detail(tool))
    wanted = ("allow_once",) if allowed else ("reject_once", "reject_always")
    options = [o for o in params.get("options") or [] if isinstance(o, dict)]
    for kind in wanted:
        for option in options:
            if option.get("kind") == kind and "optionId" in option:
                return {"outcome": {"outcome": "selected", "optionId": option["optionId"]}}
    return {"outcome": {"outcome": "cancelled"}}


def run(program: list[str], task: str, out: IO[str]) -> int:
    """Run one task through the agent ``program``; its exit status."""
    try:
        proc = subprocess.Popen(program, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except OSError as exc:
        print(f"switchboard: cannot start {program[0][:80]}: {exc}", file=sys.stderr)
        return 127
    conn = Connection(proc, out)
    code = 1
    try:
        conn.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION,
            "clientCapabilities": {"fs": {"readTextFile": False, "writeTextFile": False},
                                   "terminal": False},
        })  # fmt: skip
        session = conn.request("session/new", {"cwd": os.getcwd(), "mcpServers": []})
        text, turns, reason = task, 0, "end_turn"
        while text and reason == "end_turn" and turns <= MAX_FOLLOW_UPS:
            prompt = [{"type": "text", "text": text}]
            done = conn.request("session/prompt", {"sessionId": session["sessionId"],
                                                   "prompt": prompt})  # fmt: skip
            reason = (done or {}).get("stopReason", "")
            turns += 1
            follow = os.environ.get("SWITCHBOARD_HARNESS") in HOOKLESS
            text = waiting_messages() if follow and reason == "end_turn" else ""
        conn.line("" if reason == "end_turn" else f"[stopped: {reason}]")
        code = 0 if reason == "end_turn" else 1
    except AgentGone:
        conn.line("")
        return proc.wait()
    except (RuntimeError, KeyError, TypeError) as exc:
        conn.line(f"switchboard: {exc}"[:300])
    finally:
        out.flush()
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait()
    return code


def main(argv: list[str]) -> int:
    """``python -m switchboard.harnesses.acp -- PROGRAM ARGS...``, the task on stdin."""
    program = argv[1:] if argv[:1] == ["--"] else argv
    if not program:
        print("usage: python -m switchboard.harnesses.acp -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    return run(program, sys.stdin.read(), sys.stdout)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
