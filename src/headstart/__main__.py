"""``python -m headstart``: the same command line as the ``headstart`` script."""

from .cli import main

main()
