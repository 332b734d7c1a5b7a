"""Few-shot (`protonet`, `maml`, `headstart fewshot`, predict with a support set): MAML's second-order gradient
against finite differences, the episodes, and real episodic training on scikit-learn's digits (10 classes:
5 to meta-train, 5 never seen)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import headstart
from headstart.cli import app
from headstart.data import episodes, load_data, split_classes
from headstart.errors import ConfigError, HeadstartError
from headstart.run._support import Adaptable, adapt_inner, expand_head, functional_logits

FAST = {"model": "scratch:cnn@32", "class_split": "5,0,5", "epochs": 2, "train_episodes": 20, "eval_episodes": 60,
        "queries": 5}


# -- MAML's gradient --------------------------------------------------------------------------------------
class _Tiny(nn.Module):
    """A two-layer network in float64, with `forward_features` like every backbone."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4).double()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x))


def _outer_loss(net: Adaptable, params: dict[str, torch.Tensor], xs, ys, xq, yq, first_order: bool) -> torch.Tensor:
    done = adapt_inner(net, params, xs, ys, steps=2, lr=0.5, first_order=first_order)
    return F.cross_entropy(functional_logits(net, done, xq), yq)


def test_second_order_maml_gradient_matches_finite_differences() -> None:
    torch.manual_seed(0)
    net = Adaptable(_Tiny(), scale=2.0)
    w, b = torch.randn(1, 4, dtype=torch.float64) * 0.3, torch.zeros(1, dtype=torch.float64)
    xs, xq = torch.randn(6, 3, dtype=torch.float64), torch.randn(9, 3, dtype=torch.float64)
    ys, yq = torch.tensor([0, 1, 2] * 2), torch.tensor([0, 1, 2] * 3)
    params = {k: p.detach().clone().requires_grad_() for k, p in net.named_parameters()}
    w, b = w.requires_grad_(), b.requires_grad_()

    def loss(first_order: bool) -> torch.Tensor:
        return _outer_loss(net, params | expand_head(w, b, 3), xs, ys, xq, yq, first_order)

    second = torch.autograd.grad(loss(False), [*params.values(), w, b])
    first = torch.autograd.grad(loss(True), [*params.values(), w, b])
    eps, worst, fo_gap = 1e-6, 0.0, 0.0
    for tensor, g2, g1 in zip([*params.values(), w, b], second, first):
        flat = tensor.data.view(-1)
        for i in range(flat.numel()):
            keep = flat[i].item()
            flat[i] = keep + eps
            up = loss(False).item()
            flat[i] = keep - eps
            down = loss(False).item()
            flat[i] = keep
            numeric = (up - down) / (2 * eps)
            worst = max(worst, abs(numeric - g2.view(-1)[i].item()))
            fo_gap = max(fo_gap, abs(numeric - g1.view(-1)[i].item()))
    assert worst < 1e-6  # second order: exact up to finite-difference error
    assert fo_gap > 1e-3  # first order drops the inner steps' second derivatives, visibly here


# -- episodes ----------------------------------------------------------------------------------------------
def test_episodes_are_reproducible_disjoint_and_relabelled() -> None:
    y = np.repeat(np.arange(8), 12)
    y = np.concatenate([y, np.full(3, 8)])  # a rare class: 3 examples
    rows = np.arange(len(y))
    a = episodes(y, rows, list(range(9)), ways=4, shots=2, queries=5, n=30, seed=3)
    b = episodes(y, rows, list(range(9)), ways=4, shots=2, queries=5, n=10, seed=3)
    assert all(np.array_equal(x.support, z.support) and np.array_equal(x.query, z.query) for x, z in zip(a, b))
    assert not np.array_equal(a[0].support, episodes(y, rows, list(range(9)), 4, 2, 5, 1, seed=4)[0].support)
    for ep in a:
        assert not set(ep.support) & set(ep.query)
        assert sorted(set(ep.support_y)) == [0, 1, 2, 3]
        for label, c in enumerate(ep.classes):  # episode label k is the k-th class drawn
            assert (y[ep.support[ep.support_y == label]] == c).all() and (y[ep.query[ep.query_y == label]] == c).all()
    rare = [ep for ep in a if 8 in ep.classes]
    assert rare and all((ep.query_y == list(ep.classes).index(8)).sum() == 1 for ep in rare)  # 3 - 2 shots
    assert not any(8 in ep.classes for ep in episodes(y, rows, list(range(9)), 4, 3, 5, 30, seed=3))  # none to query


