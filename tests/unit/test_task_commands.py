"""The harness command table and the task lifecycle table (both pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from switchboard.errors import UserError
from switchboard.tasks import lifecycle
from switchboard.tasks.commands import (
    BUILTIN,
    CONTINUES,
    build_argv,
    check_session,
    check_template,
    stdin_of,
)
from switchboard.tasks.lifecycle import FINAL, TRANSITIONS, State, outcome, step

NASTY = "--dangerously-skip-permissions; $(rm -rf ~) `id` && echo {task} > /tmp/x"


@pytest.mark.parametrize("harness", sorted(BUILTIN))
def test_commands_headless_keeps_task_off_the_command_line(harness: str) -> None:
    """Every built-in headless command takes the task on stdin; argv holds none of it."""
    command = BUILTIN[harness]
    assert command.task_via == "stdin"
    argv = build_argv(command.headless, task=NASTY, task_via="stdin", directory="/d", name="n")
    assert argv == list(command.headless)
    assert not any(NASTY in arg for arg in argv)
    assert stdin_of(NASTY, "stdin") == NASTY.encode()


@pytest.mark.parametrize("harness", sorted(BUILTIN))
def test_commands_interactive_puts_task_in_one_argument(harness: str) -> None:
    """In a terminal the task is exactly one argument, after ``--`` or as ``--opt=TEXT``."""
    command = BUILTIN[harness]
    argv = build_argv(command.interactive, task=NASTY, task_via="arg", directory="/d", name="n")
    holding = [arg for arg in argv if NASTY in arg]
    assert len(holding) == 1
    assert holding[0] == NASTY or holding[0].endswith("=" + NASTY)
    if holding[0] == NASTY:
        assert argv[argv.index(NASTY) - 1] == "--"


@pytest.mark.parametrize("harness", sorted(BUILTIN))
def test_commands_builtin_never_skips_permissions(harness: str) -> None:
    """No built-in template carries its harness's skip flag."""
    command = BUILTIN[harness]
    for template in (command.headless, command.interactive):
        check_template(template, harness, skip=False)
        assert not set(template) & set(command.skip_flags)


def test_commands_template_placeholders() -> None:
    """``{task}``, ``{dir}`` and ``{name}`` are replaced as whole arguments; without
    ``{task}`` an ``arg`` task goes last, after ``--``."""
    argv = build_argv(["run", "--in", "{dir}", "--as", "{name}", "{task}"], task="a b",
                      task_via="arg", directory="/w", name="nova")  # fmt: skip
    assert argv == ["run", "--in", "/w", "--as", "nova", "a b"]
    assert build_argv(["run"], task="-x", task_via="arg", directory="", name="") == [
        "run", "--", "-x",
    ]  # fmt: skip
    assert build_argv(["run", "{task}"], task="t", task_via="stdin", directory="", name="") == [
        "run"
    ]
    assert build_argv(["run"], task="t", task_via="arg", directory="", name="", extra=("-y",)) == [
        "run", "-y", "--", "t",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "template",
    [[], ["sh", "-c", "do {task}"], ["x", "pre{dir}"], ["{task}", "x"], ["--p={task}"]],
)
def test_commands_check_template_refuses_splicing(template: list[str]) -> None:
    """A placeholder inside a larger argument, or as the program, is refused."""
    with pytest.raises(UserError):
        check_template(template, "cmd", skip=False)


