"""The spawn policy: who may spawn what where, read from TOML, with path tricks refused."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from switchboard.errors import UserError
from switchboard.tasks import policy, policyfile
from switchboard.tasks.policy import Allowed, Policy, Refused, SpawnRequest

LAPTOP = "a" * 26
VPS = "b" * 26


def request(
    harness: str = "claude",
    directory: str = "",
    *,
    device: str = LAPTOP,
    local: bool = False,
    text: str = "fix the tests",
) -> SpawnRequest:
    return SpawnRequest(device=device, local=local, harness=harness, directory=directory,
                        text=text)  # fmt: skip


def decide(rules: Policy, req: SpawnRequest, home: Path, *, running: int = 0, mine: int = 0) -> Any:
    return policy.decide(rules, req, running=running, running_of_device=mine, home=str(home))


def parse(text: str) -> Policy:
    return policy.parse(tomllib.loads(text))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A home with ~/src/api (allowed), ~/secret (not) and tricks pointing out of src."""
    (tmp_path / "src" / "api").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (tmp_path / "src" / "api" / "out").symlink_to(tmp_path / "secret")
    (tmp_path / "src" / "api" / "in").symlink_to(tmp_path / "src" / "api")
    (tmp_path / "srcfake").mkdir()
    return tmp_path


def laptop_policy(home: Path, extra: str = "") -> Policy:
    return parse(f'[devices.{LAPTOP}]\nharnesses = ["claude"]\ndirs = ["~/src"]\n{extra}')


def test_policy_refuses_remote_devices_by_default(tree: Path) -> None:
    """With no policy file at all, another device may not spawn anything."""
    found = decide(Policy(), request(directory=str(tree / "src")), tree)
    assert isinstance(found, Refused)
    assert "may not spawn" in found.reason


def test_policy_allows_local_user_by_default_under_home(tree: Path) -> None:
    """This device's own user may spawn a built-in harness anywhere under their home."""
    found = decide(Policy(), request(directory=str(tree / "secret"), local=True), tree)
    assert isinstance(found, Allowed)
    assert found.directory == os.path.realpath(tree / "secret")
    outside = decide(Policy(), request(directory="/", local=True), tree)
    assert isinstance(outside, Refused)


def test_policy_local_can_be_turned_off(tree: Path) -> None:
    """``[local] allowed = false`` refuses even this device's user."""
    rules = parse("[local]\nallowed = false\n")
    assert isinstance(decide(rules, request(local=True), tree), Refused)


def test_policy_allows_one_device_and_not_another(tree: Path) -> None:
    """A device with a table may spawn its harnesses in its directories; others may not."""
    rules = laptop_policy(tree)
    allowed = decide(rules, request(directory=str(tree / "src" / "api")), tree)
    assert isinstance(allowed, Allowed)
    assert allowed.directory == str((tree / "src" / "api").resolve())
    other = decide(rules, request(directory=str(tree / "src"), device=VPS), tree)
    assert isinstance(other, Refused)


def test_policy_refuses_a_harness_not_granted(tree: Path) -> None:
    """A harness outside the device's list is refused, naming what is allowed."""
    found = decide(laptop_policy(tree), request("codex", str(tree / "src")), tree)
    assert isinstance(found, Refused)
    assert "codex" in found.reason and "claude" in found.reason


@pytest.mark.parametrize(
    "path",
    [
        "src/api/../../secret",  # .. out of the allowed tree
        "src/api/out",  # a symlink leading out
        "src/api/out/",
        "src/api/in/../../secret",  # a symlink back in, then .. out
        "srcfake",  # a sibling sharing the allowed directory's prefix
        "secret",
    ],
)
def test_policy_refuses_directory_escapes(tree: Path, path: str) -> None:
    """``..``, symlinks and prefix tricks that lead out of the allowed directories are refused."""
    found = decide(laptop_policy(tree), request(directory=str(tree / path)), tree)
    assert isinstance(found, Refused)
    assert "outside the allowed" in found.reason


@pytest.mark.parametrize("path", ["/etc", "/", "~root", "~root/src", "src/api", "./src", ""])
def test_policy_refuses_absolute_and_relative_paths_outside(tree: Path, path: str) -> None:
    """An absolute path outside, ``~user`` and relative paths are refused ("" takes the
    grant's first directory, which here is allowed, so it alone is accepted)."""
    found = decide(laptop_policy(tree), request(directory=path), tree)
    if path == "":
        assert isinstance(found, Allowed)
        assert found.directory == str((tree / "src").resolve())
    else:
        assert isinstance(found, Refused), path


