"""multitask (issue 17): several targets on one backbone, missing labels masked, three ways to weigh the losses.
Real fits of a bag-of-words model on small tables; the weighting rules checked against their formulas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.config import FitConfig
from headstart.data import load_data
from headstart.errors import ConfigError
from headstart.training.strategies import FitContext, get_strategy
from headstart.training.strategies.multitask import dwa_weights

WORDS = {"A": ["apple", "pear", "plum"], "B": ["brake", "wheel", "gear"]}


def write_table(path: Path, n: int = 180, seed: int = 0) -> Path:
    """coarse (A/B) and fine (A0..B2) classes, a value that follows the fine class, and a noise value; every 5th
    row lacks its fine label, every 7th its value."""
    rng = np.random.default_rng(seed)
    lines = ["text,coarse,fine,value,noise"]
    for i in range(n):
        c = "AB"[i % 2]
        k = int(rng.integers(0, 3))
        text = f"{WORDS[c][k]} {WORDS[c][(k + 1) % 3]} item {i}"
        fine = "" if i % 5 == 0 else f"{c}{k}"
        value = "" if i % 7 == 0 else f"{(3 * k + (c == 'B')) + rng.normal(0, 0.1):.3f}"
        lines.append(f"{text},{c},{fine},{value},{rng.normal():.3f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_label_column_is_a_task_and_missing_labels_keep_their_row(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.csv")
    ds = load_data(table, text_col="text", label_col=["coarse", "fine", "value"], multitask=True)
    assert ds.task == "multitask" and len(ds.items) == 180  # no row dropped for a missing fine label or value
    t = ds.targets
    assert (t["coarse"].task, t["fine"].task, t["value"].task) == ("binary", "multiclass", "regression")
    assert int(t["coarse"].known.sum()) == 180 and int(t["fine"].known.sum()) == 180 - 36
    assert int(t["value"].known.sum()) == 180 - 26
    order = np.argsort([int(r.split(":")[-1]) for r in ds.refs])
    assert t["fine"].y[order][0] == -1 and np.isnan(t["value"].y[order][0]).all()  # line 2 = row 0: no fine, no value
    assert ds.decided["task"]["value"] == "coarse: binary, fine: multiclass, value: regression"


def test_several_datasets_each_keep_their_own_split(tmp_path: Path) -> None:
    a = write_table(tmp_path / "a.csv", n=100)
    b = tmp_path / "b.csv"
    b.write_text("text,label\n" + "".join(f"{WORDS['AB'[i % 2]][0]} thing {i},{'AB'[i % 2]}\n" for i in range(60)))
    ds = load_data("", tasks={"one": str(a), "two": str(b)}, label_col=None)
    alone = load_data(a)
    assert ds.task == "multitask" and len(ds.items) == 160 and list(ds.targets) == ["one", "two"]
    np.testing.assert_array_equal(ds.test_idx[ds.test_idx < 100], alone.test_idx)
    assert not ds.targets["one"].known[100:].any() and not ds.targets["two"].known[:100].any()


def _strategy(tmp_path: Path, **options: object) -> tuple[object, FitContext]:
    from headstart.backbones import build_backbone

    table = write_table(tmp_path / "t.csv")
    cfg = FitConfig(data=str(table), model="scratch:bow", strategy="multitask", text_col=["text"],
                    label_col=["coarse", "fine", "value"], options=dict(options)).resolved("text", 100)
    cls = get_strategy("multitask")
    ds = cls.read_data(cfg)
    ctx = FitContext(cfg=cfg, data=ds, backbone=build_backbone("scratch:bow"), head=None, run_dir=Path("r"),  # type: ignore[arg-type]
                     cache_dir=tmp_path / "cache")
    s = cls(cfg)
    s.new_head(ctx)
    s.prepare(ctx)
    return s, ctx


def test_a_task_loss_is_the_mean_over_the_rows_that_carry_its_label(tmp_path: Path) -> None:
    import torch.nn.functional as F

    s, ctx = _strategy(tmp_path)
    rows = torch.arange(0, 20)  # positions in the data: some without a fine label or a value
    x = ctx.backbone.preprocess()([ctx.data.items[i] for i in rows])
    logits = ctx.head.logits(ctx.backbone.forward_features(x))
    got = s.task_losses(logits, rows, ctx)
    fine = ctx.data.targets["fine"]
    m = torch.as_tensor(fine.known[rows.numpy()])
    assert 0 < int(m.sum()) < 20
    want = F.cross_entropy(logits["fine"][m], torch.as_tensor(fine.y[rows.numpy()])[m], label_smoothing=0.1)
    assert got["fine"].item() == pytest.approx(want.item(), rel=1e-6)
    value = ctx.data.targets["value"]
    mv = value.known[rows.numpy()]
    head = ctx.head.heads["value"]
    z = (torch.as_tensor(value.y[rows.numpy()][mv]) - head.target_mean) / head.target_std
    assert got["value"].item() == pytest.approx(F.mse_loss(logits["value"][torch.as_tensor(mv)], z).item(), rel=1e-5)
    assert set(got) == {"coarse", "fine", "value"}
    few = torch.tensor([0, 5, 10])  # rows without a fine label: no term
    assert "fine" not in s.task_losses({k: v[few] for k, v in logits.items()}, few, ctx)


def test_uncertainty_weighting_is_kendalls_likelihood(tmp_path: Path) -> None:
    s, ctx = _strategy(tmp_path, task_weighting="uncertainty", task_weight=["fine=2"])
    with torch.no_grad():
        s.log_var.copy_(torch.tensor([0.5, -1.0, 2.0]))
    losses = {"coarse": torch.tensor(0.7), "fine": torch.tensor(1.3), "value": torch.tensor(0.4)}
    want = (0.7 * np.exp(-0.5) + 0.25) + (2 * 1.3 * np.exp(1.0) - 0.5) + (0.5 * 0.4 * np.exp(-2.0) + 1.0)
    assert s.combine(losses).item() == pytest.approx(want, rel=1e-6)
    assert any(p is s.log_var for g in s.param_groups(ctx) for p in g["params"])  # learned with the heads


def test_dwa_weighs_the_task_whose_loss_falls_slowest() -> None:
    names, static = ["a", "b"], {"a": 1.0, "b": 1.0}
    assert dwa_weights([{"a": 1.0, "b": 1.0}], names, 2.0, static) == static  # fewer than two epochs: equal
    w = dwa_weights([{"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 0.9}], names, 2.0, static)
    ea, eb = np.exp(0.5 / 2), np.exp(0.9 / 2)
    assert w["a"] == pytest.approx(2 * ea / (ea + eb)) and w["b"] == pytest.approx(2 * eb / (ea + eb))
    assert w["b"] > 1.0 > w["a"] and sum(w.values()) == pytest.approx(2.0)


def test_uncertainty_learns_to_trust_a_noise_target_less(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.csv", n=240)
    run = headstart.fit(table, text_col="text", label_col=["value", "noise"], model="scratch:bow", strategy="multitask",
                        task_weighting="uncertainty", epochs=20, out=str(tmp_path / "run"))
    last = run.metrics  # the weights of the final epoch, from history.csv
    import csv

    rows = list(csv.DictReader(open(run.path / "history.csv")))
    assert float(rows[-1]["w_value"]) > 2 * float(rows[-1]["w_noise"])  # 1/sigma^2: the learnable target weighs more
    assert last["test"]["tasks"]["value"]["r2"] > 0.8 and last["test"]["tasks"]["noise"]["r2"] < 0.2


def test_a_multitask_run_predicts_evaluates_and_reports_every_task(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.csv")
    run = headstart.fit(table, text_col="text", label_col=["coarse", "fine", "value"], model="scratch:bow",
                        strategy="multitask", task_weighting="dwa", epochs=12, out=str(tmp_path / "run"))
    test = run.metrics["test"]
    assert set(test["tasks"]) == {"coarse", "fine", "value"} and test["score_name"] == "mean task score"
    assert test["tasks"]["coarse"]["accuracy"] > 0.95 and test["tasks"]["fine"]["accuracy"] > 0.8
    assert test["tasks"]["value"]["r2"] > 0.8
    assert test["score"] == pytest.approx(np.mean([m["score"] for m in test["tasks"].values()]))
    hist = list(__import__("csv").DictReader(open(run.path / "history.csv")))
    assert float(hist[0]["w_fine"]) == 1.0 and len({round(float(h["w_fine"]), 5) for h in hist[2:]}) > 1  # DWA moves
    again = headstart.load(run.path)
    row = again.predict(["gear wheel item 3"])[0]["tasks"]
    assert row["coarse"]["label"] == "B" and row["fine"]["label"] in ("B0", "B1", "B2") and "value" in row["value"]
    assert again.evaluate(table, split="test")["score"] == pytest.approx(test["score"], rel=1e-5)
    page = (run.path / "report.html").read_text()
    assert "Held-out result per task" in page and "Task fine (multiclass)" in page
    assert (run.path / "plots" / "confusion_matrix_fine.png").is_file()
    labels = json.loads((run.path / "labels.json").read_text())
    assert labels["tasks"]["fine"]["classes"] == ["A0", "A1", "A2", "B0", "B1", "B2"]


def test_multitask_needs_two_tasks_and_known_task_weights(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.csv", n=40)
    with pytest.raises(ConfigError, match=r"^strategy multitask: give each task's label column"):
        headstart.fit(table, text_col="text", label_col="coarse", model="scratch:bow", strategy="multitask", out="a")
    with pytest.raises(ConfigError, match=r"^option --task-weight: 'colour' is not a task; the tasks are coarse, fine$"):
        headstart.fit(table, text_col="text", label_col=["coarse", "fine"], model="scratch:bow", strategy="multitask",
                      task_weight=["colour=2"], out="b")
    with pytest.raises(ConfigError, match=r"^option --task-weighting: 'magic' is not one of static, uncertainty, dwa$"):
        headstart.fit(table, text_col="text", label_col=["coarse", "fine"], model="scratch:bow", strategy="multitask",
                      task_weighting="magic", out="c")


def test_a_multitask_run_exports_one_onnx_output_per_task(tmp_path: Path) -> None:
    table = write_table(tmp_path / "t.csv", n=120)
    run = headstart.fit(table, text_col="text", label_col=["coarse", "fine", "value"], model="minilm", strategy="multitask",
                        freeze=5, epochs=1, out=str(tmp_path / "run"))
    record = headstart.load(run.path).export()
    stage = record["stages"][0]
    assert stage["score_name"] == "mean task score" and stage["max_abs_diff"] < 1e-3 and stage["class_agreement"] == 1.0
    import onnx

    graph = onnx.load(str(run.path / "export" / stage["file"])).graph
    assert [o.name for o in graph.output] == ["coarse", "fine", "value"]
    again = headstart.load(run.path)
    items = ["pear plum item 1", "gear brake item 2"]
    assert again.predict(items, engine="onnx")[1]["tasks"]["coarse"]["label"] == again.predict(items)[1]["tasks"]["coarse"]["label"]
    np.testing.assert_allclose(again.outputs(items, engine="onnx"), again.outputs(items), atol=1e-3)


def test_the_command_line_takes_repeated_columns_and_prints_every_task(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from headstart.cli import app

    monkeypatch.setenv("COLUMNS", "300")
    table = write_table(tmp_path / "t.csv", n=120)
    res = CliRunner().invoke(app, ["fit", str(table), "--text-col", "text", "--label-col", "coarse", "--label-col", "value",
                                   "--model", "scratch:bow", "--strategy", "multitask", "--task-weight", "value=0.5",
                                   "--epochs", "6", "--out", "run"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "coarse: held-out accuracy" in out and "value: held-out r2" in out and "2 tasks" in out
    assert "tasks │ coarse (binary, 2), value (regression, 1)" in out
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["multitask"]["static_weights"] == {"coarse": 1.0, "value": 0.5}
