"""Every task type (issue 17): how labels are read and decided, what each head learns, how it is judged,
and what a run of each kind saves, predicts and exports. Real fits on small tables, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.data import load_data
from headstart.errors import ConfigError, DataError
from headstart.evaluate import compute_metrics
from headstart.heads import Head
from headstart.targets import get_task_type

TOPICS = {"fruit": "apple banana cherry grape", "motor": "engine wheel brake piston", "music": "guitar drum violin song"}
EFFECT = {"fruit": 1.0, "motor": 2.5, "music": -1.5}


def write_tags(path: Path, n: int = 160, seed: int = 0, sep: str = "|") -> Path:
    """Texts about one or two topics; ``tags`` = the topics (multilabel), ``score`` = a noisy sum of their effects
    (regression), ``fruit``/``motor``/``music`` = 0/1 columns."""
    rng = np.random.default_rng(seed)
    lines = ["text,tags,score,fruit,motor,music"]
    for i in range(n):
        topics = sorted(rng.choice(list(TOPICS), size=int(rng.integers(1, 3)), replace=False))
        words = [str(w) for t in topics for w in rng.choice(TOPICS[t].split(), size=2)]
        score = sum(EFFECT[t] for t in topics) + rng.normal(0, 0.3)
        flags = ",".join("1" if t in topics else "0" for t in TOPICS)
        lines.append(f"{' '.join(words)} note {i},\"{sep.join(topics)}\",{score:.3f},{flags}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- reading and deciding the target -----------------------------------------------------------------
def test_the_task_is_decided_from_the_label_cells(tmp_path: Path) -> None:
    table = write_tags(tmp_path / "t.csv")
    tags = load_data(table, text_col="text", label_col="tags")
    assert tags.task == "multilabel" and tags.classes == ["fruit", "motor", "music"]
    assert tags.decided["task"]["how"] == "detected: '|'-separated labels"
    cols = load_data(table, text_col="text", label_col=["fruit", "motor", "music"])
    assert cols.task == "multilabel" and cols.decided["task"]["how"] == "detected: several 0/1 label columns"
    np.testing.assert_array_equal(cols.y, tags.y)  # the same sets, read two ways
    assert set(tags.y.sum(1).tolist()) == {1.0, 2.0}
    score = load_data(table, text_col="text", label_col="score")
    assert score.task == "regression" and score.classes == ["score"] and score.y.dtype == np.float32
    assert score.decided["task"]["how"] == "detected: non-integer numbers"
    comma = load_data(write_tags(tmp_path / "c.csv", sep=","), text_col="text", label_col="tags")
    assert comma.task == "multilabel" and comma.decided["task"]["how"] == "detected: ','-separated labels"
    np.testing.assert_array_equal(comma.y, tags.y)


def test_a_comma_inside_class_names_is_not_a_label_set(tmp_path: Path) -> None:
    rows = ["text,city"] + [f"visit {i},\"{c}\"" for i in range(30) for c in ("Austin, TX", "Boston, MA", "Denver, CO")]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = load_data(tmp_path / "c.csv", label_col="city")
    assert ds.task == "multiclass" and ds.classes == ["Austin, TX", "Boston, MA", "Denver, CO"]


def test_json_lists_and_an_empty_list(tmp_path: Path) -> None:
    rows = [{"text": f"row {i} " + " ".join(t), "labels": t} for i, t in
            enumerate([["a"], ["b"], ["a", "b"], [], ["c"], ["a", "c"]] * 6)]
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    ds = load_data(path)
    assert ds.task == "multilabel" and ds.classes == ["a", "b", "c"]
    assert ds.decided["task"]["how"] == "detected: lists of labels"
    order = np.argsort([int(r.split(":")[-1]) for r in ds.refs])  # back to file order
    np.testing.assert_array_equal(ds.y[order][:6], [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1], [1, 0, 1]])


def test_integers_are_classes_until_there_are_too_many_to_be_sure(tmp_path: Path) -> None:
    few = tmp_path / "few.csv"
    few.write_text("text,label\n" + "".join(f"t {i},{i % 3}\n" for i in range(60)), encoding="utf-8")
    assert load_data(few).task == "multiclass"
    many = tmp_path / "many.csv"
    many.write_text("text,label\n" + "".join(f"t {i},{i % 40}\n" for i in range(200)), encoding="utf-8")
    with pytest.raises(DataError, match=r"many\.csv: the label column 'label' holds 40 distinct integers: class ids or "
                                        r"values\? give --task-type multiclass or --task-type regression$"):
        load_data(many)
    assert load_data(many, task_type="regression").task == "regression"
    assert load_data(many, task_type="multiclass").num_classes == 40


def test_malformed_targets_get_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's list: mixed types, an empty multilabel cell, non-numeric values, a label only in test."""
    monkeypatch.setenv("HEADSTART_QUIET", "0")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("text,label\n" + "".join(f"t {i},{'7' if i % 2 else 'cat'}\n" for i in range(20)), encoding="utf-8")
    with pytest.raises(DataError, match=r"mixed\.csv: mixed label types: .*mixed\.csv:3 has the number '7' but .*mixed\.csv:2 "
                                        r"has the word 'cat'"):
        load_data(mixed)
    empty = tmp_path / "empty.csv"
    empty.write_text("text,tags\n" + "".join(f"t {i},{'a|b' if i % 3 else 'b'}\n" for i in range(30)) + "t 99,\n",
                     encoding="utf-8")
    ds = load_data(empty)  # the skip policy of every bad row: one warning naming it
    assert ds.task == "multilabel" and len(ds.items) == 30 and ds.skipped == [(f"{empty}:32", "missing label in column 'tags'")]
    assert f"skipped 1 row(s) of {empty} with a missing label or an empty text" in " ".join(capsys.readouterr().err.split())
    values = tmp_path / "values.csv"
    values.write_text("text,score\n" + "".join(f"t {i},{i / 3:.2f}\n" for i in range(20)) + "t x,high\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^.*values\.csv:22: 'high' in the regression target 'score' is not a number; fix or "
                                        r"delete the row \(or give --task-type multiclass if the column holds classes\)$"):
        load_data(values, task_type="regression")
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("text,tags\n" + "".join(f"t {i},a|b\n" for i in range(20)) + "t 20,a\n", encoding="utf-8")
    test.write_text("text,tags\nu 1,a|c\nu 2,b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.csv:2: label 'c' appears in the test data but never in training"):
        load_data(train, test=test)
    flags = tmp_path / "flags.csv"
    flags.write_text("text,x,y\n" + "".join(f"t {i},{i % 2},{(i // 2) % 2}\n" for i in range(20)) + "t 20,1,maybe\n",
                     encoding="utf-8")
    with pytest.raises(DataError, match=r"flags\.csv:22: 'maybe' in label column 'y' is not 0 or 1; several --label-col make "
                                        r"one multilabel target of 0/1 columns"):
        load_data(flags, text_col="text", label_col=["x", "y"])


