"""Plan files read and checked, and the scheduling rule (``switchboard.tasks.plan``): pure."""

from __future__ import annotations

import pytest

from switchboard.errors import UserError
from switchboard.events import PlanStep
from switchboard.tasks.plan import (
    StepState,
    find_cycle,
    is_finished,
    is_remote_dir,
    local_dir,
    next_steps,
    order,
    outcome,
    parse,
)

THREE = """\
name = "ship"

[[task]]
name = "build"
prompt = "build it"
harness = "cmd"

[[task]]
name = "test"
prompt = "test it"
device = "vps"
dir = "~/src/app"
depends_on = ["build"]

[[task]]
name = "deploy"
prompt = "deploy it"
depends_on = ["test", "build"]
"""


def _steps(*pairs: tuple[str, list[str]]) -> list[PlanStep]:
    return [PlanStep(name=n, prompt="p", depends_on=d) for n, d in pairs]


def test_plans_parse_reads_every_field_and_defaults() -> None:
    """A valid plan keeps the file's order, its fields, and fills harness and device."""
    plan = parse(THREE)
    assert plan.name == "ship"
    assert [s.name for s in plan.steps] == ["build", "test", "deploy"]
    build, test, deploy = plan.steps
    assert (build.harness, build.device, build.dir, build.depends_on) == ("cmd", "", "", [])
    assert (test.harness, test.device, test.dir) == ("claude", "vps", "~/src/app")
    assert deploy.depends_on == ["test", "build"]


def test_plans_parse_default_name_from_the_file() -> None:
    """Without ``name`` the plan is called as the caller says (the file's stem)."""
    assert parse('[[task]]\nname = "a"\nprompt = "x"\n', default_name="nightly").name == "nightly"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[task]\nname=1", "not valid TOML"),
        ('name = "x"\n', "no tasks"),
        ('[[tasks]]\nname = "a"\nprompt = "x"\n', "unknown key 'tasks' (tasks are [[task]]"),
        ('[[task]]\nprompt = "x"\n', "task 1 (line 1): missing 'name'"),
        ('[[task]]\nname = "a"\n', "task 'a' (line 1): missing 'prompt'"),
        ('[[task]]\nname = "a"\nprompt = "  "\n', "prompt: is empty"),
        ('[[task]]\nname = "a b"\nprompt = "x"\n', "task 1 (line 1).name"),
        ('[[task]]\nname = "a"\nprompt = "x"\ncolour = 1\n', "unknown key 'colour'"),
        ('[[task]]\nname = "a"\nprompt = "x"\nharness = "vim"\n', "unknown harness 'vim'"),
        ('[[task]]\nname = "a"\nprompt = "x"\ndepends_on = [1]\n', "a list of task names"),
        ('[[task]]\nname = "a"\nprompt = "x"\ndevice = 3\n', "task 'a' (line 1).device"),
        (
            '[[task]]\nname = "a"\nprompt = "x"\n\n[[task]]\nname = "a"\nprompt = "y"\n',
            "task 'a' (line 5): duplicate name, also task 'a' (line 1)",
        ),
        (
            '[[task]]\nname = "a"\nprompt = "x"\ndepends_on = ["nope"]\n',
            "task 'a' (line 1): depends on unknown task 'nope'",
        ),
        ('[[task]]\nname = "a"\nprompt = "x"\ndepends_on = ["a"]\n', "depends on itself"),
    ],
)
def test_plans_parse_bad_plans_name_the_task_and_line(text: str, expected: str) -> None:
    """Each mistake is one UserError naming the task, its line and what is wrong."""
    with pytest.raises(UserError) as caught:
        parse(text)
    assert expected in str(caught.value)
    assert str(caught.value).startswith("plan: ")


def test_plans_parse_cycle_is_named() -> None:
    """A cycle is refused with its path."""
    text = "".join(
        f'[[task]]\nname = "{n}"\nprompt = "x"\ndepends_on = ["{d}"]\n'
        for n, d in (("a", "c"), ("b", "a"), ("c", "b"))
    )
    with pytest.raises(UserError, match=r"cycle: a -> c -> b -> a"):
        parse(text)
    assert find_cycle(_steps(("a", []), ("b", ["a"]))) == []


def test_plans_order_puts_dependencies_first() -> None:
    """``order`` lists each step after its dependencies, else in the file's order."""
    steps = _steps(("deploy", ["test"]), ("test", ["build"]), ("build", []), ("docs", []))
    assert order(steps) == ["build", "docs", "test", "deploy"]


def test_plans_next_steps_start_skip_and_finish() -> None:
    """Roots start; a dependant of a completed step starts; a failure skips the rest down."""
    steps = _steps(("a", []), ("b", ["a"]), ("c", ["b"]), ("d", []))
    assert next_steps(steps, {}) == (["a", "d"], [])
    states = {"a": StepState("completed"), "d": StepState("running")}
    assert next_steps(steps, states) == (["b"], [])
    states["b"] = StepState("failed", "exit status 3")
    start, skip = next_steps(steps, states)
    assert start == [] and skip == [("c", "depends on b, which failed (exit status 3)")]
    states["c"] = StepState("skipped", skip[0][1])
    assert not is_finished(steps, states)
    states["d"] = StepState("completed")
    assert is_finished(steps, states) and outcome(steps, states) == "failed"


def test_plans_next_steps_refused_and_skipped_chains() -> None:
    """A refused dependency skips its dependant; a skipped one skips the next."""
    steps = _steps(("a", []), ("b", ["a"]), ("c", ["b"]))
    states = {"a": StepState("refused", "may not spawn here")}
    assert next_steps(steps, states)[1] == [("b", "depends on a, which was refused "
                                                  "(may not spawn here)")]  # fmt: skip
    states["b"] = StepState("skipped", "whatever")
    assert next_steps(steps, states)[1] == [("c", "depends on b, which was skipped")]


def test_plans_outcome_completed_only_when_all_completed() -> None:
    """A plan completes when every step did."""
    steps = _steps(("a", []), ("b", ["a"]))
    states = {"a": StepState("completed"), "b": StepState("completed")}
    assert outcome(steps, states) == "completed"


def test_plans_local_dir_relative_to_the_plan_file() -> None:
    """A relative directory is the plan file's folder's; ``~`` and absolute ones stay."""
    assert local_dir("sub", "/srv/plans") == "/srv/plans/sub"
    assert local_dir("../x", "/srv/plans") == "/srv/x"
    assert local_dir("~/x", "/srv") == "~/x" and local_dir("/abs", "/srv") == "/abs"
    assert local_dir("", "/srv") == "" and local_dir("sub", "") == "sub"


def test_plans_is_remote_dir() -> None:
    """Only an absolute path or one under ``~/`` names a directory on another device."""
    assert is_remote_dir("/srv") and is_remote_dir("~") and is_remote_dir("~/src")
    assert not is_remote_dir("src") and not is_remote_dir("~bob/x") and not is_remote_dir(".")
