"""OpenCode: MCP in ``opencode.json(c)``, and a plugin (package data) that pushes messages.

The plugin (assets/opencode-plugin.js, OpenCode 1.x plugin API) calls ``switchboard hook
opencode EVENT`` and uses the in-process SDK client: ``tool.execute.after`` appends messages
to the tool output (mid-turn); on ``session.idle`` and on a 5-second poll while idle it
starts a turn with ``client.session.promptAsync`` (idle push). OpenCode 2 runs only plugins
written for its new API; this one is skipped there (MCP tools and tool results still work).

Plugin dependencies. The plugin imports only node's own modules, but OpenCode 1.18 installs
its plugin package (``@opencode-ai/plugin``, with npm) into *every* config directory it reads
(``~/.config/opencode``, each ``.opencode`` from the project up, ``~/.opencode``) and, as soon
as any plugin is configured, waits for those installs before it starts: the first start after
a fresh install took 46 s. It does that for its own config directory whatever we do, so the
user-level plugin sits there (``plugins/switchboard.js``). The project-level plugin is not put
in ``.opencode/`` (which would make OpenCode install into every clone's ``.opencode`` too): it
lives in ``.switchboard/opencode-plugin.js``, named in the project's ``opencode.json``
``plugin`` list. Where a directory OpenCode will wait for is not prepared yet, install says so
and ``install opencode --prepare`` runs OpenCode's own install there now (``prepare``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import Final, TextIO

from switchboard.errors import UserError
from switchboard.harnesses.configfiles import (
    SERVER_KEY,
    Edit,
    Outcome,
    add_item,
    json_edit,
    prune,
    remove_server,
    set_server,
    write_file_edit,
)
from switchboard.harnesses.jsonc import JsonDoc
from switchboard.harnesses.setup import Setup

NAME: Final = "opencode"
TITLE: Final = "OpenCode"
NOTES: Final = "OpenCode: restart it to load the plugin (OpenCode 1.x plugin API)."
SCHEMA: Final = "https://opencode.ai/config.json"
#: The package OpenCode installs into each config directory before it loads plugins.
PLUGIN_PACKAGE: Final = "@opencode-ai/plugin"
#: The project-level plugin, relative to the project (and so to its opencode.json).
PROJECT_PLUGIN: Final = (".switchboard", "opencode-plugin.js")
# Where earlier versions put the project-level plugin; uninstall still takes it out.
_LEGACY_PROJECT_PLUGIN: Final = (".opencode", "plugins", "switchboard.js")
# OpenCode's own files in a config directory it installed its plugin package into.
_DEPENDENCY_FILES: Final = frozenset(
    {".gitignore", "package.json", "package-lock.json", "bun.lock", "node_modules"}
)
# `opencode debug config` loads the config, installs and waits for the plugin dependencies.
PREPARE_TIMEOUT: Final = 600.0


def detect(setup: Setup) -> bool:
    """OpenCode is installed: its config dir exists or ``opencode`` is on PATH."""
    return config_dir(setup).is_dir() or setup.has_executable("opencode")


def config_dir(setup: Setup) -> Path:
    """OpenCode's own config directory (``$XDG_CONFIG_HOME/opencode``)."""
    xdg = os.environ.get("XDG_CONFIG_HOME") if setup.home == Path.home() else None
    return Path(xdg) / "opencode" if xdg else setup.user(".config", "opencode")


def plugin_source(setup: Setup, asset: str = "opencode-plugin.js") -> str:
    """The plugin's source with our command filled in."""
    text = resources.files("switchboard.harnesses").joinpath("assets", asset).read_text()
    return text.replace("__SWITCHBOARD_COMMAND__", json.dumps(setup.argv()))


def _config_path(setup: Setup) -> Path:
    base = setup.project if setup.project is not None else config_dir(setup)
    for name in ("opencode.jsonc", "opencode.json"):
        if (base / name).exists():
            return base / name
    return base / "opencode.json"


