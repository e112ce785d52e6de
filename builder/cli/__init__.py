"""The ``tfimg`` command line: one thin module per command group, registered explicitly.

:mod:`builder.cli.root` owns the Typer app, the global options and the one place where
errors become exit codes; each command module adds its commands to that app, in the
order ``tfimg --help`` lists them.
"""

# isort: off  (the import order is the order of the commands in --help)
from builder.cli import build, checks, curate, publish, scan, specs  # noqa: F401
from builder.cli.root import app, main

# isort: on

__all__ = ["app", "main"]
