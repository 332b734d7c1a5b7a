"""One place for progress bars and warnings printed to the terminal (stderr)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")

console = Console(stderr=True)


def quiet() -> bool:
    return os.environ.get("HEADSTART_QUIET", "") not in ("", "0")


def warn(msg: str) -> None:
    if not quiet():
        console.print(f"[yellow]warning:[/yellow] {msg}", highlight=False, soft_wrap=True)


def info(msg: str) -> None:
    if not quiet():
        console.print(msg, highlight=False, soft_wrap=True)


def track(it: Iterable[T], total: int, description: str, min_total: int = 1) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (skipped for tiny jobs or when quiet)."""
    if quiet() or total < min_total or not sys.stderr:
        yield from it
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        for x in it:
            yield x
            bar.advance(task)
