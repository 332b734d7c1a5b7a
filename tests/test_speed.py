"""Speed features: streamed feature files, throughput and MFU, bf16 autocast, torch.compile (correctness only:
their speed is measured in benchmarks/run_all.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart._perf import bf16_supported, matmul_peak
from headstart.backbones import build_backbone
from headstart.features import extract, extract_items
from tests.conftest import make_image, write_image_folder


class SyntheticImages(Sequence):
    """Images made on access: a dataset that never sits in memory as a whole."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not 0 <= i < self.n:
            raise IndexError(i)  # ends iteration
        return np.array(make_image(i % 3, np.random.default_rng(i), size=32))


def test_streamed_extraction_equals_in_memory_and_leaves_only_the_cache_file(tmp_path: Path) -> None:
    bb = build_backbone("scratch:cnn@32")
    items = SyntheticImages(70)
    feats, got = extract(bb, items, "synthetic-70", tmp_path / "c", batch_size=16)
    assert isinstance(feats, np.memmap) and not got["cached"]
    np.testing.assert_allclose(np.asarray(feats), extract_items(bb, list(items), batch_size=16), atol=1e-5)
    files = sorted(p.name for p in (tmp_path / "c" / "features").iterdir())
    assert len(files) == 2 and not any("tmp" in f for f in files)  # the .npy and its .json, no leftovers
    again, got2 = extract(bb, items, "synthetic-70", tmp_path / "c", batch_size=16)
    assert got2["cached"] and np.array_equal(again, feats)


def test_fit_reports_throughput_and_mfu(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=10)
    run = headstart.fit(data, model="scratch:cnn@32", strategy="scratch", epochs=2, precision="32", out="runs/a")
    f = run.metrics["fit"]
    assert f["precision"] == "fp32" and f["samples_per_second"] > 0
    # a 4-block CNN at 32x32: ~2 x 2 x 13.7 MFLOP forward per image, x3 with the backward
    assert 0.05 < f["gflop_per_example"] < 0.5
    assert 0 < f["mfu"] < 1 and f["peak_gflops"] == pytest.approx(matmul_peak(torch.float32), abs=0.06)
    assert f["achieved_gflops"] == pytest.approx(f["gflop_per_example"] * f["samples_per_second"], rel=0.01)


@pytest.mark.skipif(not bf16_supported(), reason="no native bf16 on this machine")
def test_bf16_autocast_trains_to_the_same_accuracy(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=20, classes=3)
    runs = {p: headstart.fit(data, model="scratch:cnn@32", strategy="scratch", epochs=12, precision=p, out=f"runs/{p}")
            for p in ("32", "bf16")}
    assert runs["bf16"].metrics["fit"]["precision"] == "bf16"
    assert runs["bf16"].metrics["fit"]["peak_dtype"] == "bf16"
    assert runs["bf16"].metrics["test"]["accuracy"] >= runs["32"].metrics["test"]["accuracy"] - 0.1
    # saved weights are float32 either way: the model loads and predicts like any other
    assert all(v.dtype == torch.float32 for v in runs["bf16"].backbone.state_dict().values() if v.is_floating_point())


def test_compile_is_opt_in_and_leaves_an_ordinary_model(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=10)
    run = headstart.fit(data, model="scratch:cnn@32", strategy="scratch", epochs=2, compile=True, precision="32", out="runs/c")
    assert run.metrics["fit"]["compiled"] is True
    plain = headstart.fit(data, model="scratch:cnn@32", strategy="scratch", epochs=2, precision="32", out="runs/p")
    assert plain.metrics["fit"]["compiled"] is False
    np.testing.assert_allclose(run.predict_proba(str(data)), plain.predict_proba(str(data)), atol=1e-3)
