"""What a harness will ask before our entries work: trust, approval, sign-in.

Writing the config is not always enough. Each harness keeps its own gate, read here from its
own files (and, for Codex, asked through its app-server):

- **Codex** (0.171) runs no non-managed hook until the user trusted it, and ignores a
  project's ``.codex/`` until the project is trusted (harnesses/codexapp.py).
  ``install codex --trust`` records both; ``trust_codex`` does it.
- **Gemini CLI** keeps every MCP server off in a folder it does not trust (folder trust is on
  by default: ``security.folderTrust.enabled``; rules in ``~/.gemini/trustedFolders.json``),
  and asks for an auth type at its first start (``security.auth.selectedType``, or one of
  the environment variables it reads: ``GEMINI_API_KEY`` and others).
- **Claude Code** shows a project-level server (``.mcp.json``) as pending approval until the
  user approves it (``enabledMcpjsonServers`` / ``enableAllProjectMcpServers`` in its
  settings or in the project's entry of ``~/.claude.json``; ``disabledMcpjsonServers``
  rejects it).

``install`` prints each ``Ask`` after its report; ``doctor`` turns each into a check.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from switchboard.errors import UserError
from switchboard.harnesses import codexapp, jsonc
from switchboard.harnesses.configfiles import SERVER_KEY
from switchboard.harnesses.setup import Setup

# The environment variables from which Gemini CLI 0.61 takes an auth type (getAuthTypeFromEnv).
GEMINI_AUTH_ENV: Final = (
    "GEMINI_API_KEY",
    "GOOGLE_GENAI_USE_GCA",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GEMINI_BASE_URL",
    "GEMINI_CLI_USE_COMPUTE_ADC",
)


@dataclass(frozen=True)
class Ask:
    """One step a harness still needs from the user.

    ``status`` is ``"fail"`` when our entries do not work until it is done, ``"warn"`` when
    the harness will ask for it itself (a dialog at its next start) or we could not tell.
    """

    harness: str
    status: str
    what: str
    fix: str


def _where(setup: Setup) -> Path:
    return setup.project if setup.project is not None else Path.cwd()


def _flag(setup: Setup) -> str:
    return " --project" if setup.project is not None else ""


def _json(path: Path) -> Any:
    try:
        return jsonc.parse(path.read_text(encoding="utf-8")).value
    except (OSError, jsonc.JsoncError):
        return None


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


# -- Codex ---------------------------------------------------------------------------------------


def _codex_hooks_file(setup: Setup) -> Path:
    return setup.at((".codex", "hooks.json"), (".codex", "hooks.json"))


def _codex_env(setup: Setup) -> dict[str, str]:
    # Our user-level files are under ~/.codex: Codex must read (and write trust) there.
    return {**os.environ, "HOME": str(setup.home), "CODEX_HOME": str(setup.user(".codex"))}


def _codex_listing(setup: Setup, server: codexapp.AppServer) -> list[codexapp.Hook]:
    file = _codex_hooks_file(setup)
    paths = {str(file), str(file.resolve())}
    return [h for h in codexapp.our_hooks(server, _where(setup)) if h.source_path in paths]


def _trusted(hook: codexapp.Hook) -> bool:
    return hook.trust in ("trusted", "managed")


def codex_asks(setup: Setup) -> list[Ask]:
    """Whether Codex will run the hooks we installed at ``setup``'s level."""
    from switchboard.harnesses.codex import trust_keys  # noqa: PLC0415 - tomlkit, only here

    file = _codex_hooks_file(setup)
    if not trust_keys(file):
        return []
    fix = f"switchboard install codex{_flag(setup)} --trust"
    codex = shutil.which("codex", path=setup.path or None)
    if codex is None:
        what = "cannot tell whether Codex trusts the Switchboard hooks: codex is not on PATH"
        return [Ask("codex", "warn", what, f"once codex is installed: {fix}")]
    try:
        with codexapp.AppServer(codex, cwd=_where(setup), env=_codex_env(setup)) as server:
            hooks = _codex_listing(setup, server)
    except UserError as exc:
        return [Ask("codex", "warn", f"cannot ask Codex about its hook trust: {exc}", fix)]
    if setup.project is not None and not hooks:
        root = codexapp.project_root(setup.project)
        what = f"Codex ignores {setup.project / '.codex'} (hooks and MCP server) until the "
        what += f"project {root} is trusted"
        return [Ask("codex", "fail", what, f"{fix} (or start codex in {root} and trust it)")]
    # Codex lists events as ``postToolUse``; hooks.json (and people) say ``PostToolUse``.
    untrusted = sorted({h.event[:1].upper() + h.event[1:] for h in hooks if not _trusted(h)})
    if not untrusted:
        return []
    what = "Codex runs none of these Switchboard hooks until they are trusted: "
    what += f"{', '.join(untrusted)} (in {file})"
    return [Ask("codex", "fail", what, f"{fix} (or run codex, type /hooks and trust them)")]


