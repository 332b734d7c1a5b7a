"""`headstart explain`: Grad-CAM and integrated gradients find the evidence where it is, on trained tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import headstart
from headstart.cli import app
from headstart.errors import HeadstartError

from .conftest import write_image_folder


def disc_image(side: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """Grey noise and one white disc, on the left (side 0) or the right (side 1): only the position tells."""
    img = rng.integers(40, 90, (size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cx, cy = size * (0.27 if side == 0 else 0.73) + rng.normal(0, 2), size * 0.5 + rng.normal(0, 4)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < (size * 0.15) ** 2] = 230
    return img


@pytest.fixture(scope="module")
def disc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN trained to tell a disc on the left from one on the right."""
    from PIL import Image

    root = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(8)
    for side, name in ((0, "left"), (1, "right")):
        (root / "imgs" / name).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(disc_image(side, rng)).save(root / "imgs" / name / f"{i}.png")
    run = headstart.fit(root / "imgs", model="scratch:cnn@48", strategy="scratch", epochs=10, augment="none",
                        out=str(root / "run"), cache_dir=str(root / "cache"))
    assert run.metrics["test"]["accuracy"] >= 0.9
    return run.path


def left_share(heat: np.ndarray) -> float:
    w = heat.shape[1]
    return float(heat[:, : w // 2].sum() / heat.sum())


def test_integrated_gradients_lie_on_the_disc(disc_run: Path) -> None:
    from headstart.run.explain import explain

    run = headstart.load(disc_run)
    rng = np.random.default_rng(11)
    sides = [0, 1, 0, 1, 0, 1]
    items = [disc_image(k, rng) for k in sides]
    got = explain(run.backbone, run.head, "image", items, [f"x{i}" for i in range(6)], run.classes, method="ig")
    right = [a for a, k in zip(got, sides) if a.target == run.classes[k]]
    assert len(right) >= 5
    for a, k in zip(got, sides):
        if a.target == run.classes[k]:
            assert (left_share(a.heatmap) > 0.55) == (k == 0), (k, left_share(a.heatmap))
        assert a.heatmap.min() >= 0 and a.heatmap.max() == pytest.approx(1.0)
        assert a.convergence < 0.05  # completeness: the attributions add up to the output's change along the path


class ColourNet(torch.nn.Module):
    """Class k's feature is the mean of colour channel k over the image (three 1x1 filters, one per channel): the
    evidence for "red" lies where the red pixels are, by construction."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None])
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean((2, 3))


@pytest.mark.parametrize("method", ["gradcam", "ig"])
def test_attributions_follow_a_network_built_to_look_at_colours(method: str) -> None:
    """Grad-CAM and integrated gradients, upsampled to the input, in the right orientation and for the class asked."""
    from headstart.backbones._vision import ImageBackbone
    from headstart.heads import Head
    from headstart.run.explain import explain

    backbone = ImageBackbone(ColourNet(), 3, {"kind": "test", "name": "colours"}, {
        "input_size": (3, 32, 32), "mean": (0.0,) * 3, "std": (1.0,) * 3, "crop_pct": 1.0, "interpolation": "bilinear"})
    head = Head("multiclass", 3, 3)
    with torch.no_grad():
        head.fc.weight.copy_(torch.eye(3) * 20)
        head.fc.bias.zero_()
    img = np.zeros((32, 32, 3), np.uint8)
    img[4:28, 2:12, 0] = 255  # a red patch on the left
    img[4:20, 22:30, 1] = 200  # a smaller green one on the right
    names = ["red", "green", "blue"]
    (a,) = explain(backbone, head, "image", [img], ["x"], names, method=method)
    assert a.target == "red" and left_share(a.heatmap) > 0.9
    assert a.view.shape == (32, 32, 3) and tuple(a.view[10, 5]) == (255, 0, 0)  # the input as the model saw it
    (b,) = explain(backbone, head, "image", [img], ["x"], names, method=method, target="green")
    assert b.target == "green" and left_share(b.heatmap) < 0.1
    assert b.heatmap[20:].sum() < 0.05 * b.heatmap.sum()  # rows below the green patch: nothing (not transposed)


def test_explain_cli_writes_a_png_per_image_and_json_lines(disc_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    paths = []
    for k in (0, 1):
        p = tmp_path / f"in{k}.png"
        Image.fromarray(disc_image(k, rng)).save(p)
        paths.append(str(p))
    res = CliRunner().invoke(app, ["explain", str(disc_run), *paths, "--out", str(tmp_path / "why")])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert [r["class"] for r in rows] == ["left", "right"] and all(r["method"] == "gradcam" for r in rows)
    assert all(Path(r["file"]).is_file() and Path(r["file"]).stat().st_size > 5000 for r in rows)
    res = CliRunner().invoke(app, ["explain", str(disc_run), paths[0], "--target", "right", "--method", "ig",
                                   "--steps", "8", "--out", str(tmp_path / "why2")])
    assert res.exit_code == 0 and json.loads(res.stdout.splitlines()[0])["class"] == "right"


def test_explain_refuses_bad_options(disc_run: Path, tmp_path: Path) -> None:
    run = headstart.load(disc_run)
    img = [disc_image(0, np.random.default_rng(0))]
    for kw, msg in [({"method": "lime"}, r"option --method: 'lime' is not one of auto, gradcam, ig"),
                    ({"target": "top"}, r"option --target: 'top' is not a class of this run; classes: left, right"),
                    ({"steps": 1}, r"option --steps: 1 must be at least 2")]:
        with pytest.raises(HeadstartError, match=msg):
            run.explain(img, out=tmp_path / "no", **kw)
    bow = headstart.fit("demo-text", model="scratch:bow", strategy="linear", out=str(tmp_path / "bow"))
    with pytest.raises(HeadstartError, match=r"token attributions need a transformers backbone"):
        bow.explain(["a text"], out=tmp_path / "no")
    with pytest.raises(HeadstartError, match=r"--method gradcam: is for images"):
        bow.explain(["a text"], method="gradcam", out=tmp_path / "no")


def test_text_tokens_that_carry_the_class_score_highest(tmp_path: Path) -> None:
    run = headstart.fit("demo-text", model="minilm", strategy="linear", out=str(tmp_path / "tx"))
    text = "we bake the bread in a hot oven"
    rec = run.explain([text], out=tmp_path / "why")
    (row,) = rec["explanations"]
    assert row["class"] == run.predict([text])[0]["label"]
    from headstart.run.explain import explain

    (a,) = explain(run.backbone, run.head, "text", [text], ["t"], run.classes)
    words = {t: s for t, s in zip(a.tokens, a.scores)}
    top = max(words, key=words.get)
    assert top in ("bake", "bread", "oven"), words
    assert words[top] > 3 * abs(words["the"])  # a content word, well above a function word
    assert "<span" in Path(row["file"]).read_text()


def test_fit_report_explains_its_confident_mistakes(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=20, classes=3, seed=9)
    run = headstart.fit(data, model="scratch:cnn@32", strategy="finetune", epochs=1, out=str(tmp_path / "run"))
    wrong = run.metrics["test"]["confidently_wrong"]
    assert wrong and all(w["explanation"]["method"] == "gradcam" for w in wrong[:6])
    assert (run.path / wrong[0]["explanation"]["png"]).is_file()
    assert "evidence for the class the model chose" in (run.path / "report.html").read_text()
