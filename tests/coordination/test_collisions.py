"""Edit-collision notices key files by repository identity, not by the folder's name, across
two devices: two clones in differently named folders collide, two unrelated repositories both
called ``app`` do not, and clones with no remote collide by their shared root commit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cluster import Device
from coord_cluster import cluster, notices, wait_agent, wait_notice

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **_GIT_ENV}, check=True, capture_output=True
    )


def _repo(path: Path, message: str) -> Path:
    """A new repository at ``path`` with one commit of its own."""
    (path / "src").mkdir(parents=True)
    (path / "src" / "app.py").write_text(f"# {message}\n")
    _git("init", "-q", cwd=path)
    _git("add", ".", cwd=path)
    _git("commit", "-q", "-m", message, cwd=path)
    return path


def _clone(source: Path, path: Path) -> Path:
    _git("clone", "-q", str(source), str(path), cwd=source.parent)
    return path


def _edit(device: Device, agent: str, cwd: Path, path: str) -> None:
    """Record an edit of ``path`` (inside ``cwd``) as the absolute path a harness reports."""
    device.call("event.record", agent=agent, type="file_edited", data={"path": str(cwd / path)})


def _conflicts(holder: Device, name: str, path: str) -> list[object]:
    return [n for n in notices(holder, name, holder, "edit_conflict") if n["data"]["path"] == path]


def test_collisions_follow_the_repository_not_the_folder(tmp_path: Path) -> None:
    with cluster(tmp_path, "laptop", "server") as ((a, b), _):
        upstream = _repo(tmp_path / "upstream", "the shared history")
        proj = _clone(upstream, tmp_path / "laptop-src" / "proj")
        proj_b = _clone(upstream, tmp_path / "server-src" / "proj-b")
        app_here = _repo(tmp_path / "laptop-src" / "app", "one app")
        app_there = _repo(tmp_path / "server-src" / "app", "another app")
        # Clones without a remote: one history, so one repository (by its root commit).
        lone = shutil.copytree(proj, tmp_path / "laptop-src" / "lone")
        lone_b = shutil.copytree(proj_b, tmp_path / "server-src" / "lone-b")
        for path in (lone, lone_b):
            _git("remote", "remove", "origin", cwd=path)
            (path / "docs").mkdir()

        a.call("register", agent="ed", cwd=str(app_here))
        b.call("register", agent="fay", cwd=str(app_there))
        a.call("register", agent="gil", cwd=str(proj))
        b.call("register", agent="hal", cwd=str(proj_b))
        wait_agent(a, f"hal:{b.short}")
        wait_agent(b, f"gil:{a.short}")

        # Unrelated repositories with one folder name: no collision.
        _edit(a, "ed", app_here, "src/app.py")
        _edit(b, "fay", app_there, "src/app.py")
        # Two clones in differently named folders: a collision, named by the path inside.
        _edit(a, "gil", proj, "src/app.py")
        _edit(b, "hal", proj_b, "src/app.py")
        wait_notice(a, "gil", a, "edit_conflict", f"hal:{b.short} is editing src/app.py")
        wait_notice(b, "hal", b, "edit_conflict", f"gil:{a.short} is editing src/app.py")
        # Clones with no remote collide too, by their root commit; the path as given relative.
        a.call("register", agent="ivy", cwd=str(lone))
        b.call("register", agent="jo", cwd=str(lone_b))
        wait_agent(a, f"jo:{b.short}")
        a.call("event.record", agent="ivy", type="file_edited", data={"path": "docs/notes.md"})
        b.call("event.record", agent="jo", type="file_edited", data={"path": "docs/notes.md"})
        wait_notice(a, "ivy", a, "edit_conflict", f"jo:{b.short} is editing docs/notes.md")
        wait_notice(b, "jo", b, "edit_conflict", f"ivy:{a.short} is editing docs/notes.md")
        # The app edits came first in each device's log and rounds handle edits in order: had
        # they collided, ed and fay would have been told by now.
        assert _conflicts(a, "ed", "src/app.py") == []
        assert _conflicts(b, "fay", "src/app.py") == []
        keys = {
            e["data"]["repo"]
            for e in a.call("events", type="file_edited", all_rooms=True)
            if e["data"]["repo_path"] == "src/app.py"
        }
        assert len(keys) == 3, keys  # the upstream's clones, and each app of its own
