"""Weights load safely: safetensors or weights_only torch.load; pickled code is refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from headstart.backbones import load_state_dict_file
from headstart.errors import HeadstartError


def test_torch_checkpoint_with_state_dict_and_module_prefix(tmp_path: Path) -> None:
    sd = {"module.conv.weight": torch.ones(2, 3), "module.fc.bias": torch.zeros(2)}
    torch.save({"epoch": 3, "state_dict": sd, "best_acc1": torch.tensor(0.5)}, tmp_path / "ckpt.pth.tar")
    out = load_state_dict_file(tmp_path / "ckpt.pth.tar")
    assert set(out) == {"conv.weight", "fc.bias"}


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"w": _Evil(str(marker))}}, f)
    with pytest.raises(HeadstartError, match="refused to load"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(HeadstartError, match="does not exist"):
        load_state_dict_file(tmp_path / "nope.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(HeadstartError, match="not a valid safetensors file"):
        load_state_dict_file(tmp_path / "bad.safetensors")
