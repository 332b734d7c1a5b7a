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
    assert m["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    want_ll = -np.mean(np.log([.8, .2, .8, .6, .8, .4]))
    assert m["log_loss"] == pytest.approx(want_ll, rel=1e-6)


def test_binary_metrics_include_auc() -> None:
    m = compute_metrics(np.array([0, 1, 1, 0]), np.array([[.9, .1], [.2, .8], [.6, .4], [.3, .7]]), "binary", ["n", "p"])
    assert m["accuracy"] == 0.5 and m["roc_auc"] == pytest.approx(0.75)


def test_report_links_its_plots(tmp_path: Path) -> None:
    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 0.5 + e / 10, "val_acc": 0.5} for e in (1, 2, 3)]
    assert plot_learning_curves(hist, tmp_path / "plots" / "learning_curves.png").stat().st_size > 5000
    plot_confusion([[3, 1], [0, 4]], ["x", "y"], tmp_path / "plots" / "confusion_matrix.png")
    page = write_report(tmp_path, {"model": "m", "strategy": "s"}, {"test": {"accuracy": 0.875, "n": 8}}, {"name": "d"}).read_text()
    assert 'src="plots/learning_curves.png"' in page and 'src="plots/confusion_matrix.png"' in page and "0.8750" in page


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
