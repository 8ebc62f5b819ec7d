"""The command line without a daemon: parsing, help, version, usage errors, exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import command_paths

from switchboard import __version__, config
from switchboard.cli import parser as cli_parser
from switchboard.cli.main import main, split_send_text

ALL_COMMANDS = [path for path, _, _ in command_paths(cli_parser.build_parser())]


def test_cli_parser_has_every_command_of_the_contract() -> None:
    """Every command of DESIGN.md §5 this part owns is in the parser."""
    names = {" ".join(path) for path in ALL_COMMANDS}
    assert names >= {
        "init",
        "status",
        "daemon run",
        "daemon start",
        "daemon stop",
        "daemon status",
        "relay serve",
        "group create",
        "invite",
        "join",
        "link on",
        "link off",
        "link status",
        "agents",
        "send",
        "inbox",
        "events",
    }


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=" ".join)
def test_cli_help_works_for_every_command(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """``COMMAND --help`` prints the command's usage and exits 0."""
    assert main([*path, "--help"]) == 0
    assert f"usage: switchboard {' '.join(path)}" in capsys.readouterr().out


def test_cli_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints ``switchboard X.Y.Z`` and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"switchboard {__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nope"],
        ["daemon"],
        ["daemon", "reload"],
        ["link"],
        ["status", "--bogus"],
        ["join"],
        ["send"],
        ["send", "@nova"],
        ["send", "@nova", "--"],
        ["send", "@nova", "--", "   "],
        ["send", "hello", "there"],
        ["send", "--", "hello"],
        ["events", "--last", "0"],
        ["events", "--last", "many"],
        ["events", "--wait", "-1"],
        ["inbox", "--wait", "nan"],
        ["inbox", "--wait", "inf"],
        ["relay", "serve", "--port", "70000"],
        ["--as"],
    ],
    ids=lambda argv: " ".join(argv) or "(none)",
)
def test_cli_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad usage exits 2 with argparse's usage message on stderr and nothing on stdout."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: switchboard" in captured.err


@pytest.mark.parametrize(
    ("argv", "head", "text"),
    [
        (["send", "@a", "--", "hi", "--json"], ["send", "@a"], ["hi", "--json"]),
        (
            ["--as", "luna", "send", "@a", "#r", "--", "x"],
            ["--as", "luna", "send", "@a", "#r"],
            ["x"],
        ),
        (["--home", "send", "send", "@a", "--", "y"], ["--home", "send", "send", "@a"], ["y"]),
        (["send", "@a", "hi"], ["send", "@a", "hi"], None),
        (["join", "--", "-weird"], ["join", "--", "-weird"], None),
        (["--", "send", "@a", "--", "x"], ["--", "send", "@a", "--", "x"], None),
    ],
)
def test_split_send_text_splits_only_send_at_its_dashes(
    argv: list[str], head: list[str], text: list[str] | None
) -> None:
    """The first ``--`` after ``send`` starts the text; other commands keep ``--`` as is."""
    assert split_send_text(argv) == (head, text)


def test_cli_daemon_status_needs_no_daemon(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``daemon status`` reports a stopped daemon with exit 0, and as JSON with --json."""
    assert main(["--home", str(short_tmp), "daemon", "status"]) == 0
    assert "not running" in capsys.readouterr().out
    assert main(["daemon", "status", "--json", "--home", str(short_tmp)]) == 0
    assert '"running": false' in capsys.readouterr().out


def test_cli_daemon_stop_without_daemon_exits_0(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stopping a daemon that does not run is not an error."""
    assert main(["--home", str(short_tmp), "daemon", "stop"]) == 0
    assert capsys.readouterr().out == "no daemon running\n"


def test_cli_reports_a_daemon_that_cannot_start(
    short_tmp: Path, fake_spawn: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    """A command whose daemon cannot start exits 1 with one line on stderr."""
    fake_spawn(script="raise SystemExit(3)")
    assert main(["--home", str(short_tmp), "send", "@nova", "--", "hi"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"switchboard: the daemon exited during start-up; see {short_tmp / 'daemon.log'}\n"
    )


def test_cli_reports_a_bad_config_file_in_one_line(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed config.toml is an error (exit 1), not a traceback."""
    (short_tmp / "config.toml").write_text("offline_timeout = = 3\n")
    assert main(["--home", str(short_tmp), "agents"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("switchboard: invalid settings:")
    assert err.count("\n") == 1


def test_cli_relay_port_default_matches_config() -> None:
    """The parser's copy of the relay port default agrees with config's."""
    assert cli_parser.DEFAULT_RELAY_PORT == config.DEFAULT_RELAY_PORT
    args = cli_parser.build_parser().parse_args(["relay", "serve"])
    assert (args.host, args.port, args.data) == ("127.0.0.1", config.DEFAULT_RELAY_PORT, None)


def test_cli_global_options_work_before_and_after_the_command() -> None:
    """``--as`` and ``--home`` are accepted on either side of the command name."""
    build = cli_parser.build_parser
    before = build().parse_args(["--as", "luna", "--home", "/h", "agents"])
    after = build().parse_args(["agents", "--as", "luna", "--home", "/h"])
    unset = build().parse_args(["agents"])
    assert (before.as_agent, before.home) == (after.as_agent, after.home) == ("luna", "/h")
    assert not hasattr(unset, "as_agent")
    assert not hasattr(unset, "home")


def _helps(parser: argparse.ArgumentParser, top: str) -> dict[str, str]:
    return {
        " ".join(path): sub.format_help()
        for path, sub, _ in command_paths(parser)
        if path[0] == top
    }


@pytest.mark.parametrize("top", sorted({path[0] for path in ALL_COMMANDS}))
def test_cli_parser_of_one_command_is_that_command_of_the_full_parser(top: str) -> None:
    """``cli.main`` builds only the chosen command's parser (``COMMANDS``): it has the same
    commands, options and help as that command in the parser of every command."""
    assert top in cli_parser.COMMANDS
    full = _helps(cli_parser.build_parser(), top)
    alone = cli_parser.build_parser(top)
    assert _helps(alone, top) == full
    assert len(full) >= 1
