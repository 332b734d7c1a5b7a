"""Paths inside a run folder: a name recorded in one of its files never leads outside it."""

from __future__ import annotations

from pathlib import Path

from ..errors import HeadstartError


def member(run_dir: Path, name: str, what: str, under: str = "") -> Path:
    """``run_dir/under/name``, refused when ``name`` is absolute, climbs with ``..``, or (through a link)
    resolves outside the run folder."""
    rel = Path(name)
    target = run_dir / under / rel
    if rel.is_absolute() or ".." in rel.parts or not target.resolve().is_relative_to(run_dir.resolve()):
        raise HeadstartError(f"{run_dir}: {what} {name!r} leads outside the run folder, which a run never reads; "
                             "the run was altered, export or fit it again")
    return target


def check_members(run_dir: Path, names: list[str]) -> None:
    """Every file the run reads by a fixed name, and everything under the ``backbone/`` assets folder, must be
    inside the run folder (a link out of it is refused)."""
    for name in names:
        member(run_dir, name, "file")
    assets = run_dir / "backbone"
    if assets.is_dir():
        for p in assets.rglob("*"):
            member(run_dir, str(p.relative_to(run_dir)), "file")


__all__ = ["check_members", "member"]
