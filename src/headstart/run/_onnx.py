"""An exported ONNX graph run by onnxruntime (``--engine onnx``), fed by the run's own preprocessing.

`headstart export` (``tasks/export.py``) writes and checks the files; a run only reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import HeadstartError
from ..features import run_batches

EXPORT_DIR = "export"


class OnnxModel:
    """An exported graph run by onnxruntime, fed by the run's own preprocessing."""

    def __init__(self, path: str | Path, backbone: Any, threads: int | None = None):
        import onnxruntime as ort

        self.path, self.backbone = Path(path), backbone
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
        self.width = self.session.get_outputs()[0].shape[-1]

    def feed(self, batch: Any) -> dict[str, np.ndarray]:
        if isinstance(batch, dict):
            return {k: batch[k].numpy() for k in self.inputs}
        return {self.inputs[0]: np.ascontiguousarray(batch.numpy())}

    def run_batch(self, batch: Any) -> np.ndarray:
        return self.session.run(None, self.feed(batch))[0]

    def outputs(self, items: list[Any], batch_size: int = 64) -> np.ndarray:
        """Probabilities [N, C] in the order of ``items`` (same batching as PyTorch prediction)."""
        width = self.width if isinstance(self.width, int) else None
        if width is None:
            width = len(self.run_batch(self.backbone.preprocess(train=False)(items[:1]))[0])
        return run_batches(self.backbone, items, width, lambda b: torch.from_numpy(self.run_batch(b)), batch_size,
                           "predicting (onnxruntime)")


def default_onnx(run_dir: Path) -> Path:
    """The file ``--engine onnx`` uses: the last accepted stage of the latest export."""
    record = run_dir / EXPORT_DIR / "export.json"
    if not record.is_file():
        raise HeadstartError(f"{run_dir}: no ONNX export yet; run `headstart export {run_dir} --format onnx` first")
    try:
        name = json.loads(record.read_text(encoding="utf-8"))["default"]
    except (OSError, ValueError, KeyError) as e:
        raise HeadstartError(f"{record}: unreadable ({e!r}); export the run again") from None
    path = run_dir / EXPORT_DIR / name
    if not path.is_file():
        raise HeadstartError(f"{path}: named by {record} but missing; export the run again")
    return path