def test_policy_accepts_tilde_and_inner_dotdot(tree: Path) -> None:
    """``~/...`` is this device's home; a ``..`` that stays inside is fine."""
    rules = laptop_policy(tree)
    assert isinstance(decide(rules, request(directory="~/src/api"), tree), Allowed)
    inner = decide(rules, request(directory=str(tree / "src/api/../api")), tree)
    assert isinstance(inner, Allowed)
    assert isinstance(decide(rules, request(directory=str(tree / "src/api/in")), tree), Allowed)


def test_policy_refuses_missing_directory_and_control_characters(tree: Path) -> None:
    """A directory that does not exist, or a path with a newline, is refused."""
    rules = laptop_policy(tree)
    missing = decide(rules, request(directory=str(tree / "src" / "nope")), tree)
    assert isinstance(missing, Refused) and "does not exist" in missing.reason
    control = decide(rules, request(directory=str(tree / "src") + "\n/etc"), tree)
    assert isinstance(control, Refused)


def test_policy_allowed_dir_through_symlink_is_resolved(tree: Path) -> None:
    """An allowed directory that is itself a symlink allows its target."""
    (tree / "link").symlink_to(tree / "src")
    rules = parse(f'[devices.{LAPTOP}]\nharnesses = ["claude"]\ndirs = ["{tree}/link"]\n')
    assert isinstance(decide(rules, request(directory=str(tree / "src" / "api")), tree), Allowed)


@pytest.mark.parametrize(
    "text",
    [
        "$(touch /tmp/pwned)",
        "`rm -rf ~`; echo done",
        "a && b || c | d > e < f",
        "--dangerously-skip-permissions",
        "'\"\\\n\t*?[]{}~!#",
    ],
)
def test_policy_accepts_shell_metacharacters_as_plain_text(tree: Path, text: str) -> None:
    """Task text is data: shell metacharacters neither refuse nor change a request."""
    found = decide(laptop_policy(tree), request(directory="~/src", text=text), tree)
    assert isinstance(found, Allowed)


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "empty"), ("  \n", "empty"), ("a\x00b", "NUL"), ("x" * 70_000, "exceeds")],
)
def test_policy_refuses_bad_task_text(tree: Path, text: str, why: str) -> None:
    """An empty text, a NUL or an oversized text is refused with the reason."""
    found = decide(laptop_policy(tree), request(directory="~/src", text=text), tree)
    assert isinstance(found, Refused)
    assert why in found.reason


def test_policy_limits_running_tasks(tree: Path) -> None:
    """The device-wide and the per-device limits refuse a task beyond them."""
    rules = laptop_policy(tree, "max_tasks = 1\n")
    req = request(directory="~/src")
    assert isinstance(decide(rules, req, tree, running=3, mine=0), Allowed)
    assert "its limit" in decide(rules, req, tree, running=1, mine=1).reason
    assert "max_tasks" in decide(rules, req, tree, running=4, mine=0).reason


def test_policy_runtime_is_the_smaller_limit(tree: Path) -> None:
    """A device's max_runtime applies within the device-wide one."""
    rules = parse(f"max_runtime = 100\n[devices.{LAPTOP}]\nharnesses = ['claude']\n"
                  "dirs = ['~/src']\nmax_runtime = 30\n")  # fmt: skip
    found = decide(rules, request(directory="~/src"), tree)
    assert isinstance(found, Allowed)
    assert found.max_runtime == 30


def test_policy_cmd_needs_a_template(tree: Path) -> None:
    """``cmd`` is refused until the policy gives its command."""
    rules = parse(f'[devices.{LAPTOP}]\nharnesses = ["cmd"]\ndirs = ["~/src"]\n')
    assert "no command" in decide(rules, request("cmd", "~/src"), tree).reason
    rules = parse(
        f'[devices.{LAPTOP}]\nharnesses = ["cmd"]\ndirs = ["~/src"]\n'
        '[harnesses.cmd]\nargs = ["python3", "run.py", "{task}"]\ntask = "arg"\n'
    )
    found = decide(rules, request("cmd", "~/src"), tree)
    assert isinstance(found, Allowed)
    assert found.rule.args == ("python3", "run.py", "{task}")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("colour = 1", "unknown key"),
        (f"[devices.{LAPTOP}]\nharness = ['claude']", "unknown key"),
        (f"[devices.{LAPTOP}]\nharnesses = ['bash']", "unknown harness"),
        (f"[devices.{LAPTOP}]\ndirs = '/tmp'", "list of strings"),
        ("max_tasks = 0", "above 0"),
        ("max_tasks = 1.5", "whole number"),
        ("[local]\nallowed = 'yes'", "true or false"),
        ("[harnesses.cmd]\nargs = ['sh', '-c', 'echo {task}']", "placeholder inside"),
        ("[harnesses.cmd]\nargs = ['{task}']", "must not be a placeholder"),
        ("[harnesses.claude]\nargs = ['claude', '--dangerously-skip-permissions']", "skips"),
        ("[harnesses.claude]\nenv = {SWITCHBOARD_HOME = '/x'}", "set by switchboard"),
        ("[harnesses.claude]\ntask = 'shell'", '"stdin" or "arg"'),
    ],
)
def test_policy_refuses_bad_files_naming_the_key(text: str, what: str) -> None:
    """A policy with an unknown key or a bad value is refused, naming it."""
    with pytest.raises(UserError, match=what):
        parse(text)