def trust_codex(setup: Setup) -> list[str]:
    """Trust our Codex hooks at ``setup``'s level (and the project, with ``--project``).

    Returns:
        One line per thing done, for the install report.

    Raises:
        UserError: codex is not on PATH, or its app-server failed or did not confirm.
    """
    from switchboard.harnesses.codex import trust_project as codex_trust_project  # noqa: PLC0415

    codex = shutil.which("codex", path=setup.path or None)
    if codex is None:
        raise UserError("codex is not on PATH: install Codex, then switchboard install --trust")
    done = []
    with codexapp.AppServer(codex, cwd=_where(setup), env=_codex_env(setup)) as server:
        if setup.project is not None and not _codex_listing(setup, server):
            root = codexapp.project_root(setup.project)
            codex_trust_project(setup.user(".codex", "config.toml"), root)
            done.append(f'the project {root} (projects."{root}".trust_level = "trusted")')
        hooks = _codex_listing(setup, server)
        pending = [h for h in hooks if not _trusted(h)]
        codexapp.trust_hooks(server, pending)
        left = [h for h in _codex_listing(setup, server) if not _trusted(h)]
    if not hooks or left:
        raise UserError(f"Codex did not confirm the trust of {len(left) or 'any'} of our hooks")
    if pending:
        line = f"{len(pending)} hooks, as Codex's /hooks review would (hooks.state in "
        done.append(line + f"{setup.user('.codex', 'config.toml')}; uninstall removes it)")
    return done


# -- Gemini CLI ----------------------------------------------------------------------------------


def gemini_folder_trust(setup: Setup, env: Mapping[str, str], folder: Path) -> bool | None:
    """Gemini CLI's verdict on ``folder``: trusted, distrusted, or ``None`` (it will ask)."""
    if env.get("GEMINI_RESTRICTED_MODE") == "true" or env.get("GEMINI_CLI_TRUST_WORKSPACE") == (
        "false"
    ):
        return False
    if env.get("GEMINI_CLI_TRUST_WORKSPACE") == "true":
        return True
    settings = _json(setup.user(".gemini", "settings.json"))
    if _get(settings, "security", "folderTrust", "enabled") is False:
        return True
    found = env.get("GEMINI_CLI_TRUSTED_FOLDERS_PATH")
    rules = _json(Path(found) if found else setup.user(".gemini", "trustedFolders.json"))
    target = os.path.realpath(folder)
    best, verdict = -1, None
    for rule, level in (rules if isinstance(rules, dict) else {}).items():
        base = os.path.dirname(rule) if level == "TRUST_PARENT" else rule
        base = os.path.realpath(base)
        inside = target == base or target.startswith(base.rstrip("/") + "/")
        if inside and len(rule) > best:
            best, verdict = len(rule), level
    if verdict == "DO_NOT_TRUST":
        return False
    return True if verdict in ("TRUST_FOLDER", "TRUST_PARENT") else None


