"""The fine-tuning toolbox: what each strategy promises, checked on real tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import headstart
from headstart.backbones import build_backbone
from headstart.errors import ConfigError
from headstart.evaluate import compute_metrics
from tests.conftest import write_image_folder, write_text_table


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs", per_class=24)


def group_states(backbone: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    return [{k: v.clone() for k, v in g.state_dict().items()} for g in backbone.layer_groups()]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- options ------------------------------------------------------------------------------
def test_an_option_of_another_strategy_is_refused(images: Path) -> None:
    with pytest.raises(ConfigError, match=r"--lora-r belongs to strategy lora, not finetune"):
        headstart.fit(images, model="scratch:cnn@32", strategy="finetune", lora_r=4, epochs=1)
    with pytest.raises(ConfigError, match=r"--lora-r: 0 must be at least 1"):
        headstart.fit(images, model="scratch:cnn@32", strategy="lora", lora_r=0, epochs=1)
    with pytest.raises(ConfigError, match="needs --source-data"):
        headstart.fit(images, model="scratch:cnn@32", strategy="joint", epochs=1)
    with pytest.raises(ConfigError, match="--source-data: nowhere/ does not exist"):
        headstart.fit(images, model="scratch:cnn@32", strategy="joint", source_data="nowhere/", epochs=1)
    assert not Path("runs").exists()  # refused before any run directory was made


def test_strategy_options_are_recorded_and_given_as_flags(images: Path, source_run: str) -> None:
    from typer.testing import CliRunner

    from headstart.cli import app

    res = CliRunner().invoke(app, ["fit", str(images), "--model", f"run:{source_run}", "--strategy", "gradual",
                                   "--unfreeze-every", "2", "--epochs", "2", "--out", "runs/g"])
    assert res.exit_code == 0, res.output
    cfg = headstart.load("runs/g").config
    assert cfg["options"] == {"unfreeze_every": 2}
    again = headstart.FitConfig.from_yaml("runs/g/config.yaml")  # the record re-runs as it was
    assert again.options == {"unfreeze_every": 2} and again.strategy == "gradual"


# -- lora -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lora_text_run(tmp_path_factory: pytest.TempPathFactory) -> headstart.Run:
    root = tmp_path_factory.mktemp("lora")
    data = write_text_table(root / "t.csv", per_class=30)
    return headstart.fit(data, model="minilm", strategy="lora", out=str(root / "run"), epochs=3,
                         cache_dir=str(root / "cache"))


def test_lora_trains_under_one_percent_and_leaves_the_base_weights(lora_text_run: headstart.Run) -> None:
    run = lora_text_run
    f = run.metrics["fit"]
    assert f["adapter_fraction"] < 0.01 and f["lora_targets"] == 24  # q, k, v, attention output x 6 layers
    assert f["trainable_parameters"] == f["adapter_parameters"] + 384 * 1 + 1  # adapters + the binary head
    assert run.metrics["test"]["accuracy"] >= 0.85
    base = build_backbone("minilm").state_dict()
    state = load_file(str(run.path / "model.safetensors"))
    key = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(state[f"backbone.model.{key.replace('.weight', '.base_layer.weight')}"], base[f"model.{key}"])
    assert any("lora_B" in k and state[k].abs().sum() > 0 for k in state)  # the adapters did learn


def test_lora_adapter_folder_loads_with_plain_peft_and_keeps_the_head(lora_text_run: headstart.Run) -> None:
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    from headstart.backbones.text import minilm_path

    folder = lora_text_run.path / "adapter"
    assert json.loads((folder / "labels.json").read_text())["classes"] == lora_text_run.classes
    texts = ["the coach and the team scored a goal today", "bake the flour in the oven"]
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(minilm_path()), str(folder)).eval()
    tok = AutoTokenizer.from_pretrained(minilm_path())
    head = load_file(str(folder / "head.safetensors"))
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        logit = ((hidden * mask).sum(1) / mask.sum(1)) @ head["fc.weight"].T + head["fc.bias"]
    ours = lora_text_run.predict_proba(texts)[:, 1]
    assert np.allclose(torch.sigmoid(logit).view(-1).numpy(), ours, atol=1e-4)


def test_lora_merge_writes_a_plain_network_with_the_same_predictions(images: Path, source_run: str) -> None:
    kw = dict(model=f"run:{source_run}", strategy="lora", epochs=4, seed=3)
    adapters = headstart.fit(images, out="runs/a", **kw)
    merged = headstart.fit(images, out="runs/m", merge=True, **kw)
    assert "lora" in json.loads((adapters.path / "model.json").read_text())["backbone"]
    assert "lora" not in json.loads((merged.path / "model.json").read_text())["backbone"]
    assert not any("lora_" in k for k in load_file(str(merged.path / "model.safetensors")))
    ds = headstart.load_data(images)
    probe = [ds.items[i] for i in ds.test_idx]
    assert np.allclose(adapters.predict_proba(probe), merged.predict_proba(probe), atol=1e-4)
    assert (merged.path / "adapter" / "adapter_model.safetensors").is_file()


def test_lora_targets_follow_the_architecture() -> None:
    import timm

    from headstart.training.strategies.lora import default_targets, resolve_targets

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, num_classes=0)
    assert default_targets(vit) == ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.1.attn.qkv", "blocks.1.attn.proj"]
    cnn = build_backbone(f"py:{Path(__file__).parents[2] / 'benchmarks' / 'factories.py'}:mobilenet_v1_025", pretrained=False)
    names = default_targets(cnn.net)
    assert len(names) == 13 and all(cnn.net.get_submodule(n).kernel_size == (1, 1) for n in names)  # pointwise convs
    with pytest.raises(ConfigError, match="no module named 'qkv'"):
        resolve_targets(cnn.net, ["qkv"])


# -- lp-ft ------------------------------------------------------------------------------------
def test_lp_ft_starts_fine_tuning_from_the_probe(images: Path, source_run: str) -> None:
    common = dict(model=f"run:{source_run}", seed=1, cv_folds=3)
    # lp-ft keeps the model's own (average) pooling for both phases; plain `linear` would default to avgmax
    # No selection split for this pair: `linear` cross-validates over train + selection, while lp-ft's probe
    # leaves the selection split out for the fine-tuning phase; without one both fit the same examples.
    probe = headstart.fit(images, strategy="linear", pool="avg", out="runs/lp", val_fraction=0, **common)
    # fine-tuning phase with (almost) no step and every group frozen: the result is the probe itself
    still = headstart.fit(images, strategy="lp-ft", out="runs/still", epochs=1, freeze=99, ft_lr=1e-12, val_fraction=0,
                          **common)
    ds = headstart.load_data(images)
    x = [ds.items[i] for i in ds.test_idx]
    assert np.allclose(still.predict_proba(x), probe.predict_proba(x), atol=1e-5)
    assert still.metrics["fit"]["lp_C"] == probe.metrics["fit"]["C"]
    lpft = headstart.fit(images, strategy="lp-ft", out="runs/lpft", epochs=3, **common)
    assert lpft.metrics["fit"]["ft_lr"] == pytest.approx(lpft.config["lr"] / 10)
    assert lpft.metrics["test"]["accuracy"] >= 0.9
    # reported on the fine-tuned backbone, not on the probe's cached features (the run's own split: seed 1)
    split = lpft.reload_data()
    probs = lpft.predict_proba([split.items[i] for i in split.test_idx])
    assert lpft.metrics["test"]["log_loss"] == pytest.approx(
        compute_metrics(split.y[split.test_idx], probs, split.task, split.classes)["log_loss"], rel=1e-4)


def test_lp_ft_probe_fits_the_training_split_only_while_linear_fits_selection_too(images: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from headstart.config import FitConfig
    from headstart.features import head_outputs
    from headstart.heads import make_head
    from headstart.training.strategies import FitContext
    from headstart.training.strategies.linear import Linear
    from headstart.training.strategies.lp_ft import _Probe

    ds = headstart.load_data(images, val_fraction=0.3)
    bb = build_backbone("scratch:cnn@32")
    cfg = FitConfig(data=str(images), cv_folds=2)
    got = {}
    for cls, pool in ((Linear, np.concatenate([ds.train_idx, ds.val_idx])), (_Probe, ds.train_idx)):
        ctx = FitContext(cfg=cfg, data=ds, backbone=bb, head=make_head(ds.task, bb.num_features, ds.num_classes),
                         run_dir=tmp_path / cls.__name__, cache_dir=tmp_path / "cache")
        cls(cfg).prepare(ctx)
        feats = np.asarray(ctx.features, dtype=np.float64)
        sc = StandardScaler().fit(feats[pool])
        sc.scale_ = np.maximum(sc.scale_, 1e-3 * np.median(sc.scale_))  # the strategy's floor on the spread
        clf = LogisticRegression(C=ctx.info["C"], max_iter=3000, tol=1e-8).fit(sc.transform(feats[pool]), ds.y[pool])
        probs = head_outputs(ctx.head, feats[ds.test_idx])
        assert np.allclose(probs, clf.predict_proba(sc.transform(feats[ds.test_idx])), atol=2e-3), cls.__name__
        got[cls] = ctx.head.fc.weight.detach().clone()
    assert not torch.allclose(got[Linear], got[_Probe], atol=1e-3)  # the pools differ, so do the heads


# -- gradual ------------------------------------------------------------------------------------
def test_gradual_unfreezes_top_down_on_schedule(images: Path, source_run: str) -> None:
    before = group_states(build_backbone(f"run:{source_run}"))
    run = headstart.fit(images, model=f"run:{source_run}", strategy="gradual", unfreeze_every=2, epochs=4, out="runs/g")
    history = (run.path / "history.csv").read_text().splitlines()
    col = history[0].split(",").index("unfrozen_groups")
    assert [int(r.split(",")[col]) for r in history[1:]] == [0, 0, 1, 1]
    after = group_states(run.backbone)
    n = len(after)
    for i in range(n):  # only the top group was ever unfrozen; the others are untouched, BN statistics included
        assert same(before[i], after[i]) == (i < n - 1), f"group {i}"


# -- l2sp -----------------------------------------------------------------------------------------
def test_l2sp_keeps_the_weights_near_the_pretrained_ones(images: Path, source_run: str) -> None:
    from headstart.training.strategies.l2sp import l2sp_penalty

    start = build_backbone(f"run:{source_run}")
    w0 = [p.detach().clone() for p in start.parameters()]
    kw = dict(model=f"run:{source_run}", strategy="l2sp", epochs=5, seed=2, lr=5e-3)
    far = headstart.fit(images, out="runs/free", l2sp_alpha=0.0, **kw)
    near = headstart.fit(images, out="runs/pulled", l2sp_alpha=50.0, **kw)
    dist = lambda run: float(l2sp_penalty([p.detach() for p in run.backbone.parameters()], w0))  # noqa: E731
    assert dist(near) < 0.5 * dist(far)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    assert float(l2sp_penalty([a], [b])) == pytest.approx(float(((a - b) ** 2).sum()))


# -- joint ------------------------------------------------------------------------------------------
def test_joint_trains_two_heads_and_saves_the_target_model(images: Path, tmp_path: Path, source_run: str) -> None:
    from headstart.training.strategies.joint import target_weight

    source = write_image_folder(tmp_path / "source", per_class=15, classes=3, seed=5)
    run = headstart.fit(images, model=f"run:{source_run}", strategy="joint", source_data=str(source), epochs=4,
                        joint_lambda=2.0, joint_schedule="linear", out="runs/j")
    rows = (run.path / "history.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert {"train_source_loss", "train_target_loss", "lambda"} <= set(header)
    lam = [float(r.split(",")[header.index("lambda")]) for r in rows[1:]]
    assert lam == pytest.approx([0.0, 2 / 3, 4 / 3, 2.0])
    assert run.metrics["fit"]["source_examples"] == 45 and run.metrics["fit"]["source_classes"] == 3
    assert not any("source" in k for k in load_file(str(run.path / "model.safetensors")))
    assert run.metrics["test"]["accuracy"] >= 0.75
    assert target_weight(1.0, "cosine", 0, 5) == 0.0 and target_weight(1.0, "cosine", 4, 5) == pytest.approx(1.0)
    for schedule in ("linear", "cosine"):  # short fits: the last epoch has the full weight, a single one too
        assert [target_weight(2.0, schedule, e, 2) for e in (0, 1)] == pytest.approx([0.0, 2.0])
        assert target_weight(2.0, schedule, 0, 1) == 2.0
    with pytest.raises(ConfigError, match="holds texts but the target"):
        headstart.fit(images, model=f"run:{source_run}", strategy="joint", epochs=1, out="runs/j2",
                      source_data=str(write_text_table(tmp_path / "t.csv")))


# -- BatchNorm of frozen layers ------------------------------------------------------------------------
def test_train_bn_lets_frozen_batchnorm_statistics_move(images: Path, source_run: str) -> None:
    before = group_states(build_backbone(f"run:{source_run}"))
    kw = dict(model=f"run:{source_run}", strategy="finetune", freeze=2, epochs=2)
    kept = headstart.fit(images, out="runs/kept", **kw)
    moved = headstart.fit(images, out="runs/moved", train_bn=True, **kw)
    stats = lambda s: {k: v for k, v in s.items() if "running" in k}  # noqa: E731
    assert same(stats(before[1]), stats(group_states(kept.backbone)[1]))
    assert not same(stats(before[1]), stats(group_states(moved.backbone)[1]))
    weights = lambda s: {k: v for k, v in s.items() if k.endswith("weight")}  # noqa: E731
    assert same(weights(before[0]), weights(group_states(moved.backbone)[0]))  # still frozen


# -- partial feature caching ---------------------------------------------------------------------------
def test_cached_frozen_layers_train_exactly_like_running_them(images: Path, source_run: str) -> None:
    kw = dict(model=f"run:{source_run}", strategy="finetune", freeze=2, augment="none", epochs=3, seed=4)
    cached = headstart.fit(images, out="runs/c", **kw)
    plain = headstart.fit(images, out="runs/p", cache_frozen="no", **kw)
    assert cached.metrics["fit"]["cache_frozen"].startswith("on: output of 2 frozen groups")
    assert plain.metrics["fit"]["cache_frozen"].startswith("off")
    for key in ("accuracy", "log_loss"):
        assert cached.metrics["test"][key] == pytest.approx(plain.metrics["test"][key], abs=1e-5)
    for a, b in zip(cached.backbone.state_dict().values(), plain.backbone.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-4)
    # the saved model runs its own forward again (no bypass left behind)
    assert all("forward" not in m.__dict__ for m in cached.backbone.modules())


def test_frozen_cache_works_past_one_extraction_batch(tmp_path: Path, source_run: str) -> None:
    """More training images than one caching batch (64): the pass that folds BatchNorm into the convolutions
    for speed must leave the cut module in place (a traced copy never reached it: 'frozen boundary not reached')."""
    many = write_image_folder(tmp_path / "many", per_class=60)
    kw = dict(model=f"run:{source_run}", strategy="finetune", freeze=1, augment="none", epochs=1, seed=4)
    cached = headstart.fit(many, out="runs/c", **kw)
    assert cached.metrics["data"]["n_train"] > 64 and cached.metrics["fit"]["cache_frozen"].startswith("on")
    plain = headstart.fit(many, out="runs/p", cache_frozen="no", **kw)
    assert cached.metrics["test"]["log_loss"] == pytest.approx(plain.metrics["test"]["log_loss"], abs=1e-5)


def test_frozen_cache_refuses_what_it_cannot_do(images: Path, source_run: str) -> None:
    with pytest.raises(ConfigError, match="augmented"):
        headstart.fit(images, model=f"run:{source_run}", freeze=2, cache_frozen="yes", augment="light", epochs=1, out="runs/1")
    with pytest.raises(ConfigError, match="nothing is frozen"):
        headstart.fit(images, model=f"run:{source_run}", cache_frozen="yes", augment="none", epochs=1, out="runs/2")
    factory = Path(__file__).parents[1] / "backbones" / "tiny_factory.py"
    with pytest.raises(ConfigError, match="needs its input between frozen layers"):
        headstart.fit(images, model=f"py:{factory}:tiny_vit_like", pretrained=False, freeze=2, cache_frozen="yes",
                      augment="none", epochs=1, out="runs/3")
    assert not any(Path("runs", n).exists() for n in ("1", "2", "3"))  # refused: no folder left to --overwrite
    with pytest.warns(UserWarning, match="frozen layers not cached"):  # auto: trains without the cache, says why
        run = headstart.fit(images, model=f"py:{factory}:tiny_vit_like", pretrained=False, freeze=2, augment="none",
                            epochs=1, out="runs/vit")
    assert run.metrics["fit"]["cache_frozen"].startswith("off: the network's forward needs its input")


def test_a_group_unfrozen_by_gradual_trains_its_batchnorm_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frozen: BatchNorm in eval (statistics kept). Unfrozen later: back in train mode, in a fit and in a resume alike."""
    from headstart.config import FitConfig
    from headstart.heads import make_head
    from headstart.training.engine import TrainableModule
    from headstart.training.strategies import FitContext, get_strategy

    cfg = FitConfig(data="x", strategy="gradual", epochs=4, lr=1e-3, options={"start_unfrozen": 0, "unfreeze_every": 1})
    bb = build_backbone("scratch:cnn@32")
    strategy = get_strategy("gradual")(cfg)
    ctx = FitContext(cfg=cfg, data=None, backbone=bb, head=make_head("binary", bb.num_features, 2), run_dir=Path("."),
                     cache_dir=Path("."))
    strategy.prepare(ctx)
    module = TrainableModule(strategy, ctx, total_steps=8)
    bottom_bn = [m for m in strategy.movable[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bottom_bn
    modes = []
    for epoch in range(len(strategy.movable) + 1):
        module._epoch_entered = None
        module.trainer = None
        # what Lightning would report; monkeypatch puts the class back even when the test fails
        monkeypatch.setattr(type(module), "current_epoch", property(lambda self, e=epoch: e))
        module._enter_epoch()
        modes.append(bottom_bn[0].training)
    assert modes[0] is False and modes[-1] is True  # frozen at first, training once its group is unfrozen
