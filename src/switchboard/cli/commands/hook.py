"""``hook HARNESS EVENT``: the harness hook entry point (``cli.main`` routes here directly)."""

from __future__ import annotations

TYPE_CHECKING = False  # no typing at run time (mypy takes it as true)
if TYPE_CHECKING:
    import argparse

    from switchboard.config import Settings


def hook(args: argparse.Namespace, settings: Settings) -> int:
    """Run one hook call: payload on stdin, the harness's JSON answer on stdout."""
    from switchboard.harnesses.hook import main  # noqa: PLC0415

    argv = ["--home", str(settings.home)]
    if settings.agent:
        argv += ["--as", settings.agent]
    argv += ["hook", args.harness, args.event]
    if args.wait is not None:
        argv += ["--wait", str(args.wait)]
    return main(argv)
