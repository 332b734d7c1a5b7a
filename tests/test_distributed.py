"""Distributed training through Lightning: `--devices 2` on a CPU (two processes, gloo) trains the model one
process trains, within a stated tolerance, writes one run folder, and resumes after a kill like a single
process does. The fits run as real `headstart fit` commands: Lightning starts the second process by running
the command again."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headstart.errors import ConfigError
from headstart.training.engine import RankSlice

from .conftest import write_text_table

# Two processes sum their parts' gradients in another order than one process sums the whole batch's:
# the weights may differ by float32 rounding, compounded over the steps, and nothing more.
WEIGHT_TOLERANCE = 1e-4
ARGS = ["--model", "scratch:bow", "--strategy", "scratch", "--batch-size", "16", "--seed", "1", "--lr", "0.01"]


def _fit(data: Path, out: Path, *flags: str, wait: bool = True) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "headstart", "fit", str(data), "--out", str(out), *ARGS, *flags],
                            env={**os.environ, "HEADSTART_QUIET": "1"}, cwd=out.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    if wait:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    return proc


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def _history(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "history.csv").open()))


def _same_model(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=WEIGHT_TOLERANCE, rtol=0), (k, float((wa[k] - wb[k]).abs().max()))
    ma, mb = (json.loads((r / "metrics.json").read_text())["test"] for r in (a, b))
    assert ma["accuracy"] == mb["accuracy"] and ma["confusion_matrix"] == mb["confusion_matrix"]
    assert ma["log_loss"] == pytest.approx(mb["log_loss"], abs=1e-4)


def test_rank_slices_cover_every_batch_once_and_keep_the_step_count() -> None:
    batches = [[0, 1, 2, 3, 4], [5, 6, 7], [8]]
    parts = [list(RankSlice(batches, r, 2)) for r in range(2)]
    assert [len(p) for p in parts] == [3, 3]  # every process takes every step
    for step, batch in enumerate(batches):
        assert set(parts[0][step]) | set(parts[1][step]) == set(batch)
    assert parts[0] == [[0, 2, 4], [5, 7], [8]] and parts[1] == [[1, 3], [6], [8]]  # the lone example repeated


def test_distributed_options_are_checked() -> None:
    from headstart.config import FitConfig

    with pytest.raises(ConfigError, match="option --devices: 0 must be at least 1"):
        FitConfig(data="x", devices=0)
    with pytest.raises(ConfigError, match="option --distributed: 'horovod' is not one of ddp, fsdp"):
        FitConfig(data="x", distributed="horovod")


@pytest.mark.slow
def test_two_cpu_processes_train_the_model_one_process_trains_and_resume_after_a_kill_to_it(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=40)
    flags = ("--epochs", "20")
    _fit(data, tmp_path / "one", *flags)
    _fit(data, tmp_path / "two", *flags, "--devices", "2")
    _same_model(tmp_path / "one", tmp_path / "two")
    one, two = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert len(one) == len(two) == 20
    for a, b in zip(one, two):  # the epoch means are over all of both processes' examples
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), abs=1e-4)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), abs=1e-4)
    config = (tmp_path / "two" / "config.yaml").read_text()
    assert "devices: 2" in config and not (tmp_path / "two" / "checkpoints").exists()
    fitted = [json.loads((tmp_path / r / "metrics.json").read_text())["fit"]["processes"] for r in ("one", "two")]
    assert fitted == [1, 2]  # Lightning's own world size: two processes did train

    # the same two-process fit, killed after a checkpoint (both processes, as a node failure would), resumes to it
    flags = (*flags, "--devices", "2", "--checkpoint-every", "0.3")
    out = tmp_path / "r"
    proc = _fit(data, out, *flags, wait=False)
    ckpt = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, f"the fit ended before it could be interrupted: {proc.stderr.read()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert 0 < saved["epoch"] + 1 < 20 and not (out / "model.safetensors").exists()
    _fit(data, out, *flags, "--resume")
    _same_model(tmp_path / "two", out)  # the fit without checkpoints: writing them changes nothing
    assert len(_history(out)) == 20
