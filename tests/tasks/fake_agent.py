"""A stand-in for a harness CLI that honours that harness's command-line contract.

Run as ``fake_agent.py HARNESS ARGS...`` (the test's bin folder has one ``claude``, ``codex``,
... script per harness that does so). It checks that ``ARGS`` is what Switchboard's command
table promises for that harness (headless: the task on stdin; ``--terminal``: the task as one
argument), prints what it got, then runs the task text as a tiny script, one command a line:

- ``say TEXT``: print TEXT;
- ``write PATH TEXT``: write TEXT to PATH (relative to the working directory);
- ``wait-message [SECS]``: wait for a message to this agent (``switchboard inbox``), print it;
- ``ask TOOL DETAIL``: ask a permission the way the harness would, print the answer: Claude
  Code calls the ``--permission-prompt-tool`` of the MCP server its ``--mcp-config`` names;
  ``cmd`` (a script) calls the daemon's ``prompt.ask``; Gemini CLI and OpenCode, run as ACP
  agents (``gemini --acp``, ``opencode acp``), send ``session/request_permission`` to their
  ACP client; the others, headless, deny;
  ``ask-brief TOOL DETAIL`` likewise, asking the daemon to wait 1 s only (``cmd``);
- ``wait-gate PATH``: block until the test opens the FIFO ``PATH`` (``conftest.release``);
- ``hang`` (until a signal ends it); ``ignore-term`` (SIGTERM does nothing now);
- ``grandchild``: start a process that sleeps for an hour (a stop must end it too);
- ``read-lines``: print ``reading``, then ``typed: LINE`` for each line typed (stdin, the
  terminal under ``--terminal``) until ``quit``;
- ``exit N``: end with status N.

Any other line is only printed (so shell metacharacters in a task show up verbatim).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

# What each harness's headless and interactive commands pass (switchboard.tasks.commands).
HEADLESS = {
    "claude": ["-p"],
    "codex": ["exec", "-"],
    "gemini": [],
    "opencode": ["run"],
    "pi": ["-p"],
}
SKIP_FLAGS = {
    "--dangerously-skip-permissions", "--dangerously-bypass-approvals-and-sandbox",
    "--full-auto", "--yolo", "-y", "--approval-mode=yolo", "--auto",
}  # fmt: skip
EXIT_BAD_CONTRACT = 64
# What a resume or fork of session S passes (headless argv, and the interactive argv's words
# before the task), per harness; Gemini CLI has no fork.
S = "{session}"
CONTINUE = {
    "claude": {"resume": (["-p", "--resume", S], ["--resume", S]),
               "fork": (["-p", "--resume", S, "--fork-session"],
                        ["--resume", S, "--fork-session"])},
    "codex": {"resume": (["exec", "resume", S, "-"], ["resume", S]),
              "fork": (["exec", "fork", S, "-"], ["fork", S])},
    "gemini": {"resume": (["--resume", S], ["--resume", S])},
    "opencode": {"resume": (["run", "--session", S], ["--session", S]),
                 "fork": (["run", "--session", S, "--fork"], ["--session", S, "--fork"])},
    "pi": {"resume": (["-p", "--session", S], ["--session", S]),
           "fork": (["-p", "--fork", S], ["--fork", S])},
}  # fmt: skip
CONTINUED: list[str] = []  # how, session: what this run continues


# The ACP agent modes (harnesses/acp.py is their client): the task comes in session/prompt.
ACP = {"gemini": ["--acp"], "opencode": ["acp"]}
_REAL_STDOUT = sys.stdout


class _AcpOut:
    """In ACP mode, what the fake prints goes to the client as the agent's words."""

    def write(self, text: str) -> int:
        _acp_send(
            {
                "method": "session/update",
                "params": {
                    "sessionId": "s1",
                    "update": {
                        "sessionUpdate": "agent_message_chunk",
                        "content": {"type": "text", "text": text},
                    },
                },
            }
        )
        return len(text)

    def flush(self) -> None:
        pass


def _acp_send(message: dict[str, Any]) -> None:
    _REAL_STDOUT.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
    _REAL_STDOUT.flush()


def _acp_read() -> dict[str, Any]:
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(0)
    message: dict[str, Any] = json.loads(line)
    return message


