from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headstart.evaluate import compute_metrics
from headstart.report import plot_confusion, plot_learning_curves, write_report


def test_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .6, .3], [.1, .1, .8], [.3, .3, .4]])
    m = compute_metrics(y, probs, "multiclass", ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    # a: 1 of 1 predicted right, 1 of 2 found; b: 2 of 3 predicted right, 2 of 2 found; c: 2 of 2 both ways
    assert m["per_class"] == {"a": {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2},
                              "b": {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2},
                              "c": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}}
    want_ll = -np.mean(np.log([.8, .2, .8, .6, .8, .4]))
    assert m["log_loss"] == pytest.approx(want_ll, rel=1e-6)


def test_ece_matches_torchmetrics_and_by_hand() -> None:
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    from headstart.evaluate import reliability

    # by hand: confidences .78 (right), .72 (wrong), .76 (right), .55 (right) with 10 bins: (.7,.8] holds three
    # -> accuracy 2/3, confidence 2.26/3; (.5,.6] holds .55 -> accuracy 1
    y = np.array([0, 0, 1, 1])
    p = np.array([[.78, .22], [.28, .72], [.24, .76], [.45, .55]])
    r = reliability(y, p, bins=10)
    want = 3 / 4 * abs(2 / 3 - 2.26 / 3) + 1 / 4 * abs(1 - 0.55)
    assert r["ece"] == pytest.approx(want) and [b["n"] for b in r["bins"]] == [1, 3]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 5)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 5, 500)
    ref = multiclass_calibration_error(torch.tensor(probs), torch.tensor(labels), num_classes=5, n_bins=15, norm="l1")
    assert reliability(labels, probs)["ece"] == pytest.approx(float(ref), abs=1e-6)


def test_temperature_fitted_on_the_selection_split_fixes_overconfidence() -> None:
    """Logits scaled up 3x are overconfident: the temperature found on one sample is near 3 and lowers the
    ECE of another sample drawn the same way."""
    from headstart.evaluate import calibration

    def sample(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(n, 4)) * 1.5
        p_true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = np.array([rng.choice(4, p=row) for row in p_true])
        over = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)
        return y, over

    y_sel, p_sel = sample(1)
    y_test, p_test = sample(2)
    c = calibration(y_test, p_test, y_sel, p_sel)
    assert c["temperature"]["value"] == pytest.approx(3.0, rel=0.15)
    assert c["ece"] > 0.1 and c["temperature"]["ece"] < 0.06 and c["temperature"]["log_loss"] < c["log_loss"]
    assert "temperature" not in calibration(y_test, p_test)  # nothing to fit it on


def test_spread_uses_student_t() -> None:
    from headstart.evaluate import spread

    s = spread([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1)
    assert s["ci95_high"] - s["mean"] == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)


def test_binary_metrics_include_auc() -> None:
    m = compute_metrics(np.array([0, 1, 1, 0]), np.array([[.9, .1], [.2, .8], [.6, .4], [.3, .7]]), "binary", ["n", "p"])
    assert m["accuracy"] == 0.5 and m["roc_auc"] == pytest.approx(0.75)


def test_report_inlines_its_plots_and_labels_its_figures(tmp_path: Path) -> None:
    import base64

    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 0.5 + e / 10, "val_acc": 0.5} for e in (1, 2, 3)]
    assert plot_learning_curves(hist, tmp_path / "plots" / "learning_curves.png").stat().st_size > 5000
    plot_confusion([[3, 1], [0, 4]], ["x", "y"], tmp_path / "plots" / "confusion_matrix.png")
    page = write_report(tmp_path, {"model": "m", "strategy": "s", "data": "d/"},
                        {"test": {"accuracy": 0.875, "n": 8}, "fit": {"wall_seconds": 41.27, "mfu": 0.1969, "kept_epoch": 3}},
                        {"name": "d", "n_train": 20, "n_val": 4, "n_test": 8}).read_text()
    for name in ("learning_curves", "confusion_matrix"):  # the file's own bytes, inside the page
        data = base64.b64encode((tmp_path / "plots" / f"{name}.png").read_bytes()).decode()
        assert f'src="data:image/png;base64,{data}"' in page
    assert "87.5%" in page and "Accuracy" in page and "Wall time</th><td>41.3 s" in page and "19.7%" in page
    assert "Epoch kept" in page and "Training examples" in page and "kept_epoch" not in page and "n_train" not in page
    assert "headstart fit d/ --model m --strategy s" in page


def test_confusion_plot_shows_each_cell_in_its_place(tmp_path: Path) -> None:
    """Read back from the PNG: the four cells of [[3, 1], [0, 4]] (true rows, predicted columns) carry the
    colour of their count on the Blues scale, each in its own quadrant of the matrix."""
    from matplotlib import colormaps
    from PIL import Image

    cm = np.array([[3, 1], [0, 4]])
    path = plot_confusion(cm.tolist(), ["x", "y"], tmp_path / "cm.png")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    blues = (np.array([colormaps["Blues"](t)[:3] for t in np.linspace(0, 1, 256)]) * 255).round().astype(int)
    # the matrix: pixels on the Blues scale that are not the page's white, left of the colour bar
    dist = np.abs(img[:, :, None, :] - blues[None, None]).sum(-1)
    on_scale = (dist.min(-1) <= 6) & (img.sum(-1) < 3 * 255 - 4)
    cols = np.flatnonzero(on_scale.sum(0) > 0.2 * on_scale.sum(0).max())
    gaps = np.flatnonzero(np.diff(cols) > 5)
    left, right = cols[0], cols[gaps[0]] if len(gaps) else cols[-1]  # the matrix ends where the colour bar's gap starts
    rows = np.flatnonzero(on_scale[:, left:right + 1].sum(1) > 0.2 * (right - left))
    top, bottom = rows[0], rows[-1]
    h, w = bottom - top + 1, right - left + 1
    for i in range(2):
        for j in range(2):
            patch = img[top + i * h // 2 + h // 8: top + (i + 1) * h // 2 - h // 8,
                        left + j * w // 2 + w // 8: left + (j + 1) * w // 2 - w // 8].reshape(-1, 3)
            level = np.median(np.abs(patch[:, None, :] - blues[None]).sum(-1).argmin(1)) / 255
            assert level == pytest.approx(cm[i, j] / cm.max(), abs=0.03), (i, j, level)