def test_policy_skip_permissions_only_when_asked() -> None:
    """A template may name a skip flag only with skip_permissions = true."""
    rules = parse(
        "[harnesses.claude]\nargs = ['claude', '-p', '--dangerously-skip-permissions']\n"
        "skip_permissions = true\n"
    )
    assert rules.rule_for("claude").skip_permissions


def test_policy_may_answer(tree: Path) -> None:
    """A device answers prompts of the tasks it started, and of the agents it is given."""
    rules = laptop_policy(tree, "answer = ['rev*']\n")
    assert policy.may_answer(rules, LAPTOP, local=False, agent="luna", requested_by=LAPTOP)
    assert not policy.may_answer(rules, LAPTOP, local=False, agent="luna", requested_by=VPS)
    assert policy.may_answer(rules, LAPTOP, local=False, agent="review", requested_by=None)
    assert not policy.may_answer(rules, VPS, local=False, agent="review", requested_by=VPS)
    assert policy.may_answer(rules, "", local=True, agent="anyone", requested_by=None)
    off = laptop_policy(tree, "answer_own = false\n")
    assert not policy.may_answer(off, LAPTOP, local=False, agent="luna", requested_by=LAPTOP)


def test_policy_load_refuses_a_file_others_may_write(tmp_path: Path) -> None:
    """A policy file writable by group or others is not trusted."""
    path = tmp_path / "spawn.toml"
    path.write_text("max_tasks = 2\n")
    path.chmod(0o600)
    assert policy.load(path).max_tasks == 2
    path.chmod(0o620)
    with pytest.raises(UserError, match="writable by others"):
        policy.load(path)
    assert policy.load(tmp_path / "missing.toml") == Policy()


def test_policyfile_allow_and_deny_keep_comments(tree: Path) -> None:
    """Edits add to a device's grant, keep the file's comments, and deny removes it."""
    text = "# my notes\nmax_tasks = 3\n"
    with pytest.raises(UserError, match="--dir"):
        policyfile.allow(text, LAPTOP, local=False)
    text = policyfile.allow(text, LAPTOP, local=False, name="laptop", dirs=["/srv/a"])
    text = policyfile.allow(text, LAPTOP, local=False, harnesses=["pi"], dirs=["/srv/b"])
    assert "# my notes" in text
    rules = parse(text)
    grant = rules.devices[LAPTOP]
    assert grant.name == "laptop"
    assert grant.harnesses == (*policy.REMOTE_DEFAULT_HARNESSES, "pi")
    assert grant.dirs == ("/srv/a", "/srv/b")
    text, changed = policyfile.deny(text, LAPTOP, local=False)
    assert changed and LAPTOP not in parse(text).devices
    assert policyfile.deny(text, LAPTOP, local=False)[1] is False


def test_policyfile_local_allow_and_deny(tree: Path) -> None:
    """``local`` edits the [local] table: deny turns it off, allow back on with additions."""
    text, changed = policyfile.deny("", "", local=True)
    assert changed and not parse(text).local.allowed
    text = policyfile.allow(text, "", local=True, harnesses=["cmd"], dirs=["/srv"])
    local = parse(text).local
    assert local.allowed and "cmd" in local.harnesses and "claude" in local.harnesses
    assert local.dirs == ("~", "/srv")


def test_policyfile_json_names_env_keys_only() -> None:
    """``spawn policy --json`` shows which environment a harness gets, never the values."""
    rules = parse("[harnesses.claude]\nenv = {ANTHROPIC_API_KEY = 'sk-secret'}\n")
    shown = policyfile.policy_json(rules, {})
    assert shown["harnesses"]["claude"]["env"] == ["ANTHROPIC_API_KEY"]
    assert "sk-secret" not in repr(shown)