def _acp_ask(tool: str, detail: str) -> str:
    options = [{"optionId": "yes", "kind": "allow_once", "name": "Allow"},
               {"optionId": "no", "kind": "reject_once", "name": "Reject"}]  # fmt: skip
    call = {"kind": tool, "title": detail, "rawInput": {"command": detail}}
    _acp_send({"id": 900, "method": "session/request_permission",
               "params": {"sessionId": "s1", "toolCall": call, "options": options}})  # fmt: skip
    answer = _acp_read()
    picked = answer["result"]["outcome"].get("optionId")
    return "answer allow" if picked == "yes" else "answer deny: rejected"


def _acp_serve() -> int:
    """initialize, session/new, then one session/prompt: its text run as the task."""
    while True:
        request = _acp_read()
        method, rid = request.get("method"), request.get("id")
        if method == "initialize":
            _acp_send({"id": rid, "result": {"protocolVersion": 1}})
        elif method == "session/new":
            _acp_send({"id": rid, "result": {"sessionId": "s1"}})
        elif method == "session/prompt":
            task = "".join(p.get("text", "") for p in request["params"]["prompt"])
            sys.stdout = _AcpOut()  # type: ignore[assignment]
            status = _run_task(task, [])
            if status:
                return status
            _acp_send({"id": rid, "result": {"stopReason": "end_turn"}})
            return 0


# Claude Code's options that take a value: our MCP server and the permission-prompt tool.
VALUED = ("--mcp-config", "--permission-prompt-tool")
OPTIONS: dict[str, str] = {}


def _task_of(harness: str, args: list[str]) -> tuple[str, list[str]] | None:
    """The task text and the skip flags found, or ``None`` if ``args`` breaks the contract."""
    if harness == "claude":
        while any(a in VALUED for a in args):
            at = next(i for i, a in enumerate(args) if a in VALUED)
            if at + 1 >= len(args):
                return None
            OPTIONS[args[at]] = args[at + 1]
            args = args[:at] + args[at + 2 :]
    flags = [a for a in args if a in SKIP_FLAGS]
    rest = _continuation(harness, [a for a in args if a not in SKIP_FLAGS])
    if rest is None:
        return None
    if rest == HEADLESS[harness]:
        return sys.stdin.read(), flags
    if harness in ("claude", "codex", "pi") and len(rest) == 2 and rest[0] == "--":
        return rest[1], flags
    prefix = {"gemini": "--prompt-interactive=", "opencode": "--prompt="}.get(harness)
    if prefix and len(rest) == 1 and rest[0].startswith(prefix):
        return rest[0][len(prefix) :], flags
    return None


def _matches(pattern: list[str], words: list[str]) -> str | None:
    """The session ``words`` continue if they are ``pattern``, else ``None``."""
    if len(words) != len(pattern):
        return None
    session = words[pattern.index(S)]
    if not session or session.startswith("-"):
        return None
    return session if [session if p == S else p for p in pattern] == words else None


def _continuation(harness: str, rest: list[str]) -> list[str] | None:
    """``rest`` with a resume's or fork's words replaced by the plain mode's (noted in
    ``CONTINUED``); ``None`` for a malformed one."""
    for how, (headless, interactive) in CONTINUE.get(harness, {}).items():
        session = _matches(headless, rest)
        if session:
            CONTINUED[:] = [how, session]
            return HEADLESS[harness]
        session = _matches(interactive, rest[: len(interactive)])
        if session and len(rest) > len(interactive):
            CONTINUED[:] = [how, session]
            return rest[len(interactive) :]
    head = rest[: rest.index("--")] if "--" in rest else rest
    if any(word in ("--resume", "--session", "--fork", "--fork-session", "resume", "fork")
           for word in head):  # fmt: skip
        return None
    return rest


def _claude_session_file(session: str) -> str:
    """How many lines the session's file has where Claude Code looks (``none``: no file)."""
    config = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.expanduser("~/.claude")
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in os.getcwd())
    path = os.path.join(config, "projects", slug, f"{session}.jsonl")
    if not os.path.isfile(path):
        return "none"
    with open(path, encoding="utf-8") as file:
        return str(len(file.read().splitlines()))


def _switchboard(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "switchboard", *args], capture_output=True, text=True, check=False
    )
    return done.stdout


def _wait_message(seconds: float) -> None:
    messages = json.loads(_switchboard("inbox", "--json", "--wait", str(seconds)) or "[]")
    print("got: " + messages[0]["text"] if messages else "got nothing", flush=True)


