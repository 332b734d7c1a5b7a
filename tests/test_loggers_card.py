"""``--logger tensorboard,mlflow`` through Lightning's loggers, read back from their own files; and the model card."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml

import headstart
from headstart.errors import HeadstartError

from .conftest import write_image_folder


def tensorboard_scalars(folder: Path) -> dict[str, list[float]]:
    """Every scalar in the event files of ``folder`` (TFRecord framing: length, crc, Event proto, crc)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[float]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):  # the curves, and final/ (the end figures)
        raw = path.read_bytes()
        pos = 0
        while pos < len(raw):
            (n,) = struct.unpack("<Q", raw[pos:pos + 8])
            event = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append(v.simple_value)
    return out


def test_tensorboard_and_mlflow_get_the_curves_and_the_final_figures(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    mlflow = pytest.importorskip("mlflow")
    data = write_image_folder(tmp_path / "imgs", per_class=16, classes=2, seed=5)
    run = headstart.fit(data, model="scratch:cnn@32", strategy="finetune", epochs=3, logger="tensorboard,mlflow",
                        out=str(tmp_path / "runs" / "tracked"))
    scalars = tensorboard_scalars(run.path / "logs" / "tensorboard")
    assert len(scalars["train_loss"]) == 3 and len(scalars["val_loss"]) == 3  # one point per epoch
    assert scalars["test_accuracy"] == [pytest.approx(run.metrics["test"]["accuracy"])]
    assert list((run.path / "logs" / "tensorboard" / "final").glob("events.out.tfevents.*"))
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("imgs")
    (found,) = client.search_runs([exp.experiment_id])
    assert found.info.run_name == "tracked" and found.data.params["strategy"] == "finetune"
    assert found.data.metrics["test_accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])
    assert len(client.get_metric_history(found.info.run_id, "val_loss")) == 3
    assert (run.path / "logs" / "metrics.csv").is_file()  # CSV is always kept


def test_unknown_logger_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(HeadstartError, match=r"^option --logger: 'wandb' is not one of csv, tensorboard, mlflow"):
        headstart.fit("digits", model="scratch:cnn@32", logger="tensorboard,wandb", out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_model_card_states_what_was_measured(tmp_path: Path) -> None:
    from headstart.report._card import wilson

    data = write_image_folder(tmp_path / "imgs", per_class=20, classes=3, seed=6)
    run = headstart.fit(data, model="scratch:cnn@32", strategy="finetune", epochs=2, out=str(tmp_path / "card"))
    text = (run.path / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "headstart" and meta["base_model"] == "scratch:cnn@32"
    (result,) = meta["model-index"][0]["results"]
    acc = next(m for m in result["metrics"] if m["type"] == "accuracy")
    assert acc["value"] == round(run.metrics["test"]["accuracy"], 4)
    for section in ("## Intended use", "## Results (held-out split)", "## Limitations", "## Training data",
                    "## Training procedure", "## How to use"):
        assert section in body
    n = run.metrics["test"]["n"]
    lo, hi = wilson(run.metrics["test"]["accuracy"], n)
    assert f"{100 * lo:.1f}% to {100 * hi:.1f}%" in body and f"The held-out split has {n} examples" in body
    assert f"expected calibration error {100 * run.metrics['calibration']['ece']:.1f}%" in body
    assert "headstart fit " in body and "--epochs 2" in body
    assert wilson(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)  # the textbook value