def test_a_pair_of_texts_is_encoded_as_the_tokenizer_encodes_pairs(tmp_path: Path) -> None:
    from headstart.backbones import build_backbone

    rows = ["a,b,score"] + [f"the cat sat {i},a cat was sitting {i},{i / 10:.1f}" for i in range(30)]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = load_data(tmp_path / "p.csv", text_col=["a", "b"], label_col="score")
    assert ds.items[0] == ("the cat sat 0", "a cat was sitting 0") and ds.task == "regression"
    bb = build_backbone("minilm")
    batch = bb.preprocess()(ds.items[:2])
    want = bb.tokenizer(["the cat sat 0", "the cat sat 1"], ["a cat was sitting 0", "a cat was sitting 1"],
                        padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], want["input_ids"])
    sep = bb.tokenizer.sep_token_id
    assert int((batch["input_ids"][0] == sep).sum()) == 2  # [CLS] first [SEP] second [SEP]


# -- heads -------------------------------------------------------------------------------------------------
def test_a_regression_head_learns_the_standardised_target_and_answers_in_its_units() -> None:
    head = Head("regression", 4, 1)
    y = np.array([[10.0], [20.0], [30.0]], dtype=np.float32)
    head.fit_targets(y, {})
    assert head.target_mean.item() == pytest.approx(20.0) and head.target_std.item() == pytest.approx(np.std(y))
    logits = torch.tensor([[0.0], [1.0], [-1.0]])
    z = (torch.as_tensor(y) - 20.0) / float(np.std(y))
    assert head.loss(logits, torch.as_tensor(y)).item() == pytest.approx(torch.mean((logits - z) ** 2).item(), rel=1e-6)
    np.testing.assert_allclose(head.outputs(logits).numpy().ravel(), [20.0, 20.0 + np.std(y), 20.0 - np.std(y)], rtol=1e-6)
    assert set(head.state_dict()) >= {"target_mean", "target_std"}  # saved with the weights


