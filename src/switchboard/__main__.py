"""``python -m switchboard`` runs the command line."""

from switchboard.cli.main import run

run()
