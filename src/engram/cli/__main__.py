"""`python -m engram.cli`, the same as `engram`."""

from engram.cli import main

main()
