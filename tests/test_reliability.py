"""Every case of the bad-input matrix ends in a one-line error or correct handling, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from headstart.cli import app

from .reliability_cases import CASES, Case


def run_case(case: Case, tmp: Path) -> tuple[int, str]:
    """(exit code, output) of the case's command, run in-process through the CLI."""
    with case.patch():
        args = case.build(tmp)
        res = CliRunner().invoke(app, args, input=case.stdin)
    return res.exit_code, res.output


def error_line(output: str) -> str | None:
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    return lines[0] if len(lines) == 1 else None


def verdict(case: Case, code: int, output: str, tmp: Path) -> None:
    assert "Traceback" not in output, output
    if case.error is not None:
        assert code == 2, f"expected a one-line error (exit 2), got exit {code}: {output[-800:]}"
        line = error_line(output)
        assert line is not None and case.error in line, f"expected one 'error:' line with {case.error!r}: {output[-800:]}"
    else:
        assert code == 0, output[-800:]
        if case.check is not None:
            case.check(tmp, output)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.command}: {c.name}" for c in CASES])
def test_bad_input(case: Case, tmp_path: Path) -> None:
    code, output = run_case(case, tmp_path)
    verdict(case, code, output, tmp_path)
    assert not (tmp_path / "pwned").exists(), "a pickled payload was executed"
