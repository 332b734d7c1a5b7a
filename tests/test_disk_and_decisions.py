"""`headstart cache`, `headstart info`, and a fit that says what it decided about the data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headstart.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # rich tables keep whole cells on one line


def _fill_cache(cache: Path, tmp_path: Path, backbone: object) -> list[dict]:
    """Three real entries: features of a bag-of-words backbone on three tables, used at different times."""
    from headstart.data import load_data
    from headstart.features import cache_entries, extract

    for i, n in enumerate((10, 40, 20)):
        table = tmp_path / f"t{i}.csv"
        table.write_text("text,label\n" + "".join(f"goal match {j} {i},a\noven bread {j} {i},b\n" for j in range(n)))
        ds = load_data(table)
        extract(backbone, ds.items, ds.fingerprint(), cache, source=str(table))
    entries = cache_entries(cache)
    for age, e in zip((300, 200, 100), sorted(entries, key=lambda e: e["source"])):  # t0 oldest use, t2 newest
        meta = Path(e["path"]).with_suffix(".json")
        os.utime(meta, (time.time() - age, time.time() - age))
    return cache_entries(cache)


def test_cache_lists_trims_least_recently_used_and_clears(tmp_path: Path) -> None:
    from headstart.backbones import build_backbone
    from headstart.data import load_data
    from headstart.features import cache_entries, extract

    cache, backbone = tmp_path / "cache", build_backbone("scratch:bow")
    entries = _fill_cache(cache, tmp_path, backbone)
    assert [Path(e["source"]).name for e in entries] == ["t2.csv", "t1.csv", "t0.csv"]  # most recently used first
    assert all(e["model"] == "scratch:bow" and e["bytes"] > 0 for e in entries)
    res = runner.invoke(app, ["cache", "--dir", str(cache)])
    assert res.exit_code == 0 and "3 entries" in res.output and "t1.csv" in res.output and "scratch:bow" in res.output

    # reading an entry again makes it the most recently used: t0 then survives a trim that keeps two entries
    ds = load_data(tmp_path / "t0.csv")
    assert extract(backbone, ds.items, ds.fingerprint(), cache)[1]["cached"]
    sizes = {Path(e["source"]).name: e["bytes"] for e in entries}
    keep = sizes["t0.csv"] + sizes["t2.csv"]
    res = runner.invoke(app, ["cache", "--dir", str(cache), "--max-size", str(keep)])
    assert res.exit_code == 0 and "removed 1 least recently used" in res.output, res.output
    assert sorted(Path(e["source"]).name for e in cache_entries(cache)) == ["t0.csv", "t2.csv"]
    res = runner.invoke(app, ["cache", "--dir", str(cache), "--clear"])
    assert res.exit_code == 0 and "removed 2 entries" in res.output and cache_entries(cache) == []
    res = runner.invoke(app, ["cache", "--max-size", "lots"])
    assert res.exit_code == 2 and "option --max-size: 'lots' is not a size" in res.output


def test_info_names_versions_device_and_caches(tmp_path: Path) -> None:
    res = runner.invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    facts = json.loads(res.output)
    import torch

    assert facts["torch"] == torch.__version__.split("+")[0] and facts["torch threads"] == torch.get_num_threads()
    assert facts["device"] == "cpu" and isinstance(facts["native bf16"], bool)
    from huggingface_hub import constants

    assert facts["feature cache"].startswith(str(tmp_path / "cache"))  # HEADSTART_CACHE_DIR (conftest)
    assert facts["hub cache"].startswith(str(constants.HF_HUB_CACHE))


def test_a_fit_says_which_columns_it_used_and_how_to_change_them(tmp_path: Path) -> None:
    table = tmp_path / "posts.csv"
    table.write_text("body,author\n" + "".join(f"the match and the goal {i},ann\nbake bread in the oven {i},bob\n"
                                               for i in range(12)) + ",bob\n")
    res = runner.invoke(app, ["fit", str(table), "--model", "scratch:bow", "--strategy", "linear", "--cv-folds", "2",
                              "--out", "run"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "label column │ author (detected: fewest distinct values; --label-col to change)" in out
    assert "text column │ body (detected: its name; --text-col to change)" in out
    assert "delimiter │ comma (detected; --delimiter to change)" in out and "task │ binary (detected: 2 classes; --task-type to change)" in out
    assert "skipped rows │ 1" in out
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["data"]["decided"]["label"] == {"value": "author", "how": "detected: fewest distinct values", "flag": "--label-col"}
    assert m["fit"]["skipped_rows"] == 1 and m["data"]["skipped_rows"][0]["where"].endswith("posts.csv:26")
    report = (tmp_path / "run" / "report.html").read_text()
    assert "What was decided about the data" in report and "author (detected: fewest distinct values; --label-col to change)" in report
