"""Hook adapters: each harness's hook payload in, a daemon request out; the answer in, its JSON out.

One table per harness maps the harness's event name to a hook *kind* the daemon understands
(``daemon.delivery.HOOK_KINDS``) and says whether the harness's answer to that event can carry
text into the model's context. An event whose answer cannot carry text is recorded but never
delivers (delivering there would mark messages as injected that the model never saw).

Answer shapes (checked against each harness's documentation; see the fixtures in
tests/harness/fixtures/):

- Claude Code and Codex: ``hookSpecificOutput.additionalContext`` (SessionStart,
  UserPromptSubmit, PostToolUse); Stop: ``{"decision": "block", "reason": ...}``. Codex
  validates answers strictly (no unknown keys), so we send exactly those keys.
- Gemini CLI: ``hookSpecificOutput.additionalContext`` (SessionStart, BeforeAgent, AfterTool);
  AfterAgent: ``{"decision": "deny", "reason": ...}`` (retry with the reason as the prompt).
- Antigravity CLI: PreInvocation ``{"injectSteps": [{"ephemeralMessage": ...}]}``; its
  PostToolUse and Stop answers carry no text, so those only record.
- Cursor: postToolUse ``{"additional_context": ...}``; stop ``{"followup_message": ...}``.
- OpenCode and Pi: our own plugin/extension calls us with our own payload and reads
  ``{"context": ...}`` (append to the tool result) or ``{"prompt": ..., "handover": ...}``
  (start a turn), and tells us with ``injected`` / ``inject_failed`` (``{"handover",
  "error"}``) whether the harness took the prompt.

Every delivering call asks the daemon to *hold* what it answers (daemon/inject.py): the hook
settles it once the answer is written to the harness, the plugin once the harness started the
turn with it (``hands_over``).

Imports nothing (``re`` only for a patch, ``typing`` only for the type checker): this runs
inside every hook, whose start-up time every tool call pays.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

# harness -> event -> (kind, delivers?)
EVENTS: Final[dict[str, dict[str, tuple[str, bool]]]] = {
    "claude": {
        "SessionStart": ("session_start", True),
        "UserPromptSubmit": ("prompt", True),
        "PostToolUse": ("tool", True),
        "PostToolUseFailure": ("tool", True),
        "Stop": ("stop", True),
        "PreCompact": ("compact", False),
        "SessionEnd": ("session_end", False),
        "Idle": ("idle_wait", True),
        "PermissionRequest": ("permission", False),
    },
    "codex": {
        "SessionStart": ("session_start", True),
        "UserPromptSubmit": ("prompt", True),
        "PostToolUse": ("tool", True),
        "Stop": ("stop", True),
        "PostCompact": ("compact", False),
        "SessionEnd": ("session_end", False),
        "PermissionRequest": ("permission", False),
    },
    "gemini": {
        "SessionStart": ("session_start", True),
        "BeforeAgent": ("prompt", True),
        "AfterTool": ("tool", True),
        "AfterAgent": ("stop", True),
        "PreCompress": ("compact", False),
        "SessionEnd": ("session_end", False),
    },
    "antigravity": {
        "PreInvocation": ("poll", True),
        "PostToolUse": ("tool", False),
        "Stop": ("stop", False),
    },
    "cursor": {
        "sessionStart": ("session_start", False),
        "beforeSubmitPrompt": ("prompt", False),
        "postToolUse": ("tool", True),
        "afterFileEdit": ("tool", False),
        "stop": ("stop", True),
        "sessionEnd": ("session_end", False),
    },
    "opencode": {
        "session.created": ("session_start", True),
        "chat.message": ("prompt", False),
        "tool.execute.after": ("tool", True),
        "session.idle": ("stop", True),
        "poll": ("poll", True),
        "session.compacted": ("compact", False),
        "session.deleted": ("session_end", False),
        "permission.asked": ("permission", False),
        "permission.replied": ("permission_settled", False),
        "injected": ("injected", False),
        "inject_failed": ("inject_failed", False),
    },
    "pi": {
        "session_start": ("session_start", True),
        "agent_start": ("prompt", False),
        "tool_result": ("tool", True),
        "agent_end": ("stop", True),
        "poll": ("poll", True),
        "session_shutdown": ("session_end", False),
        "injected": ("injected", False),
        "inject_failed": ("inject_failed", False),
    },
}

#: Harnesses whose agents have the switchboard MCP tools (Pi has no MCP by design).
HAS_MCP: Final = frozenset({"claude", "codex", "gemini", "antigravity", "cursor", "opencode"})

_EDIT_TOOLS: Final = frozenset(
    {
        "edit", "write", "multiedit", "notebookedit", "write_file", "replace", "edit_file",
        "create_file", "str_replace_based_edit_tool", "write_to_file", "replace_file_content",
        "multi_replace_file_content", "apply_patch", "patch",
    }
)  # fmt: skip
_SHELL_TOOLS: Final = frozenset(
    {"bash", "shell", "run_shell_command", "exec_command", "local_shell", "run_command", "terminal"}
)
_PATCH_FILE = r"(?m)^\*\*\* (?:Update|Add|Delete) File: (.+)$"
_PATH_KEYS: Final = ("file_path", "filePath", "notebook_path", "path", "absolute_path",
                     "target_file", "TargetFile", "AbsolutePath")  # fmt: skip
_COMMAND_KEYS: Final = ("command", "cmd", "CommandLine", "commandLine")


def _str(value: Any, limit: int = 512) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def session_of(harness: str, payload: dict[str, Any]) -> str:
    """The harness's session (conversation) id in a payload, or ``""``."""
    for key in ("session_id", "conversation_id", "conversationId", "sessionId", "sessionID"):
        if isinstance(payload.get(key), str) and payload[key]:
            return _str(payload[key])
    return ""


