"""The ``switchboard`` command: parse, run one command, map errors to exit codes in one place.

Exit status (DESIGN.md §5): 0 ok; 1 error, with one line ``switchboard: <message>`` on stderr;
2 usage error. Ctrl-C ends a watch (``events --follow``/``--wait``, ``inbox --wait``) and a
foreground server (``daemon run``, ``relay serve``) quietly with 0, because that is how they are
meant to end; it interrupts any other command with 130, the shell's convention.

Only the chosen command's module is imported, and the modules on the path of everyday commands
import nothing heavy (no asyncio, msgspec, cryptography or sqlite3). ``hook`` goes to
harnesses/hook.py before anything else is imported; the common shapes of ``agents``, ``send``
and ``inbox`` go to cli/quick.py, which asks the daemon without building a parser (and hands
anything it is not sure of back to the full path here).
"""

from __future__ import annotations

import os
import sys

# Nothing else is imported before ``main`` has seen the command: a hook (every tool call of
# every agent) must not pay for typing, json, enum or the parser. mypy treats any constant named
# TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings

# Exit status of a command interrupted with Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
EXIT_USAGE = 2

# Global options that take a value, so we can find the command name before parsing.
_OPTIONS_WITH_VALUE = frozenset({"--as", "--home"})
_TARGET_PREFIXES = ("@", "#", "+")
# Commands whose text follows ``--`` and is split off before parsing (spawn has sub-commands,
# which would take the text's first word for one).
_SPLIT_AT_DASHES = frozenset({"send", "spawn", "file"})


def _command_name(argv: list[str]) -> int | None:
    """Return the index of the command name in ``argv``, if there is one before any ``--``."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return None
        if word in _OPTIONS_WITH_VALUE:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            return i
    return None


def split_send_text(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split ``send TARGET... -- TEXT`` (and ``spawn ... -- TEXT``) at its ``--``: (arguments
    to parse, text words).

    Only ``send``, ``spawn`` and ``file`` (``file send``'s note) are split; for every other
    command ``--`` keeps its usual meaning. The text is ``None`` when there is no ``--``.
    """
    index = _command_name(argv)
    if index is None or argv[index] not in _SPLIT_AT_DASHES or "--" not in argv[index + 1 :]:
        return argv, None
    dash = argv.index("--", index + 1)
    return argv[:dash], argv[dash + 1 :]


def _is_target(word: str) -> bool:
    # ``+tag`` starts with a letter, so a text such as "+1 agreed" is not taken for a target.
    return word.startswith(_TARGET_PREFIXES) and not (
        word.startswith("+") and not word[1:2].isalpha()
    )


def _stdin_has_data() -> bool:
    """Whether stdin is a pipe or a file (not a terminal, not /dev/null): text may come there."""
    import stat  # noqa: PLC0415

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _finish_send(args: argparse.Namespace, text: list[str] | None) -> None:
    """Set ``args.text`` (and trim ``args.targets``), or fail with a usage error.

    The text comes from the words after ``--`` (or after the targets), else from
    ``--file PATH``, else from stdin (the text ``-``, or none while stdin is a pipe or file):
    then ``args.text`` is ``None`` and ``args.text_source`` names where to read it.
    """
    targets: list[str] = args.targets
    if text is None:
        # No '--': the leading @/#/+ words are the targets and the rest is the text.
        count = 0
        while count < len(targets) and _is_target(targets[count]):
            count += 1
        targets, text = targets[:count], targets[count:]
        if not targets:
            args.command_parser.error(
                "no target: send TARGET... -- TEXT (TARGET is @name, #room, +tag)"
            )
    args.targets = targets
    args.text, args.text_source = " ".join(text), None
    given = bool(args.text.strip())
    if args.file is not None:
        if given:
            args.command_parser.error("give the text or --file PATH, not both")
        args.text, args.text_source = None, args.file
    elif text == ["-"] or (not given and _stdin_has_data()):
        args.text, args.text_source = None, "-"
    elif not given:
        args.command_parser.error("no message text: send TARGET... -- TEXT (or pipe it in)")


