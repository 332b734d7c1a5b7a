"""`headstart export`: real ONNX graphs run by onnxruntime, compared with PyTorch on real tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

import headstart
from headstart.cli import app
from headstart.errors import HeadstartError
from headstart.run import OnnxModel, default_onnx
from headstart.run.export import prune_magnitude
from tests.conftest import write_image_folder, write_text_table


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("img")
    data = write_image_folder(root / "imgs", per_class=20, classes=3, seed=3)
    return headstart.fit(data, model="scratch:cnn@32", strategy="scratch", epochs=12, out=str(root / "run"),
                         cache_dir=str(root / "cache")).path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("txt")
    data = write_text_table(root / "texts.csv", per_class=20)
    return headstart.fit(data, model="minilm", strategy="linear", cv_folds=3, out=str(root / "run"),
                         cache_dir=str(root / "cache")).path


def test_fp32_image_export_matches_pytorch_at_any_batch_size(image_run: Path) -> None:
    run = headstart.load(image_run)
    record = run.export()
    stage = record["stages"][0]
    assert stage["file"] == "model.onnx" and stage["accepted"]
    assert stage["max_abs_diff"] < 1e-4 and stage["class_agreement"] == 1.0
    assert record["inputs"] == ["pixels"]
    graph = onnx.load(str(image_run / "export" / "model.onnx"))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    ds = run.reload_data()
    items = [ds.items[i] for i in ds.test_idx]
    model = OnnxModel(image_run / "export" / "model.onnx", run.batcher)
    for n in (1, 5, len(items)):
        np.testing.assert_allclose(model.outputs(items[:n], batch_size=n), run.predict_proba(items[:n]), atol=1e-5)


def test_predict_with_onnx_engine_gives_the_same_records(image_run: Path) -> None:
    run = headstart.load(image_run)
    run.export()
    files = sorted(str(p) for p in (Path(run.config["data"]) / "top").glob("*.png"))[:4]
    torch_rows = run.predict(files)
    onnx_rows = run.predict(files, engine="onnx")
    assert [r["input"] for r in onnx_rows] == [r["input"] for r in torch_rows]
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    for a, b in zip(onnx_rows, torch_rows):
        assert a["probabilities"].keys() == b["probabilities"].keys()
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-4
    res = CliRunner().invoke(app, ["predict", str(image_run), *files[:2], "--engine", "onnx"])
    assert res.exit_code == 0, res.output
    assert [json.loads(ln)["label"] for ln in res.output.splitlines()] == [r["label"] for r in torch_rows[:2]]
    assert run.evaluate(run.config["data"], engine="onnx")["accuracy"] == run.evaluate(run.config["data"])["accuracy"]


def test_prune_then_int8_chain_is_checked_and_written(image_run: Path) -> None:
    run = headstart.load(image_run)
    record = run.export(prune=0.5, quantize="int8", force=True)
    names = [s["file"] for s in record["stages"]]
    assert names == ["model.onnx", "model-pruned50.onnx", "model-pruned50-int8.onnx"]
    pruned, int8 = record["stages"][1], record["stages"][2]
    assert pruned["prune"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert pruned["zipped_bytes"] < 0.8 * record["stages"][0]["zipped_bytes"]  # zeros compress
    assert int8["bytes"] < 0.4 * pruned["bytes"] and "static" in int8["method"]
    assert record["default"] == "model-pruned50-int8.onnx"
    assert default_onnx(image_run).name == "model-pruned50-int8.onnx"
    # int8 keeps the output in full precision: probabilities still sum to 1 and are not multiples of 1/255
    probs = run.predict_proba(run.config["data"], engine="onnx")
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(probs * 255, np.round(probs * 255), atol=1e-3)


def test_prune_magnitude_zeroes_the_smallest_weights_of_each_layer(image_run: Path) -> None:
    run = headstart.load(image_run)
    before = {k: v.clone() for k, v in run.backbone.state_dict().items()}
    bb, hd, stats = prune_magnitude(run.backbone, run.head, 0.3)
    convs = 0
    for name, w1 in bb.state_dict().items():
        w0 = before[name]
        if name.endswith("weight") and w0.ndim == 4:
            convs += 1
            kept = w1 != 0
            assert abs(kept.float().mean().item() - 0.7) < 0.02, name
            assert w0.abs()[~kept].max() <= w0.abs()[kept].min()  # the zeros are the smallest magnitudes
    assert convs >= 4 and stats["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert not any(n.endswith(("_orig", "_mask")) for n in bb.state_dict())  # made permanent
    assert all(torch.equal(v, before[k]) for k, v in run.backbone.state_dict().items())  # the run's model is untouched


def test_a_drop_past_max_drop_is_refused_and_nothing_is_kept(image_run: Path) -> None:
    run = headstart.load(image_run)
    with pytest.raises(HeadstartError, match=r"--max-drop 1\b.*--force"):
        run.export(prune=0.99)
    folder = image_run / "export"
    assert not (folder / "model-pruned99.onnx").exists()
    assert not list(folder.glob(".*tmp*"))
    record = json.loads((folder / "export.json").read_text())
    assert record["refused"]["stage"].startswith("pruned") and record["default"] == "model.onnx"
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["model.onnx"]  # an earlier export's files are gone too


def test_text_export_has_dynamic_batch_and_sequence_and_int8(text_run: Path) -> None:
    run = headstart.load(text_run)
    record = run.export(quantize="int8")
    assert {"input_ids", "attention_mask"} <= set(record["inputs"])
    fp32, int8 = record["stages"]
    assert fp32["max_abs_diff"] < 1e-4 and int8["accepted"] and "dynamic" in int8["method"]
    assert int8["bytes"] < 0.35 * fp32["bytes"]
    texts = ["goal", "the coach and the team scored a late goal in the league match today at the stadium",
             "bake the bread", "a recipe"]
    fp = OnnxModel(text_run / "export" / "model.onnx", run.batcher)
    for batch in (texts[:1], texts):  # different batch sizes and padded lengths
        np.testing.assert_allclose(fp.outputs(batch, batch_size=len(batch)), run.predict_proba(batch), atol=1e-4)
    rows = run.predict(texts, engine="onnx")
    assert [r["label"] for r in rows] == [r["label"] for r in run.predict(texts)]


def test_export_cli_prints_the_check_table(image_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    res = CliRunner().invoke(app, ["export", str(image_run), "--format", "onnx"])
    assert res.exit_code == 0, res.output
    assert "model.onnx" in res.output and "PyTorch fp32" in res.output and "--engine onnx" in res.output
    assert "decided on the run's selection split" in res.output and "held-out accuracy" in res.output


FRAGILE = """
import torch
from torch import nn