def _plugin_spec() -> str:
    return "./" + "/".join(PROJECT_PLUGIN)


def _is_our_spec(item: object) -> bool:
    return isinstance(item, str) and item.endswith("/".join(PROJECT_PLUGIN))


def edits(setup: Setup) -> list[Edit]:
    """The MCP entry (and, for a project, the plugin's name) and the plugin file."""
    config = _config_path(setup)
    server = ["mcp", SERVER_KEY]
    entry = {
        "type": "local",
        "command": setup.argv("mcp"),
        "environment": setup.mcp_env(NAME),
        "enabled": True,
    }
    project = setup.project is not None

    def add(doc: JsonDoc) -> None:
        set_server(doc, server, entry)
        if project:
            add_item(doc, ["plugin"], _plugin_spec(), lambda item: str(_is_our_spec(item)))

    def remove(doc: JsonDoc) -> None:
        remove_server(doc, server)
        node = doc.node(["plugin"])
        if node is not None and isinstance(node.value, list):
            for index in reversed(range(len(node.value))):
                if _is_our_spec(node.value[index]):
                    doc.delete(["plugin", index])
            prune(doc, ["plugin"])

    merged = json_edit(config, add, remove)
    # A file we create starts with the $schema OpenCode would otherwise write into it.
    created = json.dumps({"$schema": SCHEMA}, indent=2) + "\n"
    config_edit = Edit(
        config, lambda old: merged.install(created if old is None else old), merged.uninstall
    )
    if setup.project is None:
        plugin = config_dir(setup) / "plugins" / "switchboard.js"
        return [config_edit, write_file_edit(plugin, plugin_source(setup))]
    plugin = setup.project.joinpath(*PROJECT_PLUGIN)
    legacy = setup.project.joinpath(*_LEGACY_PROJECT_PLUGIN)
    return [
        config_edit,
        write_file_edit(plugin, plugin_source(setup)),
        write_file_edit(legacy, plugin_source(setup), install=False),
    ]


def cleanup(setup: Setup, outcomes: list[Outcome], *, dry_run: bool) -> list[Outcome]:
    """After uninstall: an earlier version's project plugin in ``.opencode/plugins`` made
    OpenCode install its plugin package there; if ``.opencode`` holds nothing else, those
    files (and the directories) exist only because of us and go too."""
    if setup.project is None:
        return []
    legacy = setup.project.joinpath(*_LEGACY_PROJECT_PLUGIN)
    if not any(o.path == legacy and o.action == "removed" for o in outcomes):
        return []
    plugins, folder = legacy.parent, legacy.parent.parent
    if plugins.is_dir() and any(p != legacy for p in plugins.iterdir()):
        return []  # other plugins: the user's folder
    rest = [p for p in folder.iterdir() if p != plugins] if folder.is_dir() else []
    if not all(p.name in _DEPENDENCY_FILES for p in rest):
        names = ", ".join(sorted(p.name for p in rest)[:3])
        note = f"it holds {names}, not ours; OpenCode's dependency files there stay with them"
        return [Outcome(folder, "kept", "", note)]
    if not dry_run:
        for path in rest:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if plugins.is_dir():
            plugins.rmdir()
        folder.rmdir()
    note = f"OpenCode had installed {PLUGIN_PACKAGE} there only for our plugin"
    return [Outcome(folder, "removed", "", note)]


# -- plugin dependencies ------------------------------------------------------------------------


def waited_dirs(setup: Setup) -> list[Path]:
    """The config directories OpenCode installs its plugin package into, and waits for, when it
    starts here: its own, each ``.opencode`` from the project up to the repository root, and
    ``~/.opencode`` (those that exist; its own always)."""
    dirs = [config_dir(setup)]
    start = setup.project or Path.cwd()
    for directory in (start, *start.parents):
        if (directory / ".opencode").is_dir():
            dirs.append(directory / ".opencode")
        if (directory / ".git").exists() or directory == setup.home:
            break
    if setup.user(".opencode").is_dir():
        dirs.append(setup.user(".opencode"))
    return list(dict.fromkeys(dirs))


