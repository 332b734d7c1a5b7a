"""`headstart tune`: trials scored on the selection split (the reported split never scored), the winner refitted
and scored once; workers sharing one Optuna storage (a real PostgreSQL server when one can be started here,
else the journal file) run N x M trials, none lost or duplicated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from headstart.errors import ConfigError
from headstart.tasks.tune import tune

from .conftest import free_port, write_text_table

FIT = {"model": "scratch:bow", "epochs": 3, "batch_size": 16}


def test_trials_are_scored_on_the_selection_split_and_only_the_refit_sees_the_reported_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    data = write_text_table(tmp_path / "t.csv", per_class=30)
    r = tune(str(data), trials=3, strategy="scratch", out=tmp_path / "tune", **FIT)
    assert "each trial is scored on a selection split of 8 examples" in capsys.readouterr().err  # and --cv 5 is named
    assert [t["state"] for t in r["trials"]] == ["COMPLETE"] * 3
    lrs = []
    for t in r["trials"]:
        m = json.loads((tmp_path / "tune" / "trials" / f"trial-{t['number']:04d}" / "metrics.json").read_text())
        assert "test" not in m  # a trial never scores the reported split
        assert t["value"] == pytest.approx(m["val"]["log_loss"])
        lrs.append(t["params"]["lr"])
    assert all(2e-3 <= lr <= 2e-1 for lr in lrs) and len(set(lrs)) == 3  # a decade either side of scratch:bow's 2e-2
    best = min(r["trials"], key=lambda t: t["value"])
    assert r["best"]["number"] == best["number"]
    assert "accuracy" in r["refit"]["test"]  # the one fit scored on the reported split: the winner's values
    refit = yaml.safe_load((tmp_path / "tune" / "best" / "config.yaml").read_text())
    assert refit["lr"] == pytest.approx(best["params"]["lr"])
    saved = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert saved["best"] == r["best"] and len(saved["trials"]) == 3
    import optuna  # the default storage: one SQLite file that Optuna (and its dashboard) opens

    assert r["storage"] == f"sqlite:///{(tmp_path / 'tune' / 'study.db').resolve()}"
    assert len(optuna.load_study(study_name="tune", storage=r["storage"]).trials) == 3


def test_best_yaml_refits_and_the_study_report_compares_best_with_default(tmp_path: Path) -> None:
    import headstart

    data = write_text_table(tmp_path / "t.csv", per_class=30)
    r = tune(str(data), trials=4, strategy="finetune", out=tmp_path / "tune", refit_seeds=2, **FIT)
    best = yaml.safe_load((tmp_path / "tune" / "best.yaml").read_text())
    assert best["lr"] == pytest.approx(r["best"]["params"]["lr"]) and best["strategy"] == "finetune"
    assert "out" not in best and "seeds" not in best  # a configuration, not a run
    run = headstart.fit(config=tmp_path / "tune" / "best.yaml", out=str(tmp_path / "again"))
    assert run.config["lr"] == pytest.approx(best["lr"]) and run.config["layer_decay"] == pytest.approx(best["layer_decay"])
    default = yaml.safe_load((tmp_path / "tune" / "default" / "config.yaml").read_text())
    assert default["lr"] == pytest.approx(2e-2) and default["seeds"] == 2  # scratch:bow's own rate, no searched value
    for tag in ("refit", "default"):
        assert r[tag]["seeds"]["n"] == 2 and len(r[tag]["seeds"]["scores"]) == 2
    page = (tmp_path / "tune" / "report.html").read_text()
    assert "Best against the default configuration" in page and "optimisation history" in page
    assert set(r["importances"]) <= set(r["best"]["params"]) and r["importances"]


def test_a_trial_that_falls_behind_is_pruned(tmp_path: Path) -> None:
    """Four trials at scratch:bow's rate, then one at a tenth of it: its selection loss trails the median from
    the second epoch on, and it stops there (10 epochs: the least this data's default of 20 lets the search draw)."""
    import optuna

    from headstart.tasks.tune import open_storage

    data = write_text_table(tmp_path / "t.csv", per_class=30)
    folder = tmp_path / "tune"
    folder.mkdir()
    study = optuna.create_study(study_name="tune", storage=open_storage(None, folder), direction="minimize")
    for lr in (2e-2, 2e-2, 2e-2, 2e-2, 2e-3):
        study.enqueue_trial({"lr": lr, "epochs": 10})
    r = tune(str(data), trials=5, strategy="scratch", out=folder, refit=False, model="scratch:bow", batch_size=16)
    states = [t["state"] for t in sorted(r["trials"], key=lambda t: t["number"])]
    assert states == ["COMPLETE"] * 4 + ["PRUNED"]
    assert r["trials"][-1]["epochs_run"] < 10
    pruned = folder / "trials" / "trial-0004"
    assert not (pruned / "checkpoints").exists() and not (pruned / "metrics.json").exists()


def test_cross_validated_trials_score_the_mean_of_their_folds(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=20)
    r = tune(str(data), trials=2, strategy="scratch", out=tmp_path / "tune", refit=False, cv=3, **FIT)
    for t in r["trials"]:
        losses = [json.loads((tmp_path / "tune" / "trials" / f"trial-{t['number']:04d}" / "folds" / f"fold-{j}" /
                              "metrics.json").read_text())["test"]["log_loss"] for j in (1, 2, 3)]
        assert t["value"] == pytest.approx(sum(losses) / 3)
    assert "3-fold cross-validated" in r["objective"] and r["pruning"] == "none"


def test_search_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="option --trials"):
        tune("demo-text", trials=-1)
    with pytest.raises(ConfigError, match="tune: option name is set per trial"):
        tune("demo-text", trials=1, name="x")
    with pytest.raises(ConfigError, match="tune: linear has nothing to search"):
        tune("demo-text", trials=1, strategy="linear")


