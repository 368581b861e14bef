"""The ``riverrun`` command group: global options and the list of commands.

Commands import the runtime lazily, inside their bodies, so that ``riverrun --help`` and
usage errors answer at once.
"""

from __future__ import annotations

from typing import Any

import click

from ._demo_command import demo
from ._dev import dev
from ._exit import ExitCode
from ._runs import runs
from ._settings import DEFAULT_CONNECT_TIMEOUT, Settings, connection_options, json_option
from ._start import start
from ._worker import worker

__all__ = ["cli"]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit codes: 0 ok, 1 workflow or operation failed, 2 bad usage or input, "
    "3 not found, 4 NATS unreachable. Docs: docs/cli.md.",
)
@connection_options(envvar=True)
@json_option
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.1, max=60),
    default=DEFAULT_CONNECT_TIMEOUT,
    show_default=True,
    envvar="RIVERRUN_CONNECT_TIMEOUT",
    metavar="SECONDS",
    help="How long to try reaching NATS before giving up (exit code 4).",
)
@click.option(
    "--replicas",
    type=click.Choice(("1", "3", "5")),
    default="1",
    show_default=True,
    envvar="RIVERRUN_REPLICAS",
    help="Replicas of the streams and buckets riverrun creates if missing: 3 on a cluster "
    "(env RIVERRUN_REPLICAS).",
)
@click.version_option(package_name="riverrun", prog_name="riverrun")
@click.pass_context
def cli(ctx: click.Context, connect_timeout: float, replicas: str) -> None:
    """riverrun: durable, event-sourced workflows on NATS JetStream.

    New here? Run 'riverrun demo'.
    """
    settings = ctx.ensure_object(Settings)
    settings.connect_timeout = connect_timeout
    settings.replicas = int(replicas)


for _command in (demo, dev, runs, start, worker):
    cli.add_command(_command)


def main(argv: list[str] | None = None, **extra: Any) -> None:
    """Run the ``riverrun`` command line (the console script's entry point)."""
    try:
        cli.main(args=argv, prog_name="riverrun", **extra)
    except KeyboardInterrupt:  # pragma: no cover - click handles most of these itself
        raise SystemExit(ExitCode.INTERRUPTED) from None
