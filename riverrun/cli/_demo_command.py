"""``riverrun demo``: the first command a newcomer runs.

It starts an embedded nats-server in a temporary directory, runs the batch workflow of
:mod:`riverrun.cli._demo` (one batch per run, continue-as-new between runs), shows progress,
then prints the chain of runs and the result. It should take a few seconds.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ._exit import run_command
from ._format import format_duration, print_chain
from ._settings import Settings

if TYPE_CHECKING:
    from riverrun import Client, WorkflowHandle

__all__ = ["demo"]


@click.command()
@click.option("--batches", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the JetStream data here (default: a temporary directory, removed at the end); "
    "'riverrun dev --data-dir DIR' serves it again afterwards.",
)
def demo(batches: int, batch_size: int, data_dir: Path | None) -> None:
    """Run a batch workflow that continues as new, on an embedded nats-server."""
    from riverrun import Runtime

    from ._demo import batch_processor

    console = Settings().console()

    async def go() -> None:
        with ExitStack() as stack:
            directory = data_dir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="riverrun-demo-"))
            )
            console.print(f"Starting an embedded nats-server with JetStream (data in {directory})")
            async with Runtime.embedded(directory, workflows=[batch_processor]) as runtime:
                console.print(f"nats-server ready at {runtime.url}")
                await _run(runtime.client, console, batches, batch_size)

    run_command(go)


async def _run(client: Client, console: Console, batches: int, batch_size: int) -> None:
    workflow_id = f"demo-{uuid.uuid4().hex[:8]}"
    console.print(
        f"Starting workflow batch_processor (id {workflow_id}): {batches} batches of "
        f"{batch_size} items, one run per batch, continue-as-new between runs\n"
    )
    began = time.monotonic()
    from ._demo import batch_processor

    handle = await client.start(
        batch_processor, batches=batches, batch_size=batch_size, workflow_id=workflow_id
    )
    progress = Progress(
        TextColumn("[bold]batches"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("batches", total=batches)
        result: list[str] = []
        async with anyio.create_task_group() as tg:

            async def wait_result() -> None:
                result.append(await handle.result(timeout=120))
                tg.cancel_scope.cancel()

            tg.start_soon(wait_result)
            while True:
                progress.update(task, completed=await _batches_done(handle))
                await anyio.sleep(0.05)
        progress.update(task, completed=batches)
    elapsed = time.monotonic() - began
    chain = await client.get_workflow_chain(handle.first_run_id)
    console.print()
    print_chain(console, chain)
    console.print()
    console.print(f"[bold]Result:[/bold] {result[0]}")
    console.print(f"{len(chain)} runs in {format_duration(elapsed)}.")
    kept = [len(await client.events(run.run_id)) for run in chain]
    console.print(f"Events kept per run: {', '.join(map(str, kept))}", end="")
    if len(kept) > 1 and set(kept[:-1]) == {1}:
        console.print(
            " (each earlier run's history was truncated to its continue-as-new link, so "
            "storage does not grow with the chain)",
            end="",
        )
    console.print()
    console.print(
        "\nNext: 'riverrun dev' for a local server you keep, and docs/quickstart.md for your "
        "own first workflow."
    )


async def _batches_done(handle: WorkflowHandle[Any]) -> int:
    from riverrun import RunStatus

    current = await handle.describe()
    done = current.execution - 1
    return done + 1 if current.status == RunStatus.COMPLETED else done
