"""The ``riverrun`` command line: demo, dev, worker, start and runs.

``main()`` is the console script (``riverrun = "riverrun.cli:main"``) and what
``python -m riverrun`` runs. Exit codes are :class:`ExitCode`; docs/cli.md describes every
command.
"""

from ._app import cli as cli, main as main
from ._exit import ExitCode as ExitCode

__all__ = ["ExitCode", "cli", "main"]
