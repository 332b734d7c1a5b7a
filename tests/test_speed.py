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
    # 3 x the forward of backbone + head, counted here on one image independently of the engine
    from torch.utils.flop_counter import FlopCounterMode

    x = run.backbone.preprocess(train=False)([run.reload_data().items[0]])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run.head(run.backbone.forward_features(x))
    assert f["gflop_per_example"] == pytest.approx(3 * counter.get_total_flops() / 1e9, abs=1e-4)  # rounded to 1e-4
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


def test_images_resized_once_give_the_same_batches_and_only_without_augmentation() -> None:
    rng = np.random.default_rng(0)
    items = [np.array(make_image(k % 2, rng, size=int(s))) for k, s in enumerate(rng.integers(30, 90, 6))]
    bb = build_backbone("scratch:cnn@32")
    plain = bb.preprocess(train=True, augment="none")
    once = plain.resized_once(items)
    assert all(isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.shape == (3, 32, 32) for x in once)
    torch.testing.assert_close(plain(once), plain(items), rtol=0, atol=0)
    assert torch.equal(bb.preprocess(train=False)(bb.preprocess(train=False).resized_once(items)), bb.preprocess(train=False)(items))
    light = bb.preprocess(train=True, augment="light")
    assert light.resized_once(items) is items  # random crops must see the full image each epoch
    assert plain.resized_once(items, budget_bytes=3 * 32 * 32 * 5) is items  # over the memory budget: left alone


def test_finetune_without_augmentation_trains_on_resized_copies_to_the_same_model(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from headstart.backbones._vision import ImageBatcher

    data = write_image_folder(tmp_path / "imgs", per_class=8)
    common = dict(model="scratch:cnn@32", strategy="finetune", epochs=2, augment="none", seed=3)
    once = headstart.fit(data, out=str(tmp_path / "once"), **common)
    monkeypatch.setattr(ImageBatcher, "resized_once", lambda self, items, budget_bytes=0: items)  # resize every epoch
    every = headstart.fit(data, out=str(tmp_path / "every"), **common)
    for (k, a), b in zip(once.backbone.state_dict().items(), every.backbone.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_loader_workers_default_to_none_on_a_cpu_and_a_negative_count_is_refused() -> None:
    from headstart.training.engine import loader_workers

    if not torch.cuda.is_available():
        assert loader_workers(None) == 0  # a CPU keeps its cores for the model
    else:
        assert 1 <= loader_workers(None) <= 4
    assert loader_workers(2) == 2
    with pytest.raises(headstart.HeadstartError, match="option --num-workers: -1 must be >= 0"):
        headstart.FitConfig(data="x", num_workers=-1)


def test_eval_passes_fold_batchnorm_into_convolutions_for_the_same_features(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    from torch import nn

    import headstart.features as features
    from headstart.backbones._vision import ImageBackbone

    torch.manual_seed(0)
    bb = build_backbone("timm:test_resnet", pretrained=False).eval()
    for m in bb.modules():  # non-trivial statistics, so that folding changes the weights
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    rng = np.random.default_rng(0)
    items = [np.array(make_image(k % 2, rng, size=64)) for k in range(20)]
    with features.folded_batchnorm(bb) as folded:
        assert folded and not any(isinstance(m, nn.BatchNorm2d) for m in bb.forward_features.__self__.modules())
    assert "forward_features" not in bb.__dict__  # the network itself is untouched afterwards
    fast = extract_items(bb, items, batch_size=8)
    monkeypatch.setattr(features, "folded_batchnorm", lambda b: contextlib.nullcontext(False))
    plain = extract_items(bb, items, batch_size=8)
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-5)

    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn(self.conv(x))
            return (y if y.sum() > 0 else -y).mean((2, 3))

    cfg = {"input_size": (3, 16, 16), "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0, "interpolation": "bilinear"}
    odd = ImageBackbone(Branchy(), 4, {"kind": "test"}, cfg).eval()
    with features.folded_batchnorm(odd) as folded:
        assert not folded


def test_step_seeding_replays_every_rng_without_queueing_seeds_for_unstarted_accelerators(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import random
    import traceback

    from headstart._seed import seed_step

    def draws() -> tuple[float, float, list[float]]:
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    if not torch.cuda.is_initialized():  # torch.manual_seed formats a stack trace per queued accelerator seed
        monkeypatch.setattr(traceback, "format_stack", lambda *a, **k: pytest.fail("a seed was queued"))
    seed_step(0, 2, 5, 1)
    first = draws()
    seed_step(0, 2, 5, 1)
    assert draws() == first
    seed_step(0, 2, 6, 1)
    assert draws() != first
