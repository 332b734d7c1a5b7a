"""Domain adaptation (`source-only`, `dann`, `mmd`, `selftrain`): each method's defining term, the label-free
seed choice, and the shared measurements, on real tiny networks and a real shifted domain (inverted pictures)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import headstart
from headstart.errors import ConfigError
from tests.conftest import write_image_folder, write_text_table

TINY = "scratch:cnn-w8@32"


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Source: the synthetic discs; target: other draws of them with inverted colours (unlabeled for training)."""
    root = tmp_path_factory.mktemp("domains")
    src = write_image_folder(root / "source", per_class=24, classes=2, seed=1)
    raw = write_image_folder(root / "raw", per_class=24, classes=2, seed=2)
    for p in raw.rglob("*.png"):
        q = root / "target" / p.relative_to(raw)
        q.parent.mkdir(parents=True, exist_ok=True)
        ImageOps.invert(Image.open(p).convert("RGB")).save(q)
    return src, root / "target"


# -- dann: the reversed gradient -----------------------------------------------------------------------
def _strategy(name: str, src: Path, tgt: Path, tmp_path: Path, **options: object):  # noqa: ANN202
    from headstart.backbones import build_backbone
    from headstart.config import FitConfig
    from headstart.data import load_data
    from headstart.heads import make_head
    from headstart.training.strategies import FitContext, get_strategy

    cfg = FitConfig(data=str(src), model=TINY, strategy=name, epochs=2, label_smoothing=0.0,
                    options={"unlabeled_target": str(tgt), **options}).resolved("image", 10)
    ds = load_data(str(src), seed=0)
    torch.manual_seed(0)
    bb = build_backbone(TINY)
    ctx = FitContext(cfg=cfg, data=ds, backbone=bb, head=make_head(ds.task, bb.num_features, ds.num_classes),
                     run_dir=tmp_path / "run", cache_dir=tmp_path / "cache")
    s = get_strategy(name)(cfg)
    s.prepare(ctx)
    items, rows = s.train_examples(ctx)
    pick = np.r_[np.arange(6), np.arange(len(items) - 6, len(items))]  # six source rows, six target rows
    batch = (s.batcher(True, ctx)([items[i] for i in pick]), torch.as_tensor(rows[pick]))
    return s, ctx, batch