def _ask(harness: str, tool: str, detail: str, wait: float = 60) -> str:
    """Ask a permission as ``harness`` would; return the answer's line."""
    if harness in ACP and sys.argv[2:] == ACP[harness]:
        return _acp_ask(tool, detail)
    if "--permission-prompt-tool" in OPTIONS:
        answer = _ask_mcp(tool, detail)
        if answer["behavior"] == "allow":
            return "answer allow"
        return f"answer deny: {answer.get('message', '')}"
    if harness == "cmd":
        from switchboard.daemon.client import Client  # noqa: PLC0415

        home = os.environ["SWITCHBOARD_HOME"]
        with Client.open(os.path.join(home, "daemon.sock")) as client:
            params = {"agent": os.environ["SWITCHBOARD_AGENT"], "tool": tool, "detail": detail,
                      "wait": wait}  # fmt: skip
            result = client.call("prompt.ask", params, timeout=120)
        return f"answer {result['answer']}" + (f": {result['reason']}" if result["reason"] else "")
    return "answer deny: nobody to ask (headless)"


def _ask_mcp(tool: str, detail: str) -> dict[str, Any]:
    import anyio  # noqa: PLC0415
    from mcp import ClientSession, StdioServerParameters  # noqa: PLC0415
    from mcp.client.stdio import stdio_client  # noqa: PLC0415

    server = json.loads(OPTIONS["--mcp-config"])["mcpServers"]["switchboard"]
    name = OPTIONS["--permission-prompt-tool"].split("__")[-1]
    params = StdioServerParameters(
        command=server["command"], args=server["args"], env={**os.environ, **server["env"]}
    )

    async def call() -> dict[str, Any]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool(
                name, {"tool_name": tool, "input": {"command": detail}, "tool_use_id": "t1"}
            )
            answer: dict[str, Any] = json.loads(result.content[0].text)
            return answer

    return anyio.run(call)


def _run_line(line: str) -> int | None:
    word, _, rest = line.strip().partition(" ")
    if word == "say":
        print(rest, flush=True)
    elif word == "write":
        path, _, text = rest.partition(" ")
        with open(path, "w", encoding="utf-8") as file:
            file.write(text + "\n")
        print(f"wrote {path}", flush=True)
    elif word == "wait-message":
        _wait_message(float(rest or 30))
    elif word == "wait-gate":
        with open(rest, encoding="utf-8") as gate:  # a FIFO: blocks until the test writes
            print(f"gate {gate.read().strip()}", flush=True)
    elif word == "hang":
        signal.pause()  # until a signal ends it
    elif word == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
    elif word == "grandchild":
        child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
        print(f"grandchild {child.pid}", flush=True)
    elif word in ("ask", "ask-brief"):  # ask-brief: the daemon gives up after 1 s
        tool, _, detail = rest.partition(" ")
        wait = 1 if word == "ask-brief" else 60
        print(_ask(HARNESS[0], tool, detail, wait), flush=True)
    elif word == "read-lines":
        print("reading", flush=True)
        for got in sys.stdin:
            print(f"typed: {got.rstrip()}", flush=True)
            if got.strip() == "quit":
                break
    elif word == "exit":
        return int(rest)
    else:
        print(f"line: {line}", flush=True)
    return None


HARNESS: list[str] = []


def main() -> int:
    harness, args = sys.argv[1], sys.argv[2:]
    HARNESS.append(harness)
    if harness in ACP and args == ACP[harness]:
        return _acp_serve()
    found = _task_of(harness, args) if harness in HEADLESS else (" ".join(args), [])
    if found is None:
        print(f"bad contract for {harness}: {json.dumps(args)}", flush=True)
        return EXIT_BAD_CONTRACT
    return _run_task(*found)


def _run_task(task: str, flags: list[str]) -> int:
    print(f"TASK {json.dumps(task)}", flush=True)
    print(f"FLAGS {json.dumps(flags)}", flush=True)
    print(f"AGENT {os.environ.get('SWITCHBOARD_AGENT', '')}", flush=True)
    print(f"PROMPT_TOOL {OPTIONS.get('--permission-prompt-tool', '')}", flush=True)
    print(f"CONTINUES {' '.join(CONTINUED)}", flush=True)
    if HARNESS[0] == "claude" and CONTINUED:  # the session file a real one would resume
        print(f"SESSION_FILE {_claude_session_file(CONTINUED[1])}", flush=True)
    for line in task.splitlines():
        status = _run_line(line)
        if status is not None:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