def test_pos_weight_auto_weighs_each_labels_positives_by_its_rarity() -> None:
    head = Head("multilabel", 3, 2)
    y = np.array([[1, 0], [0, 0], [0, 0], [1, 1]], dtype=np.float32)
    assert head.fit_targets(y, {"pos_weight": "auto"}) == {"pos_weight": [1.0, 3.0]}
    logits, t = torch.tensor([[0.5, -1.0]] * 4), torch.as_tensor(y)
    p = torch.sigmoid(logits)
    want = -(torch.tensor([1.0, 3.0]) * t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    assert head.loss(logits, t).item() == pytest.approx(want.item(), rel=1e-6)
    assert "pos_weight" not in head.state_dict()  # a training weight, not part of the model


def test_thresholds_are_the_f1_best_per_label() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < 0.3).astype(np.float32)
    out = np.where(y > 0, 0.35 + 0.1 * rng.random((400, 2)), 0.25 * rng.random((400, 2)))  # label 0: positives 0.35-0.45
    out[:, 1] = np.where(y[:, 1] > 0, 0.8, 0.6)  # label 1: everything above 0.5; only 0.7 separates
    th = get_task_type("multilabel").decide(y, out)["thresholds"]
    assert 0.25 <= th[0] <= 0.35 and 0.6 < th[1] <= 0.8
    at_half = compute_metrics(y, out, "multilabel", ["a", "b"])
    tuned = compute_metrics(y, out, "multilabel", ["a", "b"], {"thresholds": th})
    assert tuned["micro_f1"] == 1.0 and at_half["micro_f1"] < 0.8


def test_multilabel_and_regression_metrics_by_hand() -> None:
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    p = np.array([[.9, .2, .7], [.1, .6, .6], [.8, .3, .1], [.2, .1, .9]])
    m = compute_metrics(y, p, "multilabel", ["a", "b", "c"])
    pred = (p >= 0.5).astype(int)  # [[1,0,1],[0,1,1],[1,0,0],[0,0,1]]: tp 5, fp 1, fn 1
    assert m["micro_f1"] == pytest.approx(2 * 5 / (2 * 5 + 1 + 1))
    assert m["subset_accuracy"] == m["accuracy"] == pytest.approx(2 / 4)
    assert m["hamming_loss"] == pytest.approx(float((pred != y).mean()))
    assert m["per_label"]["b"] == {"f1": pytest.approx(2 / 3), "precision": 1.0, "recall": 0.5, "support": 2, "threshold": 0.5}
    assert m["score"] == m["micro_f1"] and m["score_name"] == "micro_f1"
    t, v = np.array([[1.0], [2.0], [3.0], [4.0]]), np.array([[1.5], [2.0], [2.5], [5.0]])
    r = compute_metrics(t, v, "regression", ["y"])
    assert r["mae"] == pytest.approx(0.5) and r["rmse"] == pytest.approx(np.sqrt(1.5 / 4))
    assert r["r2"] == pytest.approx(1 - 1.5 / 5.0) and r["spearman"] == pytest.approx(1.0)
    assert r["score"] == r["r2"]


