"""`headstart compare`: strategies x label budgets on one split, a table, a plot, resumable."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

import headstart
from headstart.cli import parse_fit_flags
from headstart.tasks.compare import parse_budgets
from headstart.cli import app
from headstart.errors import ConfigError, HeadstartError
from tests.conftest import write_text_table


def rows_of(folder: Path) -> list[dict[str, str]]:
    with open(folder / "compare.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_compare_runs_every_strategy_at_every_budget_on_one_split(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=40)
    res = CliRunner().invoke(app, ["compare", str(data), "--strategies", "linear,scratch", "--budgets", "6,all",
                                   "--out", "cmp", "--model", "scratch:bow", "--cv-folds", "3", "--epochs", "4"])
    assert res.exit_code == 0, res.output
    rows = rows_of(Path("cmp"))
    assert [(r["strategy"], r["budget"]) for r in rows] == [("linear", "6"), ("scratch", "6"), ("linear", "all"), ("scratch", "all")]
    assert [float(r["labels_per_class"]) for r in rows[:2]] == [6.0, 6.0]
    assert float(rows[2]["labels_per_class"]) == 32.0  # 80% of 40 per class, the rest held out
    for r in rows:
        run = headstart.load(r["run"])
        assert run.metrics["data"]["n_test"] == 16  # the same held-out examples for every run
        assert run.config["epochs"] == 4 and run.config["model"] == "scratch:bow"  # fit options reach every run
        assert float(r["accuracy"]) == run.metrics["test"]["accuracy"]
    linear = [r for r in rows if r["strategy"] == "linear"]
    assert int(linear[0]["trainable_parameters"]) == 65  # head only: 64 features + bias
    assert (Path("cmp") / "data_efficiency.png").stat().st_size > 5000
    assert 'alt="held-out score against labels per class"' in (Path("cmp") / "report.html").read_text()


def test_compare_resume_reuses_finished_runs(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=30)
    kw = dict(model="scratch:bow", epochs=3, cv_folds=3)
    headstart.compare(data, "linear", "5", out="cmp", **kw)
    first = Path("cmp/runs/linear-5/metrics.json").stat().st_mtime_ns
    with pytest.raises(HeadstartError, match="already exists"):
        headstart.compare(data, "linear,scratch", "5", out="cmp", **kw)
    df = headstart.compare(data, "linear,scratch", "5", out="cmp", resume=True, **kw)
    assert list(df["strategy"]) == ["linear", "scratch"]
    assert Path("cmp/runs/linear-5/metrics.json").stat().st_mtime_ns == first  # reused, not refitted
    with pytest.raises(HeadstartError, match="started with options"):  # other options: the runs are not reusable
        headstart.compare(data, "linear", "5", out="cmp", resume=True, **{**kw, "epochs": 5})


def test_compare_options_are_checked_before_any_fit(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv")
    assert parse_budgets("5, 20,all") == [5, 20, None]
    with pytest.raises(ConfigError, match="'0' is not a number of labels"):
        parse_budgets("0,5")
    with pytest.raises(ConfigError, match="'lorra' is unknown"):
        headstart.compare(data, "linear,lorra", "5", out="cmp")
    with pytest.raises(ConfigError, match="--epochs: 0 must be at least 1"):
        headstart.compare(data, "linear", "5", out="cmp2", epochs=0)
    assert not Path("cmp").exists() and not Path("cmp2").exists()
    assert parse_fit_flags(["--model", "minilm", "--epochs", "3", "--no-pretrained", "--lora-r", "4", "--merge"]) == \
        {"model": "minilm", "epochs": 3, "pretrained": False, "lora_r": 4, "merge": True}
    with pytest.raises(HeadstartError, match="unknown option --lora-rank"):
        parse_fit_flags(["--lora-rank", "4"])
    with pytest.raises(HeadstartError, match="'x' is not an integer"):
        parse_fit_flags(["--epochs", "x"])


def test_the_default_set_is_the_strategies_that_opt_in_not_their_subclasses() -> None:
    """`compare` without --strategies runs the four that say so; `gradual`, `l2sp`, `joint`, `distill` and the
    domain-adaptation strategies are built on `finetune` but need their own inputs or questions."""
    from headstart.tasks.compare import default_strategies

    assert default_strategies() == "finetune,linear,lora,lp-ft"