def test_class_split_by_seed_counts_and_lists() -> None:
    names = [f"c{i}" for i in range(10)]
    parts = split_classes(names, 5, seed=0, split="5,0,5")
    assert sorted(parts["train"] + parts["test"]) == list(range(10)) and parts["val"] == []
    assert split_classes(names, 5, seed=0, split="5,0,5") == parts != split_classes(names, 5, seed=1, split="5,0,5")
    given = split_classes(names, 2, seed=0, test=["c1", "c2"], val=["c3", "c4"])
    assert given["test"] == [1, 2] and given["val"] == [3, 4] and 1 not in given["train"]
    with pytest.raises(ConfigError, match="meta-test has 2 classes"):
        split_classes(names, 5, seed=0, split="8,0,2")
    with pytest.raises(ConfigError, match="not among"):
        split_classes(names, 2, seed=0, test=["nope", "c1"])


# -- training on real data -----------------------------------------------------------------------------------
def test_protonet_learns_classes_it_never_saw_against_the_same_episodes(tmp_path: Path) -> None:
    """The frozen random network's prototypes and the episodically trained ProtoNet, on the same meta-test
    episodes of the 5 digits neither trained on; table, plot and report written."""
    from headstart.tasks.fewshot import fewshot

    rows = fewshot("digits", methods="prototypes,protonet", ways=5, shots="1", episodes_n=60, queries=5,
                   out=tmp_path / "fs", model="scratch:cnn@32", class_split="5,0,5", epochs=3, train_episodes=40)
    by = {r["method"]: r for r in rows}
    assert by["protonet"]["accuracy"] > by["prototypes"]["accuracy"] + 0.1, by  # measured: 0.755 vs 0.555
    # The same episodes through a network whose weights cannot move (its BatchNorm statistics still adapt to
    # the digits): the gain is the prototype loss's, not the statistics'. Measured: 0.694.
    still = headstart.fit("digits", strategy="protonet", model="scratch:cnn@32", class_split="5,0,5", epochs=3,
                          train_episodes=40, shots=1, queries=5, eval_episodes=60, lr=1e-9, out=str(tmp_path / "still"))
    assert by["protonet"]["accuracy"] > still.metrics["test"]["accuracy"] + 0.04
    assert by["protonet"]["episodes"] == by["prototypes"]["episodes"] == 60
    for name in ("fewshot.csv", "fewshot.json", "fewshot.png", "report.html"):
        assert (tmp_path / "fs" / name).is_file()
    record = json.loads((tmp_path / "fs" / "fewshot.json").read_text())
    run = headstart.load(tmp_path / "fs" / "runs" / "protonet-1shot")
    assert sorted(run.metrics["test"]["classes"]) == sorted(record["classes"]["test"])  # scored on the split shown


def test_protonet_cosine_learns_its_scale(tmp_path: Path) -> None:
    run = headstart.fit("digits", strategy="protonet", distance="cosine", shots=1, out=str(tmp_path / "c"),
                        **{**FAST, "epochs": 1})
    model = json.loads((tmp_path / "c" / "model.json").read_text())
    assert model["support"]["metric"] == "cosine" and abs(model["support"]["scale"] - 10.0) > 1e-3  # from 10
    assert model["normalize"] == model["support"]["scale"]  # the saved head scores with the learned scale
    assert run.metrics["test"]["accuracy"] > 0.3


def _support_and_queries(tmp_path: Path, classes: list[str], shots: int = 5) -> tuple[Path, Path, dict[str, str]]:
    """Digit pictures of ``classes`` under new names: a support folder and a query folder with the truth."""
    ds, rng = load_data("digits"), np.random.default_rng(0)
    truth = {}
    for c in classes:
        rows = rng.permutation(np.flatnonzero(ds.y == ds.classes.index(c)))
        (tmp_path / "support" / f"digit-{c}").mkdir(parents=True)
        (tmp_path / "queries").mkdir(exist_ok=True)
        for i in rows[:shots]:
            Image.fromarray(ds.items[i]).save(tmp_path / "support" / f"digit-{c}" / f"{i}.png")
        for i in rows[shots:shots + 12]:
            Image.fromarray(ds.items[i]).save(tmp_path / "queries" / f"{i}.png")
            truth[f"{i}.png"] = f"digit-{c}"
    return tmp_path / "support", tmp_path / "queries", truth


