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


def test_trials_are_scored_on_the_selection_split_and_only_the_refit_sees_the_reported_one(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=30)
    r = tune(str(data), trials=3, strategy="scratch", out=tmp_path / "tune", **FIT)
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
    workers, each = 3, 2
    cmd = [sys.executable, "-m", "headstart", "tune", str(data), "--strategy", "scratch", "--trials", str(each),
           "--no-refit", "--storage", shared_storage, "--study", "shared", "--out", str(tmp_path / "tune"),
           "--model", "scratch:bow", "--epochs", "2"]
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
