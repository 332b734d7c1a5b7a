"""`headstart extract --shard i/k`: k real processes fill one feature-cache entry, the same features one process
extracts, and a later `fit --strategy linear` reads it instead of extracting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import headstart
from headstart.errors import ConfigError
from headstart.features import cache_entries, shard_bounds
from headstart.tasks.extract import extract_features, parse_shard

from .conftest import write_image_folder

MODEL = "scratch:cnn@32"


def _shard(data: Path, cache: Path, part: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "headstart", "extract", str(data), "--model", MODEL, "--shard", part,
                             "--cache-dir", str(cache), "--batch-size", "8", "--json"],
                            env={**os.environ, "HEADSTART_QUIET": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_shards_are_contiguous_and_cover_every_row_once() -> None:
    for n in (0, 1, 7, 100):
        for k in (1, 2, 3, 8):
            parts = [shard_bounds(n, (i, k)) for i in range(k)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


@pytest.mark.parametrize("bad", ["2/2", "1", "-1/2", "a/b", "0/0"])
def test_a_bad_shard_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="option --shard"):
        parse_shard(bad)


@pytest.mark.slow
def test_three_processes_fill_the_entry_one_process_would_and_linear_reads_it(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=10, classes=3)
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    procs = [_shard(data, sharded, f"{i}/3") for i in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    assert sorted(r["rows"] for r in results) == [[0, 10], [10, 20], [20, 30]]
    assert sum(r["joined"] for r in results) == 1  # the last to finish joined the parts, once
    entries = cache_entries(sharded)
    assert len(entries) == 1 and entries[0]["shape"] == [30, results[0]["dim"]]
    assert not [f for f in (sharded / "features").iterdir() if ".shard-" in f.name or f.name.endswith(".joining")]

    one = extract_features(str(data), model=MODEL, cache_dir=str(whole), batch_size=8)
    assert one["path"].rsplit("/", 1)[1] == entries[0]["path"].rsplit("/", 1)[1]  # the same cache key
    a, b = np.load(entries[0]["path"]), np.load(one["path"])
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-5

    run = headstart.fit(data, model=MODEL, strategy="linear", cache_dir=str(sharded), out=str(tmp_path / "run"))
    assert run.metrics["fit"]["features_cached"] is True


def test_a_shard_waiting_for_its_siblings_is_listed_and_the_last_one_joins(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=6, classes=2)
    cache = tmp_path / "cache"
    first = extract_features(str(data), model=MODEL, shard="1/2", cache_dir=str(cache), batch_size=8)
    assert first["rows"] == [6, 12] and not first["joined"]
    waiting = cache_entries(cache)
    assert len(waiting) == 1 and waiting[0]["tag"].startswith("shard 2/2 of ") and waiting[0]["shape"] == [6, first["dim"]]
    second = extract_features(str(data), model=MODEL, shard="0/2", cache_dir=str(cache), batch_size=8)
    assert second["joined"] and second["rows"] == [0, 6]
    (entry,) = cache_entries(cache)
    assert entry["shape"] == [12, first["dim"]] and entry["tag"] == ""
    again = extract_features(str(data), model=MODEL, shard="0/2", cache_dir=str(cache), batch_size=8)
    assert again["cached_before"] and again["rows"] == [0, 12]  # complete: nothing extracted again


def test_with_pool_avg_the_entry_is_the_one_rank_reads(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=8, classes=2)
    cache = tmp_path / "cache"
    for part in ("0/2", "1/2"):
        extract_features(str(data), model=MODEL, shard=part, pool="avg", cache_dir=str(cache), batch_size=8)
    table = headstart.rank(str(data), [MODEL], metrics="logme", cache_dir=str(cache))
    assert list(table["extract_s"]) == [0.0]  # read from the cache the shards filled
    assert len(cache_entries(cache)) == 1
