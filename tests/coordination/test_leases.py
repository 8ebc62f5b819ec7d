"""File leases across two devices, and the git pre-commit hook in real git repositories."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import PY, Device, timeout
from coord_cluster import cluster, wait_agent, wait_until

from switchboard.errors import Forbidden, NotFound, UserError

ORIGIN = "https://git.example/team/proj.git"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Device, Device]]:
    """Two devices: luna on the first, nova on the second."""
    with cluster(tmp_path_factory.mktemp("leases"), "laptop", "server") as ((a, b), _):
        a.call("register", agent="luna")
        b.call("register", agent="nova")
        wait_agent(a, f"nova:{b.short}")
        wait_agent(b, f"luna:{a.short}")
        yield a, b


def _acquired(device: Device, ref: str) -> None:
    device.wait_events(1, type="lease_acquired", where=f"origin || '/' || seq = '{ref}'")


def test_leases_exclusive_conflict_is_refused_naming_the_holder(
    pair: tuple[Device, Device],
) -> None:
    """An acquire on another device that overlaps an exclusive lease is refused, naming the
    holder and its reason; a different repository or path is no conflict."""
    a, b = pair
    held = a.call(
        "lease.acquire", agent="luna", paths=["src/api/*.py"], repo="r1", exclusive=True,
        reason="refactoring the api",
    )["leases"][0]  # fmt: skip
    _acquired(b, held["ref"])
    with pytest.raises(Forbidden, match=rf"src/api/app.py is leased exclusively by luna:{a.short}"
                       r" \(refactoring the api\)"):  # fmt: skip
        b.call("lease.acquire", agent="nova", paths=["src/api/app.py"], repo="r1")
    with pytest.raises(Forbidden, match="refactoring the api"):
        b.call("lease.acquire", agent="nova", paths=["src/**"], repo="r1", exclusive=True)
    assert b.call("lease.acquire", agent="nova", paths=["src/api/app.py"], repo="r2")["leases"]
    assert b.call("lease.acquire", agent="nova", paths=["docs/x.md"], repo="r1")["leases"]
    listed = {(x["holder"], x["path"]) for x in b.call("lease.list", repo="r1")}
    assert listed == {(f"luna:{a.short}", "src/api/*.py"), (f"nova:{b.short}", "docs/x.md")}
    # Released, it is free.
    a.call("lease.release", agent="luna", repo="r1")
    b.wait_events(1, type="lease_released", agent=f"luna:{a.short}")
    assert b.call("lease.acquire", agent="nova", paths=["src/api/app.py"], repo="r1")["leases"]
    b.call("lease.release", agent="nova", repo="r1")
    with pytest.raises(NotFound, match="no lease held"):
        b.call("lease.release", agent="nova", repo="r1")


def test_leases_shared_overlap_is_granted_with_a_warning(pair: tuple[Device, Device]) -> None:
    """Two shared leases on one path are both granted; the second acquire warns of the first."""
    a, b = pair
    held = a.call("lease.acquire", agent="luna", paths=["README.md"], repo="r3", reason="typos")
    _acquired(b, held["leases"][0]["ref"])
    second = b.call("lease.acquire", agent="nova", paths=["README.md"], repo="r3")
    assert second["leases"]
    assert second["warnings"] == [
        f"README.md is leased by luna:{a.short} (typos) until {held['leases'][0]['expires']}"
    ]


def test_leases_expire(pair: tuple[Device, Device]) -> None:
    """A lease expires at its time on every device; then others may take the path."""
    a, b = pair
    # Long enough to outlast its replication to B and B's refused acquire on a busy machine.
    held = a.call("lease.acquire", agent="luna", paths=["Makefile"], repo="r4",
                  ttl=timeout(5), exclusive=True)  # fmt: skip
    _acquired(b, held["leases"][0]["ref"])
    with pytest.raises(Forbidden):
        b.call("lease.acquire", agent="nova", paths=["Makefile"], repo="r4")

    def taken() -> bool:
        try:
            b.call("lease.acquire", agent="nova", paths=["Makefile"], repo="r4", exclusive=True)
        except Forbidden:
            return False
        return True

    wait_until(taken, 20, "the expired lease frees Makefile")
    states = {(x["holder"], x["state"]) for x in a.call("lease.list", repo="r4", all=True)}
    assert (f"luna:{a.short}", "expired") in states


def test_leases_bad_input_is_refused(pair: tuple[Device, Device]) -> None:
    """No paths, or a ttl out of range, is a clear error."""
    a, _ = pair
    with pytest.raises(UserError, match="no path"):
        a.call("lease.acquire", agent="luna", paths=[], repo="r5")
    with pytest.raises(UserError, match="ttl"):
        a.call("lease.acquire", agent="luna", paths=["x"], repo="r5", ttl=0)


def _git(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env=env, check=False,
        timeout=timeout(60),
    )  # fmt: skip


def _clone(path: Path) -> Path:
    path.mkdir(parents=True)
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.email", "t@example.com"),
        ("config", "user.name", "t"),
        ("remote", "add", "origin", ORIGIN),
    ):
        assert _git(path, *args).returncode == 0
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('hi')\n")
    (path / "notes.txt").write_text("notes\n")
    return path


def _sb(device: Device, cwd: Path, *args: str, agent: str) -> subprocess.CompletedProcess[str]:
    env = {**device.env, "SWITCHBOARD_AGENT": agent}
    return subprocess.run(
        [PY, "-m", "switchboard", *args], cwd=cwd, env=env, capture_output=True, text=True,
        check=False, timeout=timeout(60),
    )  # fmt: skip


def test_leases_git_hook_blocks_a_commit_and_the_override_passes(
    pair: tuple[Device, Device], tmp_path: Path
) -> None:
    """In real git clones on two devices, the pre-commit hook blocks committing a path another
    agent leases exclusively, names the holder, and lets the override through."""
    a, b = pair
    mine, theirs = _clone(tmp_path / "laptop" / "proj"), _clone(tmp_path / "server" / "proj")
    done = _sb(a, mine / "src", "lease", "acquire", "app.py", "--exclusive", "--reason",
               "rewriting app", "--ttl", "10m", agent="luna")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "leased src/app.py  exclusive" in done.stdout
    b.wait_events(1, type="lease_acquired", where="data LIKE '%src/app.py%'")
    listed = _sb(b, theirs, "lease", "list", "--json", agent="nova")
    # The repository is named by its origin, spelled one way (switchboard.repos).
    assert '"repo": "git.example/team/proj"' in listed.stdout

    assert _sb(b, theirs, "lease", "git-hook", "install", agent="nova").returncode == 0
    env = {**os.environ, **b.env, "SWITCHBOARD_AGENT": "nova"}
    assert _git(theirs, "add", "notes.txt").returncode == 0
    free = _git(theirs, "commit", "-q", "-m", "notes", env=env)
    assert free.returncode == 0, free.stderr
    assert _git(theirs, "add", "src/app.py").returncode == 0
    blocked = _git(theirs, "commit", "-q", "-m", "app", env=env)
    assert blocked.returncode != 0
    assert f"src/app.py is leased exclusively by luna:{a.short} (rewriting app)" in blocked.stderr
    assert "SWITCHBOARD_LEASE_OVERRIDE=1" in blocked.stderr
    assert _git(theirs, "log", "--oneline").stdout.count("\n") == 1
    passed = _git(
        theirs, "commit", "-q", "-m", "app", env={**env, "SWITCHBOARD_LEASE_OVERRIDE": "1"}
    )
    assert passed.returncode == 0, passed.stderr
    assert _git(theirs, "log", "--oneline").stdout.count("\n") == 2
    # The holder itself commits freely.
    (mine / "src" / "app.py").write_text("print('new')\n")
    assert _git(mine, "add", "src/app.py").returncode == 0
    assert _sb(a, mine, "lease", "git-hook", "install", agent="luna").returncode == 0
    own = _git(
        mine, "commit", "-q", "-m", "mine", env={**os.environ, **a.env, "SWITCHBOARD_AGENT": "luna"}
    )
    assert own.returncode == 0, own.stderr
    # A foreign pre-commit hook is not replaced without --force.
    (theirs / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    refused = _sb(b, theirs, "lease", "git-hook", "install", agent="nova")
    assert refused.returncode == 1
    assert "--force" in refused.stderr
    assert _sb(b, theirs, "lease", "release", agent="nova").returncode == 1  # holds none
    assert _sb(a, mine, "lease", "release", agent="luna").returncode == 0