class Fragile(nn.Module):
    \"\"\"A small CNN with a huge constant channel inside: int8's per-tensor activation range then crushes the rest.\"\"\"

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 16
        self.fc = nn.Linear(16, 3)
        self.register_buffer("select", torch.cat([torch.eye(16), torch.zeros(16, 1)], 1))  # fp32 drops that channel again
        self.pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.25,) * 3, "crop_pct": 1.0}

    def forward_features(self, x):
        f = self.body(x)
        return nn.functional.linear(torch.cat([f, torch.full_like(f[:, :1], 1e4)], 1), self.select)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def fragile():
    return Fragile()
"""


def test_an_int8_file_that_loses_accuracy_is_refused_unless_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fragile.py").write_text(FRAGILE)
    data = write_image_folder(tmp_path / "imgs", per_class=20, classes=3, seed=3)
    run = headstart.fit(data, model=f"py:{tmp_path / 'fragile.py'}:fragile", strategy="scratch", epochs=12, out="runs/f")
    folder = run.path / "export"
    with pytest.raises(HeadstartError, match=r"^int8: .*points lost > --max-drop 1\b.*--force"):
        run.export(quantize="int8")
    record = json.loads((folder / "export.json").read_text())
    assert record["refused"]["stage"] == "int8" and record["refused"]["drop_points"] > 1
    assert record["default"] == "model.onnx" and sorted(p.name for p in folder.glob("*.onnx")) == ["model.onnx"]
    monkeypatch.setenv("COLUMNS", "300")  # the table's file column in full
    res = CliRunner().invoke(app, ["export", str(run.path), "--quantize", "int8", "--force", "--trust-code"])
    assert res.exit_code == 0, res.output
    assert "model-int8.onnx (forced)" in res.output
    record = json.loads((folder / "export.json").read_text())
    int8 = record["stages"][-1]
    assert int8["file"] == "model-int8.onnx" and int8["forced"] and not int8["accepted"]
    assert record["default"] == "model-int8.onnx" and (folder / "model-int8.onnx").is_file()
    assert int8["accuracy"] < record["pytorch_fp32"]["accuracy"] - 0.01


def test_export_options_are_checked_before_any_work(image_run: Path) -> None:
    run = headstart.load(image_run)
    for kw, msg in [
        ({"format": "tflite"}, r"^option --format: 'tflite' is not supported; formats: onnx$"),
        ({"quantize": "int4"}, r"^option --quantize: 'int4' is not supported; use int8$"),
        ({"prune": 1.0}, r"^option --prune: 1.0 must be a fraction in \(0, 1\), e.g. 0.5 = half of each layer's weights$"),
        ({"prune": 0.0}, r"^option --prune: 0.0 must be a fraction in \(0, 1\)"),
        ({"max_drop": -0.5}, r"^option --max-drop: -0.5 must be >= 0 \(accuracy points\)$"),
        ({"calibration": 0}, r"^option --calibration: 0 must be at least 1$"),
    ]:
        before = sorted(p.name for p in (image_run / "export").glob("*")) if (image_run / "export").exists() else []
        with pytest.raises(HeadstartError, match=msg):
            run.export(**kw)
        after = sorted(p.name for p in (image_run / "export").glob("*")) if (image_run / "export").exists() else []
        assert after == before, kw  # refused before touching the previous export
    record = run.export(max_drop=0.0, calibration=1)  # the boundaries themselves are allowed
    assert record["max_drop_points"] == 0.0


def test_a_new_export_removes_only_the_files_the_old_one_listed(image_run: Path) -> None:
    from headstart.run.export import _forget_previous

    run = headstart.load(image_run)
    run.export()
    folder = image_run / "export"
    (folder / "mine.onnx").write_bytes(b"a file of the user's")  # not listed by export.json: kept
    (folder / "notes.txt").write_text("kept")
    record = json.loads((folder / "export.json").read_text())
    record["stages"].append({"file": "../escape.onnx"})  # a tampered name never reaches outside
    record["stages"].append({"file": "notes.txt"})  # nor a file that is not an ONNX graph
    (image_run / "escape.onnx").write_bytes(b"x")
    (folder / "export.json").write_text(json.dumps(record))
    _forget_previous(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["mine.onnx", "notes.txt"]
    assert (image_run / "escape.onnx").is_file()
    (image_run / "escape.onnx").unlink()
    (folder / "export.json").write_text("{not json")  # unreadable: nothing is removed, and no error
    _forget_previous(folder)
    assert (folder / "mine.onnx").is_file() and (folder / "export.json").is_file()
    for leftover in ("mine.onnx", "notes.txt", "export.json"):
        (folder / leftover).unlink()


def test_each_stage_is_measured_against_pytorch(image_run: Path) -> None:
    """Each file is decided on the selection split; the held-out split is scored for the record only."""
    run = headstart.load(image_run)
    record = run.export(prune=0.3)
    fp32, pruned = record["stages"]
    ds = run.reload_data()
    assert len(ds.val_idx) and len(ds.test_idx)
    for part, idx, where, get in (("selection", ds.val_idx, "checked_on", lambda r: r),
                                  ("held-out", ds.test_idx, "reported_on", lambda r: r["held_out"])):
        items, y = run.labeled(ds, idx)
        ref = run.predict_proba(items)
        assert get(record["pytorch_fp32"])["accuracy"] == pytest.approx(float((ref.argmax(1) == y).mean())), part
        for st in (fp32, pruned):
            probs = OnnxModel(image_run / "export" / st["file"], run.batcher).outputs(items)
            acc = float((probs.argmax(1) == y).mean())
            assert get(st)["accuracy"] == pytest.approx(acc), part
            assert get(st)["drop_points"] == pytest.approx(round(100 * (get(record["pytorch_fp32"])["accuracy"] - acc), 3))
            assert get(st)["class_agreement"] == pytest.approx(float((probs.argmax(1) == ref.argmax(1)).mean()))
            if part == "selection":
                assert st["max_abs_diff"] == pytest.approx(float(np.abs(probs - ref).max()), abs=1e-7)
        assert f"n={len(items)}" in record[where]
    for st in (fp32, pruned):
        assert st["bytes"] == (image_run / "export" / st["file"]).stat().st_size and st["accepted"] and not st["forced"]
        assert 0 < st["zipped_bytes"] and st["seconds"] >= 0
    assert record["checked_on"].startswith("the run's selection split")
    assert record["reported_on"].startswith("the run's held-out split") and "not used to decide" in record["reported_on"]
    assert record["modality"] == "image" and record["task"] == run.task and record["classes"] == run.classes
    assert record["refused"] is None and record["default"] == "model-pruned30.onnx" and record["format"] == "onnx"


def test_export_checked_on_given_data_scores_all_of_it(image_run: Path, tmp_path: Path) -> None:
    from headstart.data import load_data

    run = headstart.load(image_run)
    other = write_image_folder(tmp_path / "other", per_class=6, classes=3, seed=9)
    record = run.export(data=str(other))
    assert record["checked_on"] == f"all of {other} (n=18; also used to calibrate int8)"
    ds = load_data(str(other))
    items, y = run.labeled(ds, np.arange(len(ds.items)))
    probs = OnnxModel(image_run / "export" / "model.onnx", run.batcher).outputs(items)
    assert record["stages"][0]["accuracy"] == pytest.approx(float((probs.argmax(1) == y).mean()))
    assert record["pytorch_fp32"]["accuracy"] == pytest.approx(float((run.predict_proba(items).argmax(1) == y).mean()))