def is_prepared(directory: Path) -> bool:
    """Whether OpenCode would find its plugin package installed in ``directory`` (its own
    check: ``node_modules`` exists and the lock file names every dependency)."""
    if not (directory / "node_modules").is_dir():
        return False
    try:
        manifest = json.loads((directory / "package.json").read_text(encoding="utf-8"))
        lock = json.loads((directory / "package-lock.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = {PLUGIN_PACKAGE}
    for key in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        wanted |= set((manifest.get(key) or {}) if isinstance(manifest, dict) else {})
    root = ((lock.get("packages") or {}).get("") or {}) if isinstance(lock, dict) else {}
    have: set[str] = set()
    for key in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        have |= set(root.get(key) or {})
    return wanted <= have


def only_dependencies(directory: Path) -> bool:
    """Whether ``directory`` holds nothing but what OpenCode's plugin install put there."""
    try:
        names = {p.name for p in directory.iterdir()}
    except OSError:
        return False
    return bool(names) and names <= _DEPENDENCY_FILES


def advise(setup: Setup, remove: bool) -> str:
    """What to say about plugin dependencies after an install (or uninstall)."""
    if remove:
        kept = [str(d) for d in waited_dirs(setup) if (d / "node_modules").exists()]
        if not kept:
            return ""
        return (
            f"OpenCode: kept its plugin dependencies in {', '.join(kept)}: OpenCode installs "
            f"{PLUGIN_PACKAGE} in each config directory it reads, with or without our plugin."
        )
    missing = [str(d) for d in waited_dirs(setup) if not is_prepared(d)]
    if not missing:
        return ""
    return (
        f"OpenCode: before it loads any plugin, OpenCode installs {PLUGIN_PACKAGE} into "
        f"{', '.join(missing)}, not done yet: its next start waits for that (about a minute "
        f"on a slow network). Run `switchboard install opencode --prepare` to do it now."
    )


def prepare(setup: Setup, out: TextIO) -> list[Path]:
    """Have OpenCode install its plugin dependencies now: run ``opencode debug config`` (which
    loads the config, installs into every directory it waits for, and waits), with a progress
    line on ``out``.

    Returns:
        The directories prepared now (empty: they all were already).

    Raises:
        UserError: ``opencode`` is not on PATH, or it failed.
    """
    opencode = shutil.which("opencode", path=setup.path or None)
    if opencode is None:
        raise UserError("opencode is not on PATH: cannot prepare its plugin dependencies")
    missing = [d for d in waited_dirs(setup) if not is_prepared(d)]
    if not missing:
        print("  prepared  OpenCode's plugin dependencies were in place already", file=out)
        return []
    line = f"  preparing OpenCode's plugin dependencies ({PLUGIN_PACKAGE}) in "
    line += ", ".join(str(d) for d in missing)
    live = out.isatty()
    print(line if live else line + " ...", end="" if live else "\n", file=out, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        [opencode, "debug", "config"],
        cwd=setup.project or setup.home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, errors = _wait(
            proc,
            started,
            lambda s: (
                print(f"\r{line} ... {s:.0f} s", end="", file=out, flush=True) if live else None
            ),
        )
    finally:
        if live:
            print(file=out)
    done = [d for d in missing if is_prepared(d)]
    if proc.returncode != 0 or len(done) < len(missing):
        tail = errors.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise UserError(f"opencode did not install its plugin dependencies: {tail[0][:200]}")
    print(f"  prepared  in {time.monotonic() - started:.1f} s", file=out)
    return done


def _wait(proc: subprocess.Popen[str], started: float, tick: object) -> tuple[str, str]:
    while True:
        try:
            return proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - started
            if elapsed > PREPARE_TIMEOUT:
                proc.kill()
                proc.communicate()
                raise UserError(
                    f"opencode took longer than {PREPARE_TIMEOUT:g} s; stopped it"
                ) from None
            if callable(tick):
                tick(elapsed)
