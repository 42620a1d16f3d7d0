"""`python -m mtmcs` is the `mtmcs` command."""

from mtmcs.cli import main

main()
