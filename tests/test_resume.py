"""A fit killed with SIGKILL after a checkpoint continues with --resume and ends complete."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import headstart
from headstart.errors import HeadstartError
from tests.conftest import write_text_table


def test_kill_then_resume(tmp_path: Path) -> None:
    data = write_text_table(tmp_path / "t.csv", per_class=40)
    out = tmp_path / "runs" / "r"
    args = dict(model="scratch:bow", strategy="scratch", epochs=150, batch_size=8, checkpoint_every=0.3, seed=1)
    code = (f"import headstart; headstart.fit({str(data)!r}, out={str(out)!r}, "
            + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")")
    env = {**os.environ, "HEADSTART_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path)
    ckpt = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the fit ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (out / "model.safetensors").exists()

    try:  # an interrupted run is neither overwritten nor silently restarted
        headstart.fit(data, out=str(out), **args)
        raise AssertionError("fit over an existing run directory must be refused")
    except HeadstartError as e:
        assert "--resume" in str(e)

    run = headstart.fit(data, out=str(out), resume=True, **args)
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 151))  # epochs before the kill are kept
    assert run.metrics["fit"]["epochs_run"] == 150 and run.metrics["test"]["accuracy"] > 0.8
    assert not (out / "checkpoints").exists()