def gemini_asks(setup: Setup, env: Mapping[str, str]) -> list[Ask]:
    """Folder trust (MCP servers are off in untrusted folders) and the auth type."""
    asks = []
    folder = _where(setup)
    trusted = gemini_folder_trust(setup, env, folder)
    level = "fail" if setup.project is not None else "warn"
    if trusted is False:
        what = f"Gemini CLI distrusts {folder}: it keeps every MCP server (switchboard too) off "
        what += "there and ignores the folder's .gemini/"
        fix = f"run gemini in {folder}, type /permissions and choose Trust folder"
        asks.append(Ask("gemini", "fail", what, fix))
    elif trusted is None:
        what = f"Gemini CLI has not been told to trust {folder}: until it is, MCP servers "
        what += "(switchboard too) stay off there and the folder's .gemini/ is ignored"
        fix = f"run gemini in {folder} and choose Trust folder when it asks"
        asks.append(Ask("gemini", level, what, fix))
    selected = [
        _get(_json(path), "security", "auth", "selectedType")
        for path in (setup.user(".gemini", "settings.json"), folder / ".gemini" / "settings.json")
    ]
    if not any(selected) and not any(env.get(name) for name in GEMINI_AUTH_ENV):
        what = "Gemini CLI has no auth type selected: it asks at its first start"
        fix = "run gemini once and choose how to sign in (or set GEMINI_API_KEY)"
        asks.append(Ask("gemini", "warn", what, fix))
    return asks


# -- Claude Code ---------------------------------------------------------------------------------


def claude_approval(setup: Setup, project: Path) -> str:
    """Claude Code's state of the project's ``switchboard`` server: approved, rejected, pending.

    As Claude Code 2.1 decides it: the user's settings approve anywhere; the project's own
    sources (its entry in ``~/.claude.json``, ``.claude/settings.json``,
    ``.claude/settings.local.json``) count only once the folder's trust dialog was accepted.
    """
    state = _json(setup.user(".claude.json"))
    projects = _get(state, "projects") or {}
    entry = projects.get(str(project)) if isinstance(projects, dict) else None
    if SERVER_KEY in (_get(entry, "disabledMcpjsonServers") or []):
        return "rejected"
    trusted = any(
        _get(projects, str(folder), "hasTrustDialogAccepted") is True
        for folder in (project, *project.parents)
    )
    sources = [_json(setup.user(".claude", "settings.json"))]
    if trusted:
        sources += [
            entry,
            _json(project / ".claude" / "settings.json"),
            _json(project / ".claude" / "settings.local.json"),
        ]
    for source in sources:
        if _get(source, "enableAllProjectMcpServers") is True:
            return "approved"
        if SERVER_KEY in (_get(source, "enabledMcpjsonServers") or []):
            return "approved"
    return "pending"


def claude_asks(setup: Setup) -> list[Ask]:
    """A project-level server waits for the user's approval in Claude Code."""
    if setup.project is None or SERVER_KEY not in (
        _get(_json(setup.project / ".mcp.json"), "mcpServers") or {}
    ):
        return []
    state = claude_approval(setup, setup.project)
    user = setup.user(".claude", "settings.json")
    if state == "rejected":
        what = f"Claude Code has the project's switchboard MCP server turned off ({setup.project})"
        fix = f"run claude in {setup.project}, type /mcp, select switchboard and enable it"
        return [Ask("claude", "fail", what, fix)]
    if state == "pending":
        what = "Claude Code shows the project's switchboard MCP server as pending approval "
        what += "until you approve it"
        fix = f"run claude in {setup.project} and choose 'Use this MCP server' (or add "
        fix += f'"enabledMcpjsonServers": ["switchboard"] to {user})'
        return [Ask("claude", "warn", what, fix)]
    return []


ASKS: Final[dict[str, Callable[[Setup, Mapping[str, str]], list[Ask]]]] = {
    "codex": lambda setup, env: codex_asks(setup),
    "gemini": gemini_asks,
    "claude": lambda setup, env: claude_asks(setup),
}


def has_asks(harness: str) -> bool:
    """Whether we know what ``harness`` may ask (``asks_for`` can say more than ``[]``)."""
    return harness in ASKS


def asks_for(harness: str, setup: Setup, env: Mapping[str, str] | None = None) -> list[Ask]:
    """What ``harness`` still needs at ``setup``'s level (``[]``: nothing we know of)."""
    check = ASKS.get(harness)
    return check(setup, os.environ if env is None else env) if check else []