def _parse(argv: list[str]) -> argparse.Namespace:
    import argparse  # noqa: PLC0415
    import functools  # noqa: PLC0415
    import gettext  # noqa: PLC0415

    from switchboard.cli.parser import build_parser  # noqa: PLC0415 - only once we parse

    # argparse looks up a translation for each message it prepares, probing the locale files
    # every time: about 150 lookups to build our parser, half its cost. Each text's answer is
    # the same for the life of the process, so it is looked up once.
    argparse._ = functools.cache(gettext.gettext)  # type: ignore[attr-defined]

    argv, text = split_send_text(argv)
    # Only the chosen command's parser is built, unless a help or version option comes before
    # the command (the top-level help lists every command).
    index = _command_name(argv)
    command = argv[index] if index is not None else None
    if {"-h", "--help", "--version"} & set(argv[:index]):
        command = None
    args = build_parser(command).parse_args(argv)
    if args.handler == "messages:send":
        _finish_send(args, text)
    elif args.handler in ("tasks:spawn", "files:send"):
        args.text_words = text
    elif text is not None:
        args.command_parser.error("unexpected '--'")
    return args


def _silence_stdout() -> None:
    # The reader of our output went away (`| head`). Point stdout at /dev/null so the
    # interpreter's final flush does not fail a second time.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None, *, quick: bool = True) -> int:
    """Run one ``switchboard`` command.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).
        quick: take the quick path (cli/quick.py) for the shapes it knows; ``False``: always
            the full parser (the tests compare the two).

    Returns:
        The exit status: 0 ok, 1 error, 2 usage error, 130 interrupted.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    index = _command_name(arguments)
    command = arguments[index] if index is not None else None
    if command == "hook" and not {"-h", "--help"} & set(arguments):
        # Every tool call of every agent runs a hook: skip the parser (harnesses/hook.py).
        from switchboard.harnesses.hook import main as hook_main  # noqa: PLC0415

        return hook_main(arguments)
    if quick and index is not None and command in _QUICK:
        from switchboard.cli import quick as quick_path  # noqa: PLC0415

        try:
            status = quick_path.run(arguments, index)
        except BaseException as exc:  # noqa: BLE001 - mapped in one place; the rest re-raised
            return _failed(exc)
        if status is not None:
            return status
    import importlib  # noqa: PLC0415 - see the imports at the top

    try:
        args = _parse(arguments)
    except SystemExit as exc:  # argparse: --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    module_name, function_name = args.handler.split(":")
    try:
        settings = load_settings(getattr(args, "home", None), getattr(args, "as_agent", None))
        module = importlib.import_module(f"switchboard.cli.commands.{module_name}")
        return int(getattr(module, function_name)(args, settings))
    except BaseException as exc:  # noqa: BLE001 - mapped in one place; the rest re-raised
        return _failed(exc)


# The commands cli/quick.py runs without the parser when it knows their arguments' shape.
_QUICK = frozenset({"agents", "send", "inbox"})


def _failed(exc: BaseException) -> int:
    """The exit status for a command's exception, its line on stderr; re-raise the others.

    This is the one place errors become exit statuses (errors is imported only here, once a
    command failed: the quick path does not pay for enum).
    """
    from switchboard.cli.output import error_line  # noqa: PLC0415
    from switchboard.errors import SwitchboardError  # noqa: PLC0415

    if isinstance(exc, SwitchboardError):
        print(error_line(str(exc) or type(exc).__name__), file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return 0
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        print(error_line(f"{exc.strerror or exc}{where}"), file=sys.stderr)
        return 1
    raise exc


def load_settings(home: str | None, agent: str | None) -> Settings:
    """``config.load_settings`` for ``--home`` and ``--as``; a malformed ``config.toml`` or
    environment variable is a ``SwitchboardError``."""
    from switchboard.config import load_settings as load  # noqa: PLC0415
    from switchboard.errors import SwitchboardError  # noqa: PLC0415

    try:
        return load(home=home, agent=agent)
    except ValueError as exc:  # a malformed config.toml or environment variable
        raise SwitchboardError(f"invalid settings: {exc}") from exc


def run() -> None:
    """Console-script entry point: exit with ``main()``'s status."""
    sys.exit(main())
