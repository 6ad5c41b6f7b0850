"""``python -m irra`` runs the command line."""

from irra.cli import run_and_exit

run_and_exit()
