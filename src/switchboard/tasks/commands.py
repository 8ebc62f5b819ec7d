"""The harness command table: how each harness is started for a task, headless or in a terminal.

Theory of operation
-------------------
A task's program is built from an argument *template*, never from a shell string. The task
text reaches the program in one of two ways, and in no other:

- ``stdin``: written to the program's standard input, which is then closed (every harness
  reads a piped prompt in its non-interactive mode); nothing about the text is on the command
  line, so a text such as ``--dangerously-skip-permissions`` is only ever a prompt;
- ``arg``: as exactly one argument, where the template has an element ``{task}``, or as the
  value of one option element ``--opt={task}`` (the ``=`` form, so a text starting with ``-``
  cannot be read as an option).

``{dir}`` and ``{name}`` (the task's directory and its agent's name) may stand as whole
elements too, and ``{session}`` (the harness session a resume or fork continues: ``resume``,
``fork``; checked by ``check_session``, never an option-looking word). A placeholder
anywhere else in an element is refused when the template is read, so no text is ever spliced
into a bigger argument.

A harness's flag that skips its own permission prompts (``SKIP_FLAGS``) is added only when
the receiving device's policy sets ``skip_permissions`` for that harness, and a template that
names such a flag without that setting is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from switchboard.errors import UserError

#: How a task's text reaches its program.
TASK_VIA: Final = ("stdin", "arg")
_PLACEHOLDERS: Final = ("{task}", "{dir}", "{name}", "{session}")
_SESSION: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
#: The ways a task continues a harness session.
CONTINUES: Final = ("resume", "fork")
_OPTION_FORM: Final = re.compile(r"^--?[A-Za-z][A-Za-z0-9_-]*=\{task\}$")


@dataclass(frozen=True)
class HarnessCommand:
    """How one harness runs a task.

    Attributes:
        name: the harness (``claude``).
        headless: argv of its non-interactive mode.
        interactive: argv of its interactive mode (``--terminal``), the task as an argument.
        task_via: how the headless mode takes the task (``stdin`` or ``arg``).
        skip_flags: the flags that skip its own permission prompts (never added by default).
        prompts: how a permission prompt can be answered from elsewhere: ``tool`` (a
            permission-prompt tool of our MCP server), ``acp`` (the harness runs as an ACP
            agent, ``acp`` its argv, and our ACP client answers its permission requests:
            harnesses/acp.py), ``none`` (the harness has no prompts, or headless mode
            answers every one itself).
        acp: argv of its ACP agent mode (with ``prompts="acp"``).
        resume: headless and interactive argv continuing session ``{session}`` (the
            harness's own resume); ``()``: it has none.
        fork: likewise, continuing a copy of the session as a new one; ``()``: none.
    """

    name: str
    headless: tuple[str, ...]
    interactive: tuple[str, ...]
    task_via: str = "stdin"
    skip_flags: tuple[str, ...] = ()
    prompts: str = "none"
    acp: tuple[str, ...] = ()
    resume: tuple[tuple[str, ...], tuple[str, ...]] | tuple[()] = ()
    fork: tuple[tuple[str, ...], tuple[str, ...]] | tuple[()] = ()

    def continued(self, how: str, *, terminal: bool) -> tuple[str, ...]:
        """The argv continuing a session (``how``: ``resume`` or ``fork``), ``()``: none."""
        pair = self.resume if how == "resume" else self.fork
        return pair[1 if terminal else 0] if pair else ()


#: The built-in harnesses. ``cmd`` has no built-in program: the policy names one.
BUILTIN: Final[dict[str, HarnessCommand]] = {
    command.name: command
    for command in (
        # claude -p reads the prompt from stdin; in print mode prompts go to the host or to
        # --permission-prompt-tool, else are denied.
        HarnessCommand(
            "claude", ("claude", "-p"), ("claude", "--", "{task}"),
            skip_flags=("--dangerously-skip-permissions",), prompts="tool",
            resume=(("claude", "-p", "--resume", "{session}"),
                    ("claude", "--resume", "{session}", "--", "{task}")),
            fork=(("claude", "-p", "--resume", "{session}", "--fork-session"),
                  ("claude", "--resume", "{session}", "--fork-session", "--", "{task}")),
        ),
        # codex exec reads the prompt from stdin when it is "-"; exec mode never asks.
        HarnessCommand(
            "codex", ("codex", "exec", "-"), ("codex", "--", "{task}"),
            skip_flags=("--dangerously-bypass-approvals-and-sandbox", "--full-auto"),
            resume=(("codex", "exec", "resume", "{session}", "-"),
                    ("codex", "resume", "{session}", "--", "{task}")),
            fork=(("codex", "exec", "fork", "{session}", "-"),
                  ("codex", "fork", "{session}", "--", "{task}")),
        ),
        # gemini runs headless when stdin is piped, failing what would ask (its BeforeTool
        # hook can only deny); as an ACP agent it asks its client.
        HarnessCommand(
            "gemini", ("gemini",), ("gemini", "--prompt-interactive={task}"),
            skip_flags=("--yolo", "-y", "--approval-mode=yolo"), prompts="acp",
            acp=("gemini", "--acp"),
            # --resume takes a session's UUID (or "latest", or an index); it has no fork.
            resume=(("gemini", "--resume", "{session}"),
                    ("gemini", "--resume", "{session}", "--prompt-interactive={task}")),
        ),
        # opencode run reads piped stdin; headless it rejects what would ask, unless --auto;
        # as an ACP agent it asks its client.
        HarnessCommand(
            "opencode", ("opencode", "run"), ("opencode", "--prompt={task}"),
            skip_flags=("--auto", "--dangerously-skip-permissions", "--yolo"), prompts="acp",
            acp=("opencode", "acp"),
            resume=(("opencode", "run", "--session", "{session}"),
                    ("opencode", "--session", "{session}", "--prompt={task}")),
            fork=(("opencode", "run", "--session", "{session}", "--fork"),
                  ("opencode", "--session", "{session}", "--fork", "--prompt={task}")),
        ),
        # pi -p reads piped stdin; pi has no permission prompts at all.
        HarnessCommand(
            "pi", ("pi", "-p"), ("pi", "--", "{task}"),
            resume=(("pi", "-p", "--session", "{session}"),
                    ("pi", "--session", "{session}", "--", "{task}")),
            fork=(("pi", "-p", "--fork", "{session}"),
                  ("pi", "--fork", "{session}", "--", "{task}")),
        ),
    )
}  # fmt: skip

#: Every harness name a policy or a request may use.
HARNESSES: Final = (*BUILTIN, "cmd")


def check_template(args: list[str] | tuple[str, ...], harness: str, *, skip: bool) -> None:
    """Refuse a template that splices text into an argument or skips prompts unasked.

    Raises:
        UserError: naming the bad element.
    """
    if not args:
        raise UserError(f"harness {harness}: its argument template is empty")
    for arg in args:
        if not isinstance(arg, str):
            raise UserError(f"harness {harness}: template elements must be strings")
        if arg in _PLACEHOLDERS or _OPTION_FORM.match(arg):
            continue
        if "{" in arg and any(p in arg for p in _PLACEHOLDERS):
            raise UserError(
                f"harness {harness}: placeholder inside {arg[:40]!r}; a placeholder must be a "
                "whole argument (or --option={task})"
            )
    if args[0] in _PLACEHOLDERS or _OPTION_FORM.match(args[0]):
        raise UserError(f"harness {harness}: the program must not be a placeholder")
    flags = BUILTIN[harness].skip_flags if harness in BUILTIN else ()
    if not skip and any(arg in flags for arg in args):
        raise UserError(
            f"harness {harness}: the template skips permission prompts; set "
            "skip_permissions = true for it if that is meant"
        )


def build_argv(
    template: tuple[str, ...] | list[str],
    *,
    task: str,
    task_via: str,
    directory: str,
    name: str,
    session: str = "",
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The program's argv from a checked template: placeholders replaced, ``extra`` inserted
    after the program (the skip flag, when policy asks for it).

    With ``task_via="arg"`` and no ``{task}`` in the template, the text becomes the last
    argument, after ``--``.
    """
    values = {"{task}": task, "{dir}": directory, "{name}": name, "{session}": session}
    argv = [template[0], *extra]
    has_task = False
    for arg in template[1:]:
        if arg in values:
            has_task |= arg == "{task}"
            if arg != "{task}" or task_via == "arg":
                argv.append(values[arg])
        elif _OPTION_FORM.match(arg):
            has_task = True
            if task_via == "arg":
                argv.append(arg.removesuffix("{task}") + task)
        else:
            argv.append(arg)
    if task_via == "arg" and not has_task:
        argv += ["--", task]
    return argv


def stdin_of(task: str, task_via: str) -> bytes | None:
    """What the program reads on stdin: the task text (``stdin``), else nothing."""
    return task.encode() if task_via == "stdin" else None


def check_session(session: str) -> str:
    """A harness session id as a resume may pass it (one word, never an option).

    Raises:
        UserError: for anything else.
    """
    if not _SESSION.match(session):
        raise UserError(f"not a harness session id: {session[:40]!r}")
    return session
