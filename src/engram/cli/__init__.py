"""The `engram` command line: one module per command group, over the public API.

`engram` and `python -m engram` both run `main()`. Only typer and rich load to show
`engram --help`; a command imports what it needs when it runs."""

from engram.cli.app import app, command, main, normalize_argv
from engram.cli.common import opened, reports_errors, state

__all__ = ["app", "command", "main", "normalize_argv", "opened", "reports_errors", "state"]
