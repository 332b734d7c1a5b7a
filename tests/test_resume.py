"""Interrupted fits: SIGKILL then --resume ends exactly like an uninterrupted fit; Ctrl-C stops cleanly."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import headstart
from headstart.errors import HeadstartError
from tests.conftest import write_image_folder, write_text_table

TINY = f"py:{Path(__file__).parent / 'backbones' / 'tiny_factory.py'}:tiny"


def _start(data: Path, out: Path, args: dict, cwd: Path) -> subprocess.Popen:
    code = (f"import headstart; headstart.fit({str(data)!r}, out={str(out)!r}, "
            + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")")
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HEADSTART_QUIET": "1"}, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, ckpt: Path, extra: float) -> None:
    deadline = time.time() + 180
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(extra)
    assert proc.poll() is None, f"the fit ended before it could be interrupted: {proc.stderr.read()[-2000:]}"


def _history(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((out / "history.csv").open())]


CASES = {
    # text: length-grouped batches; images: a shuffled sampler and random augmentation every epoch
    "text": (lambda t: write_text_table(t / "t.csv", per_class=40),
             dict(model="scratch:bow", strategy="scratch", epochs=30, batch_size=8, checkpoint_every=0.3, seed=1)),
    "images": (lambda t: write_image_folder(t / "imgs", per_class=16, classes=3),
               dict(model=TINY, strategy="scratch", epochs=30, batch_size=8, checkpoint_every=0.3, seed=2,
                    augment="standard")),
    # gradual unfreezing: 1 of the 4 groups at first, one more every 10 epochs (all 4 from epoch 30): a kill lands mid-schedule
    "gradual": (lambda t: write_image_folder(t / "imgs", per_class=16, classes=3),
                dict(model=TINY, strategy="gradual", start_unfrozen=1, unfreeze_every=10, epochs=40, batch_size=8, checkpoint_every=0.3,
                     seed=3, augment="standard")),
}


def kill_and_resume(kind: str, folder: Path) -> tuple[headstart.Run, headstart.Run, int, dict]:
    """Fit once uninterrupted; fit again in a subprocess, SIGKILL it after a checkpoint, resume it.

    Returns (uninterrupted run, resumed run, epoch the checkpoint ended with, the strategy state
    in that checkpoint). Checks on the
    way that the killed run left a checkpoint and no model, and is refused without --resume.
    """
    import torch

    make_data, args = CASES[kind]
    data = make_data(folder)
    reference = headstart.fit(data, out=str(folder / "runs" / "whole"), **args)
    out = folder / "runs" / "r"
    proc = _start(data, out, args, folder)
    ckpt = out / "checkpoints" / "last.ckpt"
    _wait_for_checkpoint(proc, ckpt, extra=0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (out / "model.safetensors").exists()
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    with pytest.raises(HeadstartError, match="--resume"):  # never overwritten nor silently restarted
        headstart.fit(data, out=str(out), **args)
    resumed = headstart.fit(data, out=str(out), resume=True, **args)
    return reference, resumed, saved["epoch"] + 1, saved.get("strategy_state", {})


def _ends_like_the_uninterrupted_fit(reference: headstart.Run, run: headstart.Run, killed_after: int, epochs: int) -> None:
    assert 1 <= killed_after < epochs
    assert [int(r["epoch"]) for r in _history(run.path)] == list(range(1, epochs + 1))  # rows before the kill kept
    assert _history(run.path) == _history(reference.path)  # every epoch's losses, identical
    for key in ("accuracy", "log_loss", "macro_f1"):
        assert run.metrics["test"][key] == pytest.approx(reference.metrics["test"][key], abs=1e-9), key
    assert not (run.path / "checkpoints").exists()
    # the Lightning log of the killed attempt is kept beside the resumed one's
    assert (run.path / "logs" / "metrics.csv").is_file() and (run.path / "logs" / "resume-1" / "metrics.csv").is_file()


@pytest.mark.parametrize("kind", ["text", "images"])  # "gradual": its own test, below (each kill-and-resume is ~30 s)
def test_kill_then_resume_ends_like_an_uninterrupted_fit(kind: str, tmp_path: Path) -> None:
    reference, run, killed_after, _ = kill_and_resume(kind, tmp_path)
    _ends_like_the_uninterrupted_fit(reference, run, killed_after, CASES[kind][1]["epochs"])


def test_gradual_resumes_mid_schedule_with_its_unfrozen_groups(tmp_path: Path) -> None:
    """Killed while unfreezing: the checkpoint carries how many groups train, the resumed fit goes on from
    there and ends with the same groups unfrozen, per epoch, and the same metrics as an uninterrupted fit."""
    reference, run, killed_after, state = kill_and_resume("gradual", tmp_path)
    _ends_like_the_uninterrupted_fit(reference, run, killed_after, CASES["gradual"][1]["epochs"])
    rows, ref_rows = _history(run.path), _history(reference.path)
    unfrozen = [int(r["unfrozen_groups"]) for r in rows]
    assert state["unfrozen"] == unfrozen[killed_after - 1]  # saved with the checkpoint, not recomputed
    assert 0 < state["unfrozen"] < 4, f"killed after epoch {killed_after}: not mid-schedule"
    assert unfrozen == [int(r["unfrozen_groups"]) for r in ref_rows] and unfrozen[-1] == 4


def test_ctrl_c_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=40)
    out = tmp_path / "runs" / "c"
    args = ["fit", str(data), "--model", "scratch:bow", "--strategy", "scratch", "--epochs", "30", "--batch-size", "8",
            "--checkpoint-every", "0.3", "--out", str(out)]
    # Ctrl-C as a terminal delivers it. A shell without job control starts background jobs with SIGINT ignored,
    # and children inherit that (Python then installs no KeyboardInterrupt handler): the fit would rightly run on
    # and exit 0. That made this test fail whenever the suite ran as a background job; give the child the default.
    proc = subprocess.Popen([sys.executable, "-m", "headstart.cli", *args], env={**os.environ, "HEADSTART_QUIET": "1"},
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_checkpoint(proc, out / "checkpoints" / "last.ckpt", extra=0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert not (out / "model.safetensors").exists() and (out / "checkpoints" / "last.ckpt").is_file()
    res = subprocess.run([sys.executable, "-m", "headstart.cli", *args, "--resume"], env={**os.environ, "HEADSTART_QUIET": "1"},
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)  # a hang fails, not stalls the suite
    assert res.returncode == 0, res.stderr[-2000:]
    assert [int(r["epoch"]) for r in _history(out)] == list(range(1, 31))


def test_divergence_stops_with_advice_and_saves_no_model(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=40)
    with pytest.raises(FloatingPointError, match=r"lower the learning rate \(--lr\).*(checkpoint|nothing to resume)"):
        headstart.fit(data, model="scratch:bow", strategy="scratch", lr=1e12, epochs=3, out=str(tmp_path / "runs" / "d"))
    assert not (tmp_path / "runs" / "d" / "model.safetensors").exists()
