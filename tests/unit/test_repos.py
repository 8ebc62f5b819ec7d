"""Repository identity: URL spellings agree, paths resolve inside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard import repos


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:acme/api.git",
        "https://github.com/acme/api",
        "https://GitHub.com/acme/api.git/",
        "ssh://git@github.com:22/acme/api.git",
        "https://user@github.com/acme/api.git",
    ],
)
def test_repos_one_remote_has_one_key_whatever_its_spelling(url: str) -> None:
    assert repos.normalise_url(url) == "github.com/acme/api"


def test_repos_different_remotes_differ() -> None:
    assert repos.normalise_url("git@github.com:acme/api.git") != repos.normalise_url(
        "git@github.com:acme/app.git"
    )


def test_repos_locate_reads_the_origin_and_the_path_inside(tmp_path: Path) -> None:
    top = tmp_path / "proj-b"
    (top / ".git").mkdir(parents=True)
    (top / ".git" / "config").write_text('[remote "origin"]\n\turl = git@example.org:t/proj.git\n')
    (top / "src").mkdir()
    assert repos.locate(str(top / "src" / "a.py"), "/elsewhere") == (
        "example.org/t/proj",
        "src/a.py",
    )
    assert repos.locate("src/a.py", str(top)) == ("example.org/t/proj", "src/a.py")
    assert repos.repository(top / "src") == (top, "example.org/t/proj")


def test_repos_outside_a_repository_the_folder_name_is_the_key(tmp_path: Path) -> None:
    cwd = tmp_path / "plain"
    cwd.mkdir()
    assert repos.locate(str(cwd / "x" / "y.py"), str(cwd)) == ("plain", "x/y.py")
    assert repos.locate("../up.py", str(cwd)) == ("plain", "../up.py")
    assert repos.repository(cwd) == (None, "")


def test_repos_a_worktree_shares_its_repository_config(tmp_path: Path) -> None:
    main = tmp_path / "main"
    (main / ".git" / "worktrees" / "w").mkdir(parents=True)
    (main / ".git" / "config").write_text('[remote "origin"]\n\turl = https://h.example/a/b\n')
    (main / ".git" / "worktrees" / "w" / "commondir").write_text("../..\n")
    tree = tmp_path / "w"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {main / '.git' / 'worktrees' / 'w'}\n")
    assert repos.repository(tree) == (tree, "h.example/a/b")
