"""``--cv K`` and ``--group-col``: folds on the training part only, groups never on two sides, honest spreads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import headstart
from headstart.data import load_data
from headstart.errors import HeadstartError
from headstart.tasks.cv import folds

from .conftest import TOPIC_WORDS, write_text_table


def grouped_table(path: Path, groups: int = 30, per_group: int = 4, seed: int = 0) -> Path:
    """Texts of two topics; each group (a 'patient') has one topic and a word of its own in every text."""
    rng = np.random.default_rng(seed)
    topics = list(TOPIC_WORDS)
    rows = ["text,label,patient"]
    for g in range(groups):
        label = topics[g % len(topics)]
        for _ in range(per_group):
            words = rng.choice(TOPIC_WORDS[label], 5).tolist() + [f"tag{g}"]
            rows.append(f"{' '.join(words)},{label},p{g}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_grouped_splits_keep_every_group_on_one_side(tmp_path: Path) -> None:
    data = grouped_table(tmp_path / "g.csv")
    for seed in range(3):
        ds = load_data(data, group_col="patient", seed=seed)
        parts = {k: set(ds.groups[getattr(ds, f"{k}_idx")]) for k in ("train", "val", "test")}
        assert all(parts.values())
        assert not parts["train"] & parts["test"] and not parts["train"] & parts["val"] and not parts["val"] & parts["test"]
        for train, scored in folds(ds, 4, seed):
            assert not set(ds.groups[train]) & set(ds.groups[scored])
    plain = load_data(data, seed=0)  # without the column, a random split puts some patients on both sides
    groups = np.array([line.rsplit(",", 1)[1] for line in data.read_text().splitlines()[1:]])
    assert set(groups[plain.train_idx]) & set(groups[plain.test_idx])


def test_group_col_errors_name_the_column_and_what_to_do(tmp_path: Path) -> None:
    data = grouped_table(tmp_path / "g.csv")
    with pytest.raises(HeadstartError, match=r"--group-col 'patiant' is not a column; did you mean 'patient'"):
        load_data(data, group_col="patiant")
    with pytest.raises(HeadstartError, match=r"--group-col 'label' is also the text or label column"):
        load_data(data, group_col="label")
    with pytest.raises(HeadstartError, match=r"option --group-col: digits is not a table"):
        load_data("digits", group_col="patient")


def test_folds_cover_the_training_part_once_and_never_the_reported_split(tmp_path: Path) -> None:
    ds = load_data(write_text_table(tmp_path / "t.csv", per_class=20), seed=1)
    pool = np.sort(np.concatenate([ds.train_idx, ds.val_idx]))
    parts = folds(ds, 5, 0)
    scored = np.concatenate([s for _, s in parts])
    assert np.array_equal(np.sort(scored), pool)  # every training example scored exactly once
    for train, s in parts:
        assert np.array_equal(np.sort(np.concatenate([train, s])), pool)
        assert not set(ds.test_idx) & (set(train) | set(s))
        counts = np.bincount(ds.y[s], minlength=len(ds.classes))
        assert counts.max() - counts.min() <= 1  # stratified


def test_cv_fit_reports_mean_std_and_interval_of_its_folds(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=20)
    run = headstart.fit(data, model="scratch:bow", strategy="linear", cv=4, out=str(tmp_path / "run"))
    cv = run.metrics["cv"]
    assert cv["k"] == 4 and not cv["grouped"] and len(cv["rows"]) == 4
    scores = [json.loads((run.path / "folds" / f"fold-{j}" / "metrics.json").read_text())["test"]["score"] for j in (1, 2, 3, 4)]
    assert [r["score"] for r in cv["rows"]] == scores
    s = cv["figures"]["score"]
    assert s["mean"] == pytest.approx(np.mean(scores)) and s["std"] == pytest.approx(np.std(scores, ddof=1))
    assert s["ci95_low"] <= s["mean"] <= s["ci95_high"]
    d = run.metrics["data"]
    assert sum(r["n_scored"] for r in cv["rows"]) == d["n_train"] + d["n_val"]
    assert "test" in run.metrics and run.metrics["test"]["n"] == d["n_test"]  # the run itself: scored once held out
    assert not list((run.path / "folds").glob("*/model.safetensors"))  # folds keep their figures, not weights
    page = (run.path / "report.html").read_text()
    assert "Cross-validation (4 folds)" in page and "4-fold CV accuracy" in page and "--cv 4" in page
    assert run.config["cv"] == 4


def test_cv_without_a_reported_split_and_the_refusals(tmp_path: Path) -> None:
    data = grouped_table(tmp_path / "g.csv", groups=12)
    run = headstart.fit(data, model="scratch:bow", strategy="linear", cv=3, test_fraction=0.0, group_col="patient",
                        out=str(tmp_path / "all"))
    assert "test" not in run.metrics and run.metrics["cv"]["grouped"]
    assert sum(r["n_scored"] for r in run.metrics["cv"]["rows"]) == 48  # every example in some fold
    with pytest.raises(HeadstartError, match=r"option --test-fraction: 0 leaves nothing to report on; .*--cv K"):
        headstart.fit(data, model="scratch:bow", strategy="linear", test_fraction=0.0)
    with pytest.raises(HeadstartError, match=r"option --cv: 1 must be at least 2 folds"):
        headstart.fit(data, model="scratch:bow", strategy="linear", cv=1)
    with pytest.raises(HeadstartError, match=r"option --cv: 20 folds need at least 20 groups; the training part has"):
        headstart.fit(data, model="scratch:bow", strategy="linear", cv=20, group_col="patient", out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()  # refused before any folder was made


def test_compare_shows_cv_and_seed_spreads(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=16)
    df = headstart.compare(data, "linear", "all", model="scratch:bow", cv=3, out=str(tmp_path / "cmp"))
    row = df.iloc[0]
    assert row["cv_mean"] == pytest.approx(json.loads(Path(row["run"], "metrics.json").read_text())["cv"]["figures"]["score"]["mean"])
    assert "CV mean" in (tmp_path / "cmp" / "report.html").read_text()
    df = headstart.compare(data, "finetune", "all", model="scratch:bow", seeds=2, epochs=1, out=str(tmp_path / "cmp2"))
    spread = json.loads(Path(df.iloc[0]["run"], "metrics.json").read_text())["seeds"]["spread"]["test_score"]
    assert df.iloc[0]["seeds_mean"] == pytest.approx(spread["mean"]) and df.iloc[0]["seeds_std"] == pytest.approx(spread["std"])