def _grads(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    out = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    return out


def test_dann_sends_the_domain_gradient_reversed_into_the_backbone(domains: tuple[Path, Path], tmp_path: Path) -> None:
    """Backbone gradient = classification gradient - coefficient x domain-loss gradient; the discriminator
    itself gets the domain loss's gradient unreversed (it learns to tell the domains apart)."""
    import torch.nn.functional as F

    s, ctx, batch = _strategy("dann", *domains, tmp_path)
    s.step, s.total_steps = 3, 10
    coef = s.coefficient()
    assert coef == pytest.approx(2 / (1 + math.exp(-3.0)) - 1)
    for m in (ctx.backbone, ctx.head, s.discriminator):
        m.eval()  # no dropout or batch statistics: the three passes below see the same network
    bb, disc = list(ctx.backbone.parameters()), list(s.discriminator.parameters())
    s.training_step(batch, ctx)["loss"].backward()
    g_bb, g_disc = _grads(bb), _grads(disc)
    x, rows = batch
    y = s.labels[rows]
    src = y >= 0
    feats = ctx.backbone.forward_features(x)
    ctx.head.loss(ctx.head(feats[src]), y[src]).backward()
    g_cls = _grads(bb)
    _grads(list(ctx.head.parameters()))
    feats = ctx.backbone.forward_features(x)
    F.binary_cross_entropy_with_logits(s.discriminator(feats).view(-1), (~src).float()).backward()
    g_dom, g_disc_ref = _grads(bb), _grads(disc)
    assert max(float(g.abs().max()) for g in g_dom) > 1e-5
    for a, c, d in zip(g_bb, g_cls, g_dom):
        torch.testing.assert_close(a, c - coef * d, atol=1e-6, rtol=1e-4)
    for a, d in zip(g_disc, g_disc_ref):
        torch.testing.assert_close(a, d, atol=1e-6, rtol=1e-4)


# -- selftrain: pseudo-labels and their class balance -------------------------------------------------
def test_selftrain_learns_its_confident_pseudo_labels_on_the_strong_view(domains: tuple[Path, Path], tmp_path: Path) -> None:
    s, ctx, batch = _strategy("selftrain", *domains, tmp_path, pseudo_threshold=0.6, pseudo_warmup=0.0)
    assert isinstance(batch[0], tuple) and batch[0][0].shape == batch[0][1].shape  # (weak, strong) views
    with torch.no_grad():  # a head that is confident on the target rows
        ctx.head.fc.bias.fill_(3.0)
    ctx.head.fc.weight.data.mul_(0.0)
    x, rows = batch
    tgt = s.labels[rows] < 0
    assert s.training_step(batch, ctx)["log"]["pseudo_kept"] == 1.0  # every target row is confident
    term, log = s.adaptation(x, ctx.backbone.forward_features(x[0]), ~tgt, ctx)
    assert float(log["pseudo_loss"]) > 0
    ctx.head.zero_grad()
    term.backward()
    # the pseudo-label is class 1 (bias +3): gradient descent raises that logit further
    assert ctx.head.fc.bias.grad is not None and float(ctx.head.fc.bias.grad) < 0


def test_selftrain_class_balance_stops_one_class_taking_every_pseudo_label(domains: tuple[Path, Path], tmp_path: Path) -> None:
    """Two guards: distribution alignment (soft predictions leaning one way stop being confident) and the
    quota (confident predictions of one class stop being used once its share passes min(2 p, (1 + p) / 2))."""
    s, _, _ = _strategy("selftrain", *domains, tmp_path, pseudo_threshold=0.9)
    fresh = s.prior.clone()
    leaning = torch.tensor([[0.93, 0.07]] * 16)
    kept = [float(s.pseudo_labels(leaning)[1].float().mean()) for _ in range(4)]
    assert kept[0] == 1.0 and kept[-1] == 0.0  # alignment: 0.93 is not confident once the target mean is 0.93
    s.target_mean, s.confident_share = fresh.clone(), fresh.clone()
    collapsed = torch.tensor([[1.0, 0.0]] * 16)  # a softmax that underflowed: alignment alone barely moves it
    kept = [float(s.pseudo_labels(collapsed)[1].float().mean()) for _ in range(12)]
    assert kept[0] == 1.0 and kept[-1] == 0.0  # the quota: class 0's share passed 0.75
    s.target_mean, s.confident_share = fresh.clone(), fresh.clone()
    balanced = torch.tensor([[0.97, 0.03], [0.03, 0.97]] * 8)
    assert all(float(s.pseudo_labels(balanced)[1].float().mean()) == 1.0 for _ in range(12))


def test_selftrain_waits_for_the_source_before_pseudo_labelling(domains: tuple[Path, Path], tmp_path: Path) -> None:
    s, ctx, batch = _strategy("selftrain", *domains, tmp_path, pseudo_threshold=0.6, pseudo_warmup=0.5)
    with torch.no_grad():
        ctx.head.fc.bias.fill_(3.0)
        ctx.head.fc.weight.mul_(0.0)
    s.step = s.total_steps // 2 - 1  # still warming up: the source alone
    assert s.training_step(batch, ctx)["log"]["pseudo_kept"] == 0.0
    assert s.training_step(batch, ctx)["log"]["pseudo_kept"] == 1.0  # from half-way on


# -- whole fits: mmd pulls the domains together, the measurements and the seeds -------------------------
def test_mmd_pulls_the_domains_together_where_source_only_does_not(domains: tuple[Path, Path], tmp_path: Path) -> None:
    src, tgt = domains
    after = {}
    for name in ("source-only", "mmd"):
        run = headstart.fit(src, model=TINY, strategy=name, unlabeled_target=str(tgt), target_eval=str(tgt), epochs=12,
                            augment="none", seeds=1, out=str(tmp_path / name))
        rec = run.metrics["adapt"]
        after[name] = rec["distance"]["after"]["mmd2_multi"]
        assert rec["distance"]["before"]["mmd2_multi"] > 0.5  # the inverted pictures are far apart as loaded
        assert rec["target_eval"]["n"] == 48 and 0.0 <= rec["target_eval"]["accuracy"] <= 1.0
        assert run.metrics["selection_criterion"]["name"] == "dev_risk"
        assert {"domains_before.png", "domains_after.png"} <= {p.name for p in (run.path / "plots").iterdir()}
        assert "Domain distance" in (run.path / "report.html").read_text()
    assert after["mmd"] < 0.25 * after["source-only"], after


def test_seeds_keep_the_label_free_best_and_resume_skips_finished_ones(domains: tuple[Path, Path], tmp_path: Path) -> None:
    src, tgt = domains
    out = tmp_path / "three"
    first = headstart.fit(src, model=TINY, strategy="mmd", unlabeled_target=str(tgt), epochs=2, seeds=1, seed=5,
                          out=str(out / "seeds" / "seed-5"))  # as if an interrupted 2-seed fit had finished seed 5
    done = json.loads((first.path / "metrics.json").read_text())
    done["selection_criterion"]["value"] = -100.0  # a mark: only read from this file, never computed
    (first.path / "metrics.json").write_text(json.dumps(done))
    run = headstart.fit(src, model=TINY, strategy="mmd", unlabeled_target=str(tgt), epochs=2, seeds=2, seed=5,
                        out=str(out), resume=True)
    rec = run.metrics["seeds"]
    assert [r["seed"] for r in rec["rows"]] == [5, 6] and rec["n"] == 2
    assert rec["rows"][0]["criterion"] == -100.0 and rec["rows"][1]["criterion"] > -100.0  # seed 5 was not fitted again
    assert rec["kept"] == 5 and "dev_risk" in rec["by"]  # the lower DEV risk
    assert (out / "seeds" / "seed-6" / "metrics.json").is_file()
    assert not (out / "seeds" / "seed-6" / "model.safetensors").exists()
    assert run.config["seed"] == rec["kept"] and json.loads((out / "metrics.json").read_text())["seeds"]["kept"] == rec["kept"]
    assert set(rec["spread"]) >= {"test_score", "selection_score"}
    assert "Seeds" in (out / "report.html").read_text()
    assert run.predict(str(src / "left"))[0]["label"] in ("left", "right")
    # another strategy asked for seeds: kept by selection-split accuracy
    plain = headstart.fit(src, model=TINY, strategy="finetune", epochs=1, seeds=2, out=str(tmp_path / "plain"))
    assert plain.metrics["seeds"]["by"] == "selection-split accuracy"


def test_bad_domain_adaptation_input_is_named(domains: tuple[Path, Path], tmp_path: Path) -> None:
    src, tgt = domains
    with pytest.raises(ConfigError, match="needs --unlabeled-target"):
        headstart.fit(src, model=TINY, strategy="dann", epochs=1, out=str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="--unlabeled-target: .* must be a folder of images"):
        headstart.fit(src, model=TINY, strategy="dann", epochs=1, seeds=1, out=str(tmp_path / "b"),
                      unlabeled_target=str(write_text_table(tmp_path / "t.csv")))
    other = write_image_folder(tmp_path / "three", per_class=3, classes=3, seed=3)
    with pytest.raises(ConfigError, match="--target-eval: .* source's classes"):  # refused in the first of 3 seeds
        headstart.fit(src, model=TINY, strategy="mmd", epochs=1, out=str(tmp_path / "c"),
                      unlabeled_target=str(tgt), target_eval=str(other))
    with pytest.raises(ConfigError, match="--pseudo-threshold"):
        headstart.fit(src, model=TINY, strategy="selftrain", epochs=1, out=str(tmp_path / "d"),
                      unlabeled_target=str(tgt), pseudo_threshold=1.5)
    assert not any((tmp_path / n).exists() for n in "abcd")  # refused before anything was written


@pytest.mark.parametrize("name", ["dann", "mmd", "selftrain"])
def test_a_batch_of_one_domain_still_trains(name: str, domains: tuple[Path, Path], tmp_path: Path) -> None:
    """Batches are draws from the union: one may hold target rows only (no classification term) or source
    rows only (no target term); the step must still give a finite loss that backpropagates."""
    s, ctx, (x, rows) = _strategy(name, *domains, tmp_path, **({"pseudo_warmup": 0.0} if name == "selftrain" else {}))
    for part in (slice(0, 6), slice(6, 12)):  # the source rows, then the target rows
        xs = tuple(v[part] for v in x) if isinstance(x, tuple) else x[part]
        loss = s.training_step((xs, rows[part]), ctx)["loss"]
        assert torch.isfinite(loss)
        loss.backward()
    if name == "selftrain":
        label, keep = s.pseudo_labels(torch.zeros(0, 2))
        assert label.shape == keep.shape == (0,)
