"""The command line end to end on tiny data: fit, evaluate, predict, errors, --config."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from headstart.cli import app
from tests.conftest import write_image_folder

runner = CliRunner()


def _ok(args: list[str], input: str | None = None):
    res = runner.invoke(app, args, input=input)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def test_fit_evaluate_predict_text(text_csv: Path, tmp_path: Path) -> None:
    res = _ok(["fit", str(text_csv), "--model", "scratch:bow", "--strategy", "scratch", "--out", "runs/t"])
    assert "held-out accuracy" in res.output
    res = _ok(["evaluate", "runs/t", str(text_csv), "--json"])
    m = json.loads(res.output)
    assert m["n"] == 40 and m["accuracy"] > 0.8
    res = _ok(["predict", "runs/t"], input="the team scored a goal in the match\nbake the flour in the oven\n")
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [r["label"] for r in rows] == ["sport", "food"]
    assert abs(sum(rows[0]["probabilities"].values()) - 1.0) < 1e-4


def test_fit_and_predict_images_folder(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "imgs", per_class=10)
    _ok(["fit", str(data), "--model", "scratch:cnn@32", "--strategy", "linear", "--out", "runs/i", "--cv-folds", "2"])
    res = _ok(["predict", "runs/i", str(data / "left"), str(data / "right" / "right_0.png")])
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert len(rows) == 11 and rows[-1]["input"].endswith("right_0.png")
    (data / "list.csv").write_text("path\nleft/left_1.png\nright/right_2.png\n")
    res = _ok(["predict", "runs/i", str(data / "list.csv")])
    rows = [json.loads(line) for line in res.output.strip().splitlines()]
    assert [Path(r["input"]).name for r in rows] == ["left_1.png", "right_2.png"]
    (data / "bare.txt").write_text("left/left_1.png\nright/right_2.png\n")  # no header
    rows = [json.loads(line) for line in _ok(["predict", "runs/i", str(data / "bare.txt")]).output.strip().splitlines()]
    assert [Path(r["input"]).name for r in rows] == ["left_1.png", "right_2.png"]
    (data / "bad.csv").write_text("path\nleft/missing.png\n")
    res = runner.invoke(app, ["predict", "runs/i", str(data / "bad.csv")])
    assert res.exit_code == 2 and "bad.csv:2: image 'left/missing.png' not found" in " ".join(res.output.split())


def test_existing_run_is_not_overwritten(text_csv: Path) -> None:
    _ok(["fit", str(text_csv), "--model", "scratch:bow", "--strategy", "linear", "--out", "runs/x", "--cv-folds", "2"])
    before = Path("runs/x/model.safetensors").read_bytes()
    res = runner.invoke(app, ["fit", str(text_csv), "--model", "scratch:bow", "--out", "runs/x"])
    assert res.exit_code == 2 and "already exists" in res.output and "--overwrite" in res.output
    assert Path("runs/x/model.safetensors").read_bytes() == before
    _ok(["fit", str(text_csv), "--model", "scratch:bow", "--strategy", "linear", "--out", "runs/x", "--overwrite",
         "--cv-folds", "2", "--seed", "5"])


def test_user_mistakes_are_one_line_errors(text_csv: Path) -> None:
    cases = [
        (["fit", "no/such/folder"], "no such file or folder"),
        (["fit", str(text_csv), "--strategy", "finetuen"], "option --strategy: 'finetuen' is unknown"),
        (["fit", str(text_csv), "--augment", "heavy"], "option --augment: 'heavy' is not one of"),
        (["fit", str(text_csv), "--model", "resnet18"], "no known prefix"),
        (["fit", str(text_csv), "--label-col", "nope"], "--label-col 'nope' is not a column"),
        (["evaluate", "not-a-run", str(text_csv)], "not a headstart run directory"),
    ]
    for args, msg in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert msg in " ".join(res.output.split()), (args, res.output)
        assert "Traceback" not in res.output


def test_config_yaml_with_flag_override(text_csv: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {text_csv}\nmodel: scratch:bow\nstrategy: linear\ncv_folds: 2\nseed: 4\nout: runs/y\n")
    _ok(["fit", "--config", str(cfg), "--seed", "7"])
    import yaml

    saved = yaml.safe_load(Path("runs/y/config.yaml").read_text())
    assert saved["seed"] == 7 and saved["strategy"] == "linear" and saved["cv_folds"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: x\nlearning_rate: 3\n")
    res = runner.invoke(app, ["fit", "--config", str(bad)])
    assert res.exit_code == 2 and "unknown key(s) learning_rate" in res.output
