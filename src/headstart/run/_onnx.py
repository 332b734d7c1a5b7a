"""An exported ONNX graph run by onnxruntime (``--engine onnx``), fed by the run's own preprocessing.

`headstart export` (``run/export.py``) writes and checks the files; a run only reads them. The graph holds the
whole model, so a run whose network needs untrusted code still predicts through it (docs/security.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HeadstartError
from ..features import in_batches
from ._folder import member

EXPORT_DIR = "export"


class OnnxModel:
    """An exported graph run by onnxruntime, fed by ``batcher`` (the run's eval-time preprocessing)."""

    def __init__(self, path: str | Path, batcher: Any, threads: int | None = None):
        import onnxruntime as ort

        self.path, self.batcher = Path(path), batcher
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise HeadstartError(f"{self.path}: onnxruntime cannot load it ({str(e).splitlines()[0][:160]}); "
                                 "export the run again with `headstart export`") from None
        self.inputs = [i.name for i in self.session.get_inputs()]

    def feed(self, batch: Any) -> dict[str, np.ndarray]:
        if isinstance(batch, dict):
            return {k: batch[k].numpy() for k in self.inputs}
        return {self.inputs[0]: np.ascontiguousarray(batch.numpy())}

    def run_batch(self, batch: Any) -> np.ndarray:
        """The graph's outputs side by side (a multitask graph has one output per task)."""
        outs = self.session.run(None, self.feed(batch))
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=-1)

    def outputs(self, items: list[Any], batch_size: int = 64) -> np.ndarray:
        """Probabilities [N, C] in the order of ``items`` (same batching as PyTorch prediction)."""
        out: np.ndarray | None = None
        for idx, batch in in_batches(items, self.batcher, batch_size, "predicting (onnxruntime)"):
            probs = self.run_batch(batch)
            if out is None:
                out = np.empty((len(items), probs.shape[-1]), dtype=np.float32)
            out[idx] = probs
        return out if out is not None else np.empty((0, 0), dtype=np.float32)


def default_onnx(run_dir: Path) -> Path:
    """The file ``--engine onnx`` uses: the last accepted stage of the latest export."""
    record = run_dir / EXPORT_DIR / "export.json"
    if not record.is_file():
        raise HeadstartError(f"{run_dir}: no ONNX export yet; run `headstart export {run_dir} --format onnx` first")
    try:
        name = json.loads(record.read_text(encoding="utf-8"))["default"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HeadstartError(f"{record}: unreadable ({e!r}); export the run again") from None
    if not isinstance(name, str) or not name.endswith(".onnx"):
        raise HeadstartError(f"{record}: 'default' is {name!r}, not an .onnx file name; export the run again")
    path = member(run_dir, name, f"{record.name} 'default'", under=EXPORT_DIR)
    if not path.is_file():
        raise HeadstartError(f"{path}: named by {record} but missing; export the run again")
    return path