def cwd_of(payload: dict[str, Any]) -> str:
    """The working directory in a payload, or ``""``."""
    for key in ("cwd", "workspace_roots", "workspacePaths", "directory"):
        value = payload.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value:
            return value[:4096]
    return ""


def _tool_call(payload: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
    """(tool name, tool input, tool response) across the harnesses' spellings."""
    call = _dict(payload.get("toolCall"))
    name = payload.get("tool_name") or payload.get("tool") or call.get("name") or ""
    args = payload.get("tool_input") or payload.get("args") or call.get("args") or {}
    if isinstance(args, str):
        args = {"input": args}
    response = payload.get("tool_response", payload.get("tool_output", payload.get("output")))
    return _str(name, 128), _dict(args), response


def tool_activity(payload: dict[str, Any]) -> dict[str, Any]:
    """The file edits and command a tool call made: ``{"tool", "files", "command", "exit"}``."""
    name, args, response = _tool_call(payload)
    low = name.lower()
    files: list[str] = [p for p in payload.get("files", []) if isinstance(p, str)][:50]
    if isinstance(payload.get("file_path"), str):
        files.append(payload["file_path"])
    command: str | None = None
    if low.startswith(("mcp__switchboard", "switchboard")):
        return {"tool": name, "files": [], "command": None, "exit": None}
    if low in _EDIT_TOOLS or any(k in args for k in _PATH_KEYS[:3]):
        files += [_str(args[k], 4096) for k in _PATH_KEYS if isinstance(args.get(k), str)][:1]
        patch = args.get("input") or args.get("patch") or ""
        if isinstance(patch, str) and "*** " in patch:
            import re  # noqa: PLC0415 - only for a patch

            files += re.findall(_PATCH_FILE, patch)[:50]
    if low in _SHELL_TOOLS or isinstance(payload.get("command"), str):
        raw = next((args[k] for k in _COMMAND_KEYS if k in args), payload.get("command"))
        if isinstance(raw, list):
            raw = " ".join(str(part) for part in raw)
        command = raw[:2000] if isinstance(raw, str) and raw else None
    return {"tool": name, "files": files, "command": command, "exit": _exit_status(response)}


def _exit_status(response: Any) -> int | None:
    if not isinstance(response, dict):
        return None
    for key in ("exit_code", "exitCode", "returncode", "exit_status", "exitStatus"):
        value = response.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def classify(harness: str, event: str) -> tuple[str, bool] | None:
    """``(kind, delivers)`` for a harness event, or ``None`` for an event we ignore."""
    return EVENTS.get(harness, {}).get(event)


def hands_over(harness: str, kind: str) -> bool:
    """Whether our plugin, not the hook, hands this answer to the harness (a prompt it starts a
    turn with) and so settles the hold itself."""
    return harness in ("opencode", "pi") and kind in ("stop", "poll")


def build_request(
    harness: str, event: str, payload: dict[str, Any], *, record_prompts: bool = False
) -> dict[str, Any] | None:
    """The ``agent.hook`` params for one hook call, or ``None`` for an event we ignore."""
    found = classify(harness, event)
    if found is None:
        return None
    kind, delivers = found
    if harness == "gemini" and kind == "compact" and payload.get("trigger") != "manual":
        # Gemini CLI (0.61) fires PreCompress "auto" at every compression check, before it
        # knows whether it will compress: taken for a compaction, every turn would start a new
        # context and place every unread message in full again (a blocked AfterAgent loops).
        return None
    if harness == "antigravity" and event == "PreInvocation" and payload.get("invocationNum") == 0:
        kind = "prompt"
    request: dict[str, Any] = {
        "harness": harness,
        "kind": kind,
        "session": session_of(harness, payload),
        "cwd": cwd_of(payload),
        "source": _str(
            payload.get("source") or payload.get("reason") or payload.get("trigger"), 32
        ),
        "deliver": delivers,
        "hold": delivers,
        "mcp": harness in HAS_MCP,
    }
    if kind in ("injected", "inject_failed"):
        request.update(
            handover=_str(payload.get("handover"), 64), error=_str(payload.get("error"), 300)
        )
    if kind in ("tool", "permission"):
        request.update(tool_activity(payload))
    if kind == "prompt" and record_prompts:
        prompt = payload.get("prompt") or payload.get("userPrompt")
        request["prompt"] = _str(prompt, 4000) or None
    return request


# Hook kinds that say where the session's transcript is (not every tool call: the daemon keeps
# it per session), and the environment variables that place the harnesses' session roots.
_TRANSCRIPT_KINDS: Final = frozenset({"session_start", "prompt", "stop", "compact"})
_TRANSCRIPT_ENV: Final = ("HOME", "CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_CLI_HOME",
                          "XDG_DATA_HOME", "PI_CODING_AGENT_DIR")  # fmt: skip


def transcript_hint(kind: str, payload: dict[str, Any], environ: Any) -> dict[str, Any]:
    """Where the harness keeps this session's transcript, for the ``agent.hook`` params:
    ``transcript`` (the payload's ``transcript_path``) and ``transcript_env`` (the variables
    of the hook's environment, the harness's, that place its session root). Empty for kinds
    that need not say it."""
    if kind not in _TRANSCRIPT_KINDS:
        return {}
    env = {key: environ[key][:4096] for key in _TRANSCRIPT_ENV if environ.get(key)}
    return {"transcript": _str(payload.get("transcript_path"), 4096), "transcript_env": env}


def _context(event: str, text: str) -> dict[str, Any]:
    return {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}


def render(
    harness: str, event: str, answer: dict[str, Any] | None, intro: str = ""
) -> tuple[dict[str, Any], int, str]:
    """The hook's output for the daemon's ``answer``: ``(stdout JSON, exit status, stderr)``.

    ``answer`` is ``None`` when the daemon could not be asked (down, too slow, bad input): the
    output is then the harness's no-op, so the harness carries on as if we were not there.
    """
    found = classify(harness, event)
    text = str((answer or {}).get("text") or "")
    if found is None or answer is None:
        return {}, 0, ""
    kind, _ = found
    if kind == "permission":
        return permission_answer(harness, event, answer), 0, ""
    if kind == "session_start" and intro:
        text = f"{intro}\n{text}" if text else intro
    if not text:
        return {}, 0, ""
    if kind == "idle_wait":
        return {}, 2, text  # asyncRewake: exit 2 wakes the session with stderr
    if harness in ("claude", "codex", "gemini"):
        if kind == "stop":
            if not answer.get("block"):
                return {}, 0, ""
            decision = "deny" if harness == "gemini" else "block"
            return {"decision": decision, "reason": text}, 0, ""
        return _context(event, text), 0, ""
    if harness == "antigravity":
        return {"injectSteps": [{"ephemeralMessage": text}]}, 0, ""
    if harness == "cursor":
        key = "followup_message" if kind == "stop" else "additional_context"
        return {key: text}, 0, ""
    # opencode, pi: our own plugin reads these.
    if kind == "tool":
        return {"context": text}, 0, ""
    handover = str(answer.get("handover") or "")
    return {"prompt": text, "urgent": bool(answer.get("urgent")), "handover": handover}, 0, ""


def permission_answer(harness: str, event: str, answer: dict[str, Any]) -> dict[str, Any]:
    """A permission hook's output: the decision given from elsewhere, or none (``{}``), so the
    harness asks in its own way (the terminal's prompt; headless: its default, deny).

    Claude Code 2.1 and Codex 0.171 (``PermissionRequest``, the same shape):
    ``hookSpecificOutput.decision`` is ``{"behavior": "allow"}`` or ``{"behavior": "deny",
    "message": ...}``; the message reaches the model. (Codex fails closed on the reserved
    ``interrupt``, ``updatedInput`` and ``updatedPermissions``: never sent.) OpenCode: our
    plugin reads ``{"permission": "allow" | "deny", "message"}`` and replies ``once`` or
    ``reject`` with the message.
    """
    decision = answer.get("answer")
    if decision not in ("allow", "deny"):
        return {}
    message = _str(answer.get("reason"), 500) or "denied through Switchboard"
    if harness in ("opencode", "pi"):  # our own plugin replies to the harness
        return {"permission": decision, "message": message if decision == "deny" else ""}
    verdict: dict[str, Any] = {"behavior": decision}
    if decision == "deny":
        verdict["message"] = message
    return {"hookSpecificOutput": {"hookEventName": event, "decision": verdict}}


def intro(harness: str, address: str) -> str:
    """The line a new session is told about itself (SessionStart)."""
    if harness in HAS_MCP:
        how = "use the switchboard MCP tools (list_agents, send, reply, inbox)"
    else:
        how = "use the shell: switchboard agents, switchboard send @NAME -- TEXT, switchboard inbox"
    return (
        f"You are agent {address} on Switchboard: agents on this and other machines can message "
        f"you, and their messages appear in your context marked as peer data. To talk to them, "
        f"{how}."
    )
