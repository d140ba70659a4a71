"""`python -m engram`, the same as `engram`."""

from engram.cli import main

main()
