from __future__ import annotations

import dataclasses

import pytest

from headstart.config import FitConfig
from headstart.errors import ConfigError


def test_every_field_has_help() -> None:
    assert all(f.metadata.get("help") for f in dataclasses.fields(FitConfig))


@pytest.mark.parametrize("bad", [{"val_fraction": 0.95}, {"batch_size": 0}, {"lr": -1.0}, {"layer_decay": 0.0},
                                 {"augment": "huge"}, {"header": "maybe"}, {"labels_per_class": 0}, {"epochs": 0}])
def test_bad_values_name_the_option(bad: dict) -> None:
    key = next(iter(bad))
    with pytest.raises(ConfigError, match=f"option --{key.replace('_', '-')}"):
        FitConfig(data="x", **bad)


def test_yaml_round_trip(tmp_path) -> None:
    cfg = FitConfig(data="d", model="minilm", lr=3e-4, freeze=2)
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert FitConfig.from_yaml(p) == cfg


def test_resolved_defaults_depend_on_modality_and_size() -> None:
    t = FitConfig(data="d").resolved("text", n_train=5000)
    i = FitConfig(data="d").resolved("image", n_train=100)
    assert (t.model, t.epochs, t.lr, t.augment, t.layer_decay) == ("minilm", 2, 1e-4, "none", 1.0)
    assert (i.epochs, i.augment) == (18, "standard")  # 4 steps/epoch: raised to reach ~70 steps
    assert FitConfig(data="d").resolved("text", n_train=12).epochs == 50
    assert FitConfig(data="d").resolved("text", n_train=5000, task="multilabel").epochs == 6  # measured: 2 underfits
    assert FitConfig(data="d").resolved("image", n_train=5000, task="multilabel").epochs == 10