# -- shared storage ---------------------------------------------------------------------------------------
@pytest.fixture
def shared_storage(tmp_path: Path) -> Iterator[str]:
    """A database URL of a PostgreSQL server started here for the test, or a journal file (and a warning saying so)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    why = "initdb/pg_ctl not found" if not (initdb and pg_ctl) else ""
    try:
        import psycopg2  # noqa: F401  (what SQLAlchemy connects with)
    except ImportError:
        why = why or "psycopg2 is not installed"
    if not why:
        # its own folder, open to the server's user (pytest's temp folders are private to this one)
        root = Path(tempfile.mkdtemp(prefix="headstart-pg-"))
        os.chmod(root, 0o777)
        as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []  # initdb refuses to run as root
        port, data = free_port(), root / "data"
        try:
            subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "headstart"], check=True,
                           capture_output=True, timeout=120)
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                            f"-k {root} -p {port} -c listen_addresses=''", "start"], check=True, capture_output=True,
                           timeout=120)
        except (subprocess.SubprocessError, OSError) as e:
            why = f"PostgreSQL could not be started here ({str(e)[:200]})"
        else:
            try:
                yield f"postgresql+psycopg2://headstart@/postgres?host={root}&port={port}"
            finally:
                subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True, timeout=120)
                shutil.rmtree(root, ignore_errors=True)
            return
        shutil.rmtree(root, ignore_errors=True)
    warnings.warn(f"{why}: the workers share Optuna's journal file storage instead", stacklevel=1)
    yield f"journal:{tmp_path / 'shared.journal'}"


@pytest.mark.slow
def test_workers_sharing_a_storage_run_every_trial_once(tmp_path: Path, shared_storage: str) -> None:
    import optuna

    data = write_text_table(tmp_path / "t.csv", per_class=30)
    workers, each = 2, 2
    cmd = [sys.executable, "-m", "headstart", "tune", str(data), "--strategy", "scratch", "--trials", str(each),
           "--no-refit", "--storage", shared_storage, "--study", "shared", "--out", str(tmp_path / "tune"),
           "--model", "scratch:bow", "--epochs", "2", "--no-prune"]  # every trial whole: each leaves a run
    procs = [subprocess.Popen(cmd, env={**os.environ, "HEADSTART_QUIET": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    from headstart.tasks.tune import open_storage

    study = optuna.load_study(study_name="shared", storage=open_storage(shared_storage, tmp_path / "tune"))
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(workers * each))  # none lost, none twice
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    runs = {t.user_attrs["run"] for t in study.trials}
    assert len(runs) == workers * each and all((Path(r) / "metrics.json").is_file() for r in runs)
    print(f"storage: {shared_storage.split('://')[0] if '://' in shared_storage else 'journal file'}")


def test_a_database_password_is_never_written_down() -> None:
    from headstart.tasks.tune import _without_password

    assert _without_password("postgresql://ann:s3cret@db:5432/hs") == "postgresql://ann@db:5432/hs"
    assert _without_password("sqlite:///study.db") == "sqlite:///study.db"