# -- fits, runs, predictions, exports ------------------------------------------------------------------------
def streamed_when_asked(strategy: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``linear-streamed``: `linear` with its head fitted as on a pool too large for memory (a 60-example sample
    for the strength, then the whole pool streamed: tests/strategies/test_streamed_head.py)."""
    if strategy != "linear-streamed":
        return strategy
    from headstart.training.strategies import _streamed_head

    monkeypatch.setattr(_streamed_head, "STREAM_VALUES", 100)
    monkeypatch.setattr(_streamed_head, "SAMPLE_VALUES", 60 * 64)
    return "linear"


@pytest.mark.parametrize("strategy", ["linear", "linear-streamed", "finetune"])
def test_multilabel_fits_beat_predicting_label_frequencies(tmp_path: Path, strategy: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    table = write_tags(tmp_path / "t.csv", n=200)
    asked, strategy = strategy, streamed_when_asked(strategy, monkeypatch)
    run = headstart.fit(table, text_col="text", label_col="tags", model="scratch:bow", strategy=strategy, epochs=15,
                        out=str(tmp_path / "run"))
    assert ("head_sample" in run.metrics["fit"]) == (asked == "linear-streamed")  # the path the case names was taken
    test = run.metrics["test"]
    ds = load_data(table, text_col="text", label_col="tags")  # the same split (same seed)
    base = np.tile(ds.y[ds.train_idx].mean(0), (len(ds.test_idx), 1))  # the trivial baseline: each label's rate
    trivial = compute_metrics(ds.y[ds.test_idx], base, "multilabel", ds.classes)
    assert test["micro_f1"] > max(0.9, trivial["micro_f1"] + 0.25) and test["mean_average_precision"] > trivial["mean_average_precision"] + 0.25
    saved = json.loads((run.path / "labels.json").read_text())
    assert saved["task"] == "multilabel" and saved["decisions"]["thresholds"] == run.head.threshold.tolist()
    assert run.metrics["fit"]["decisions"].startswith("chosen on")
    again = headstart.load(run.path)
    row = again.predict(["apple cherry guitar drum"])[0]
    assert row["labels"] == ["fruit", "music"] and set(row["probabilities"]) == {"fruit", "motor", "music"}
    assert again.evaluate(table, split="test")["micro_f1"] == pytest.approx(test["micro_f1"])


@pytest.mark.parametrize("strategy", ["linear", "linear-streamed", "finetune"])
def test_regression_fits_beat_predicting_the_mean(tmp_path: Path, strategy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = write_tags(tmp_path / "t.csv", n=200)
    asked, strategy = strategy, streamed_when_asked(strategy, monkeypatch)
    run = headstart.fit(table, text_col="text", label_col="score", model="scratch:bow", strategy=strategy, epochs=15,
                        out=str(tmp_path / "run"))
    assert ("head_sample" in run.metrics["fit"]) == (asked == "linear-streamed")  # the path the case names was taken
    test = run.metrics["test"]
    assert test["r2"] > 0.7 and test["spearman"] > 0.8  # predicting the mean has R² <= 0
    mean, std = run.metrics["fit"]["targets"]["target_mean"][0], run.metrics["fit"]["targets"]["target_std"][0]
    assert 0.5 < mean < 2.5 and 1.0 < std < 2.5  # the scaler of the training split, in the data's units
    motor, music = (r["value"] for r in headstart.load(run.path).predict(["engine wheel note 7", "guitar drum note 7"]))
    assert motor - music == pytest.approx(EFFECT["motor"] - EFFECT["music"], abs=1.2)  # in the data's units, not z-scores


def test_a_regression_run_exports_its_values_to_onnx(tmp_path: Path) -> None:
    table = write_tags(tmp_path / "t.csv", n=120)
    run = headstart.fit(table, text_col="text", label_col="score", model="scratch:bow", strategy="linear",
                        out=str(tmp_path / "run"))  # the head is what a regression changes; MiniLM's export: test_export
    record = run.export()
    stage = record["stages"][0]
    assert stage["score_name"] == "r2" and stage["max_abs_diff"] < 1e-3 and "class_agreement" not in stage
    import onnx

    graph = onnx.load(str(run.path / "export" / stage["file"])).graph
    assert [o.name for o in graph.output] == ["values"]
    items = ["apple grape", "drum song violin"]
    np.testing.assert_allclose(run.outputs(items, engine="onnx"), run.outputs(items, engine="torch"), atol=1e-3)


def test_strategies_that_need_classes_refuse_other_targets_in_one_line(tmp_path: Path) -> None:
    table = write_tags(tmp_path / "t.csv", n=60)
    for strategy, extra in (("protonet", {}), ("joint", {"source_data": str(table)}), ("dann", {"unlabeled_target": str(table)})):
        with pytest.raises(ConfigError, match=rf"^option --strategy {strategy}: a regression target is not supported \(it "
                                              r"handles binary, multiclass\); use finetune or linear, which handle every task type$"):
            headstart.fit(table, text_col="text", label_col="score", model="scratch:bow", strategy=strategy,
                          out=str(tmp_path / strategy), **extra)
        assert not (tmp_path / strategy).exists()


def test_rank_scores_a_regression_target_with_logme_and_says_na_for_class_scores(tmp_path: Path) -> None:
    table = write_tags(tmp_path / "t.csv", n=80)
    df = headstart.rank(table, ["minilm", "scratch:bow"], metrics="logme,hscore,knn", text_col="text", label_col="score")
    assert df.attrs["by"] == "logme" and df.index[0] == "minilm"
    assert np.isfinite(df["logme"]).all() and df["hscore"].isna().all() and df["knn"].isna().all()


def test_distill_teaches_a_regression_in_the_students_units(tmp_path: Path) -> None:
    """The teacher's values are the soft targets, standardised as the student's own target: its R² follows."""
    table = write_tags(tmp_path / "t.csv", n=200)
    common = dict(text_col="text", label_col="score", model="scratch:bow", epochs=15)
    teacher = headstart.fit(table, strategy="finetune", out=str(tmp_path / "teacher"), **common)
    student = headstart.fit(table, strategy="distill", teacher=str(teacher.path), out=str(tmp_path / "student"), **common)
    rec = student.metrics["distill"]
    assert rec["student"]["score_name"] == "r2" and rec["teacher"]["score"] == pytest.approx(teacher.metrics["test"]["r2"])
    assert student.metrics["test"]["r2"] > 0.7


def test_a_pair_run_predicts_pairs_from_a_table_and_refuses_single_texts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    words = ["cat", "dog", "car", "tree", "sun", "rain"]
    rows = ["left,right,score"]
    for i in range(120):
        a, b = rng.choice(words, 2)
        same = rng.random() < 0.5
        rows.append(f"{a} {i},{a if same else b} {i + 1},{(4.5 if same else 0.5) + rng.normal(0, 0.2):.2f}")
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    run = headstart.fit(tmp_path / "p.csv", text_col=["left", "right"], label_col="score", model="scratch:bow",
                        strategy="finetune", epochs=10, out=str(tmp_path / "run"))
    (tmp_path / "new.csv").write_text("left,right\nsun 1,sun 2\nsun 1,rain 2\n", encoding="utf-8")
    got = [r["value"] for r in headstart.load(run.path).predict([str(tmp_path / "new.csv")])]
    assert len(got) == 2 and all(np.isfinite(got))
    with pytest.raises(DataError, match=r"^run reads pairs of texts \(left \+ right\); give a table with those two columns"):
        headstart.load(run.path).predict(["sun and rain"])


def test_an_image_table_gives_images_any_target(tmp_path: Path) -> None:
    """A CSV of image paths (relative to it) and label columns: multilabel and regression images."""
    from tests.conftest import make_image

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    lines = ["file,tags,value"]
    for i in range(90):
        k = i % 3
        make_image(k, rng).save(tmp_path / "img" / f"{i}.png")
        tags = ["left", "right", "top"][k] + ("|round" if i % 2 else "")
        lines.append(f"img/{i}.png,{tags},{2.0 * k + rng.normal(0, 0.1):.3f}")
    lines.append("img/gone.png,left,0.5")
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = load_data(tmp_path / "t.csv", label_col="tags")
    assert ds.modality == "image" and ds.task == "multilabel" and ds.classes == ["left", "right", "round", "top"]
    assert ds.items[0].ndim == 3 and ds.decided["image"]["value"] == "file" and len(ds.items) == 90
    assert "text" not in ds.decided and "image files" in ds.decided["image"]["how"]  # one row in the summary, not two
    assert ds.skipped == [(f"{tmp_path / 't.csv'}:92", "image 'img/gone.png' not found (paths are relative to the table's folder)")]
    run = headstart.fit(tmp_path / "t.csv", label_col="value", model="scratch:cnn@32", strategy="scratch", epochs=15,
                        out=str(tmp_path / "run"))
    assert run.task == "regression" and run.metrics["test"]["r2"] > 0.6


def _every_type_strategies() -> list[str]:
    """The strategies that handle label sets and values on one backbone (distill needs a teacher: its own test)."""
    from headstart.training.strategies import get_strategy, list_strategies

    return [s for s in list_strategies() if {"multilabel", "regression"} <= set(get_strategy(s).tasks) and s != "distill"]


@pytest.mark.parametrize("strategy", _every_type_strategies())
def test_every_strategy_that_can_learns_label_sets_and_values(tmp_path: Path, strategy: str) -> None:
    table = write_tags(tmp_path / "t.csv", n=150)
    model = "minilm" if strategy == "lora" else "scratch:bow"  # LoRA adapts linear layers: a transformer has them
    for label, key, floor in (("tags", "micro_f1", 0.85), ("score", "r2", 0.6)):
        run = headstart.fit(table, text_col="text", label_col=label, model=model, strategy=strategy, cv_folds=3,
                            epochs=6 if strategy == "lora" else 12, out=str(tmp_path / label))
        assert run.metrics["test"][key] > floor, (label, run.metrics["test"])


def test_compare_a_regression_target_by_its_score_and_refuse_budgets_per_class(tmp_path: Path) -> None:
    table = write_tags(tmp_path / "t.csv", n=120)
    common = dict(text_col="text", label_col="score", model="scratch:bow", epochs=8)
    df = headstart.compare(table, "linear,finetune", "all", out=tmp_path / "cmp", **common)
    assert set(df["score_name"]) == {"r2"} and (df["score"] > 0.5).all() and df["accuracy"].isna().all()
    with pytest.raises(ConfigError, match=r"^option --budgets: 5 labels per class: .*t\.csv is a regression target, without "
                                          r"classes; give --budgets all$"):
        headstart.compare(table, "linear", "5", out=tmp_path / "cmp2", **common)
