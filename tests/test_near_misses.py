"""A near miss gets a suggestion: commands, options, strategies, config keys, backbones, timm names, columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from headstart.cli import app

from .conftest import write_image_folder, write_text_table

runner = CliRunner()


@pytest.mark.parametrize(("argv", "said"), [
    (["fitt", "x"], "Did you mean 'fit'?"),
    (["fit", "demo-text", "--strategy", "linearr"], "did you mean 'linear'?"),
    (["fit", "demo-text", "--model", "timn:resnet18"], "did you mean 'timm'?"),
    (["fit", "imgs", "--model", "timm:resnet1", "--no-pretrained"], "did you mean timm:resnet18?"),
    (["compare", "demo-text", "--lora-rr", "4"], "did you mean --lora-r?"),
    (["compare", "demo-text", "--strategies", "linear,finetun"], "did you mean 'finetune'?"),
])
def test_the_error_names_the_closest_choice(argv: list[str], said: str, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    write_image_folder(tmp_path / "imgs", per_class=3)
    res = runner.invoke(app, argv)
    assert res.exit_code == 2 and said in res.output, res.output


def test_a_misspelled_column_and_config_key(tmp_path: Path) -> None:
    table = write_text_table(tmp_path / "t.csv", per_class=5)
    res = runner.invoke(app, ["fit", str(table), "--label-col", "lable"])
    assert res.exit_code == 2 and "--label-col 'lable' is not a column; did you mean 'label'?" in " ".join(res.output.split())
    (tmp_path / "c.yaml").write_text(f"data: {table}\nstratgy: linear\n")
    res = runner.invoke(app, ["fit", "--config", str(tmp_path / "c.yaml")])
    assert res.exit_code == 2 and "unknown key(s) stratgy; did you mean 'strategy'?" in " ".join(res.output.split())