def test_commands_fake_program_gets_the_text_verbatim(tmp_path: Path) -> None:
    """Run for real: a program started from a template receives the task text unchanged."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    marker = tmp_path / "pwned"
    text = f"$(touch {marker}) `touch {marker}`; touch {marker} | cat > {marker}"
    argv = build_argv([sys.executable, "-c", "import sys; print(sys.argv[1])", "{task}"],
                      task=text, task_via="arg", directory="", name="")  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert out == text + "\n"
    assert not marker.exists()


# -- lifecycle -----------------------------------------------------------------------------------


@pytest.mark.parametrize("harness", sorted(BUILTIN))
@pytest.mark.parametrize("how", CONTINUES)
def test_commands_resume_and_fork_pass_the_session_as_one_word(harness: str, how: str) -> None:
    """A resume or fork argv is a checked template: the session one whole argument, the task
    on stdin (headless) or in one argument (interactive), never a skip flag."""
    for terminal in (False, True):
        template = BUILTIN[harness].continued(how, terminal=terminal)
        if not template:
            assert (harness, how) == ("gemini", "fork")  # Gemini CLI has no fork
            continue
        check_template(template, harness, skip=False)
        via = "arg" if terminal else "stdin"
        argv = build_argv(template, task=NASTY, task_via=via, directory="/d", name="n",
                          session="ses_1a-2")  # fmt: skip
        assert argv.count("ses_1a-2") == 1
        assert sum(NASTY in arg for arg in argv) == (1 if terminal else 0)


@pytest.mark.parametrize("session", ["", "-r", "--fork", "a b", "a/b", "x" * 200, "ü"])
def test_commands_check_session_refuses_what_is_not_one_plain_word(session: str) -> None:
    with pytest.raises(UserError, match="not a harness session id"):
        check_session(session)


def test_lifecycle_happy_path() -> None:
    """requested -> accepted -> running <-> blocked -> completed."""
    state = None
    for event, data, expected in [
        ("task_requested", {}, State.REQUESTED),
        ("task_accepted", {}, State.ACCEPTED),
        ("task_started", {}, State.RUNNING),
        ("task_progress", {}, State.RUNNING),
        ("task_blocked", {}, State.BLOCKED),
        ("task_unblocked", {}, State.RUNNING),
        ("task_interrupted", {}, State.RUNNING),
        ("task_ended", {"state": "completed"}, State.COMPLETED),
    ]:
        state = step(state, event, data)
        assert state is expected


@pytest.mark.parametrize("final", sorted(FINAL, key=lambda s: s.value))
def test_lifecycle_final_states_take_nothing(final: State) -> None:
    """No event moves a task out of a final state."""
    for event in ("task_started", "task_blocked", "task_progress", "task_accepted"):
        assert step(final, event, {}) is None
    for end in lifecycle.ENDINGS:
        assert step(final, "task_ended", {"state": end}) is None


def test_lifecycle_refusals_and_bad_steps() -> None:
    """A refused task ends at once; steps out of order are not in the table."""
    assert step(State.REQUESTED, "task_refused", {}) is State.REFUSED
    assert step(None, "task_started", {}) is None
    assert step(State.REQUESTED, "task_started", {}) is None
    assert step(State.ACCEPTED, "task_ended", {"state": "completed"}) is None
    assert step(State.ACCEPTED, "task_ended", {"state": "failed"}) is State.FAILED
    assert step(State.RUNNING, "task_ended", {"state": "exploded"}) is None
    assert step(State.RUNNING, "task_unblocked", {}) is None


def test_lifecycle_every_target_is_a_state_and_every_state_is_reached() -> None:
    """The table reaches every state, and only final states have no way out."""
    reached = set(TRANSITIONS.values())
    assert reached == set(State)
    leaving = {state for state, _ in TRANSITIONS}
    assert {s for s in State if s not in leaving} == set(FINAL)


@pytest.mark.parametrize(
    ("status", "stop", "kill", "expected"),
    [
        (0, False, False, "completed"),
        (3, False, False, "failed"),
        (-15, False, False, "failed"),
        (0, True, False, "stopped"),
        (-9, True, True, "killed"),
        (None, False, False, "lost"),
        (None, True, False, "stopped"),
    ],
)
def test_lifecycle_outcome(status: int | None, stop: bool, kill: bool, expected: str) -> None:
    """How a run that ended is reported, from its exit status and what was asked."""
    assert outcome(status, stop_asked=stop, kill_asked=kill) == expected


def test_lifecycle_docs_hold_the_generated_table() -> None:
    """docs/cli.md holds the transition table generated from TRANSITIONS."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert lifecycle.table_markdown() in docs.read_text()
