from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.training.engine import EpochShuffle, LengthGroupedBatches, warmup_cosine


def test_length_grouped_batches_cover_everything_once_and_group_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, 1000).tolist()
    s = LengthGroupedBatches(lengths, 16, seed=0)
    batches = [[i for _, i in b] for b in s]  # the sampler yields (epoch, index) keys
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000)) and len(batches) == len(s)
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    random_spread = np.mean([np.ptp(rng.choice(lengths, 16)) for _ in range(60)])
    assert spread < 0.2 * random_spread  # little padding per batch
    s.set_epoch(1)
    again = [[i for _, i in b] for b in s]
    assert again != batches  # reshuffled every epoch ...
    assert {e for b in s for e, _ in b} == {1}
    s.set_epoch(1)
    assert [[i for _, i in b] for b in s] == again  # ... as a function of (seed, epoch) only


def test_epoch_shuffle_depends_only_on_seed_and_epoch() -> None:
    a, b = EpochShuffle(50, seed=3), EpochShuffle(50, seed=3)
    b.set_epoch(4)
    list(b)
    b.set_epoch(2)
    a.set_epoch(2)  # b has been iterated at another epoch before: no hidden state
    assert list(a) == list(b)
    assert sorted(i for _, i in a) == list(range(50))
    a.set_epoch(3)
    assert list(a) != list(b)


def test_warmup_cosine_schedule() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = warmup_cosine(opt, 100, 0.1)
    factors = []
    for _ in range(101):  # the factor of the base LR at each step
        factors.append(opt.param_groups[0]["lr"] / 2.0)
        opt.step()
        sched.step()
    f = factors.__getitem__
    assert f(0) == 0.1 and f(9) == 1.0
    assert abs(f(55) - 0.5) < 0.02 and f(100) == 0.0
    assert all(f(i) >= f(i + 1) for i in range(10, 100))


def test_batches_follow_what_the_backbone_declares() -> None:
    """Text batchers declare lengths (length-grouped training batches); image backbones declare channels_last."""
    from headstart.backbones import build_backbone
    from headstart.features import extract_items
    from headstart.training.engine import make_loader

    texts = ["a b c d e f g h", "a", "a b c", "a b c d e f", "a b"] * 4
    text_loader = make_loader(build_backbone("scratch:bow").preprocess(), texts, np.zeros(len(texts)), train=True,
                              batch_size=4, seed=0)
    assert isinstance(text_loader.batch_sampler, LengthGroupedBatches)
    cnn = build_backbone("scratch:cnn@32")
    image_loader = make_loader(cnn.preprocess(), [np.zeros((32, 32, 3), np.uint8)] * 8, np.zeros(8), train=True,
                               batch_size=4, seed=0)
    assert not isinstance(image_loader.batch_sampler, LengthGroupedBatches)
    x, _ = next(iter(image_loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    extract_items(cnn, [np.zeros((32, 32, 3), np.uint8)] * 3)
    conv = next(m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # the weights follow the declared format


def _selection_loss(run) -> float:
    """Cross-entropy of the saved model on the run's own selection split (what the fit called val_loss)."""
    ds = run.reload_data()
    items, y = run.labeled(ds, ds.val_idx)
    p = run.predict_proba(items)  # [N, classes], binary included
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def test_restore_best_and_patience_keep_the_epoch_with_the_lowest_selection_loss(tmp_path) -> None:
    """A fit that overfits (a large step on a small table): its selection loss falls, then rises.

    ``--restore-best`` runs every epoch and saves the weights of the lowest one; ``--patience K`` also stops
    K epochs after it. Without either, the last epoch is kept."""
    import csv

    import headstart

    from .conftest import write_text_table

    data = write_text_table(tmp_path / "t.csv", per_class=24, seed=2)
    common = dict(model="scratch:bow", strategy="scratch", epochs=30, lr=0.05, seed=0, val_fraction=0.3)

    def losses(run) -> list[float]:
        with open(run.path / "history.csv") as f:
            return [float(r["val_loss"]) for r in csv.DictReader(f)]

    last = headstart.fit(data, out=str(tmp_path / "last"), **common)
    curve = losses(last)
    best_epoch = int(np.argmin(curve)) + 1
    assert best_epoch < len(curve) - 3 and curve[-1] > min(curve) + 0.05, curve  # it does overfit
    assert last.metrics["fit"]["kept_epoch"] == 30
    assert _selection_loss(last) == pytest.approx(curve[-1], rel=1e-3)

    best = headstart.fit(data, out=str(tmp_path / "best"), restore_best=True, **common)
    assert losses(best) == pytest.approx(curve)  # the same fit: every epoch run
    assert best.metrics["fit"]["kept_epoch"] == best_epoch
    assert _selection_loss(best) == pytest.approx(min(curve), rel=1e-3)

    stopped = headstart.fit(data, out=str(tmp_path / "stop"), patience=3, **common)
    run_curve = losses(stopped)
    assert run_curve == pytest.approx(curve[: len(run_curve)])
    assert stopped.metrics["fit"]["epochs_run"] == len(run_curve) == best_epoch + 3  # stopped 3 epochs after the best
    assert stopped.metrics["fit"]["kept_epoch"] == best_epoch
    assert _selection_loss(stopped) == pytest.approx(min(curve), rel=1e-3)