def _accuracy(out: list[dict], truth: dict[str, str]) -> float:
    return float(np.mean([truth[Path(o["input"]).name] == o["label"] for o in out]))


def test_predict_with_a_support_set_names_new_classes(tmp_path: Path) -> None:
    run = headstart.fit("digits", strategy="protonet", shots=5, out=str(tmp_path / "p"), **FAST)
    unseen = run.metrics["test"]["classes"]
    support, queries, truth = _support_and_queries(tmp_path, unseen)
    out = run.predict(str(queries), support=str(support))
    assert {o["label"] for o in out} <= set(truth.values()) and len(out) == len(truth)
    assert _accuracy(out, truth) > 0.6  # chance: 0.2
    cli = CliRunner().invoke(app, ["predict", str(tmp_path / "p"), str(queries), "--support", str(support)],
                             env={"COLUMNS": "300"})
    assert cli.exit_code == 0, cli.output
    assert [json.loads(line)["label"] for line in cli.output.splitlines()] == [o["label"] for o in out]


@pytest.mark.parametrize("variant", ["maml", "anil"])
def test_maml_adapts_to_a_support_set_in_its_inner_steps(tmp_path: Path, variant: str) -> None:
    """After meta-training, the inner loop on 5 labeled examples per unseen class beats the start (every class
    equally likely) by far, at scoring and at predict time alike."""
    run = headstart.fit("digits", strategy="maml", maml_variant=variant, shots=5, inner_steps=3, out=str(tmp_path / "m"),
                        **{**FAST, "train_episodes": 16})
    assert run.support_rule["adapt"] == ("head" if variant == "anil" else "all")
    assert run.metrics["test"]["accuracy"] > 0.35, run.metrics["test"]
    support, queries, truth = _support_and_queries(tmp_path, run.metrics["test"]["classes"])
    assert _accuracy(run.predict(str(queries), support=str(support)), truth) > 0.35
    run.support_rule["steps"] = 0  # no adaptation: one shared row for every class, all equally likely
    for row in run.predict(str(queries), support=str(support)):
        assert list(row["probabilities"].values()) == pytest.approx([0.2] * 5, abs=1e-5)


def test_support_needs_a_few_shot_run_and_few_shot_needs_classes(tmp_path: Path) -> None:
    run = headstart.fit("digits", model="scratch:cnn@32", strategy="linear", out=str(tmp_path / "lin"))
    support, queries, _ = _support_and_queries(tmp_path, ["1", "2"], shots=2)
    with pytest.raises(HeadstartError, match="needs a few-shot run"):
        run.predict(str(queries), support=str(support))
    with pytest.raises(ConfigError, match="--maml-variant"):
        headstart.fit("digits", strategy="maml", maml_variant="reptile", out=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="meta-train has 3 classes"):
        headstart.fit("digits", strategy="protonet", class_split="3,0,7", out=str(tmp_path / "y"), model="scratch:cnn@32")
    assert not (tmp_path / "y").exists()  # a refused fit leaves no folder behind


def test_fewshot_command_prints_the_baselines_table(tmp_path: Path) -> None:
    cli = CliRunner().invoke(app, ["fewshot", "digits", "--shots", "1,5", "--episodes", "40",
                                                 "--methods", "prototypes,linear", "--out", str(tmp_path / "f"),
                                                 "--model", "scratch:cnn@32", "--class-split", "5,0,5"],
                             env={"COLUMNS": "300"})
    assert cli.exit_code == 0, cli.output
    assert "prototypes" in cli.output and "linear" in cli.output and "±" in cli.output
    rows = json.loads((tmp_path / "f" / "fewshot.json").read_text())["rows"]
    assert {(r["method"], r["shots"]) for r in rows} == {(m, k) for m in ("prototypes", "linear") for k in (1, 5)}
    five = {r["method"]: r["accuracy"] for r in rows if r["shots"] == 5}
    one = {r["method"]: r["accuracy"] for r in rows if r["shots"] == 1}
    assert five["prototypes"] > one["prototypes"]  # more shots, better prototypes, on the same classes
