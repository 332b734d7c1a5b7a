"""Ship a run: ONNX export, int8 quantization and magnitude pruning, each one checked.

``headstart export RUN --format onnx [--prune 0.5] [--quantize int8]`` writes
``RUN/export/``::

    model.onnx                  fp32 graph, dynamic batch (and sequence length for text)
    model-pruned50.onnx         with --prune 0.5: half of every conv/linear weight set to 0 (smallest |w| per layer)
    model[-pruned50]-int8.onnx  with --quantize int8
    export.json                 what each file is, how it was checked, which one `--engine onnx` uses

A new export replaces the previous one (the files its export.json lists).

The stages form a chain (fp32, then pruned, then int8) and every file is run
with onnxruntime on inputs that PyTorch also predicts: the maximum absolute
difference of the probabilities, the agreement of the predicted classes and the
score are recorded. A stage that loses more than ``max_drop`` points against
PyTorch fp32 on the run's *selection split* is refused (its file is not kept,
the earlier stages are) unless ``force``. The reported split is scored too, in
each stage's ``held_out``, and decides nothing: a figure that chose which file
to keep would no longer be an honest held-out figure.

Inputs of the graph are what the run's preprocessing produces: a float
``pixels`` tensor ``[batch, 3, H, W]`` for images; the tokenizer's tensors
(``input_ids``, ``attention_mask``, ...) ``[batch, seq]`` for text. Its output
``probabilities`` is what ``Run.predict_proba`` returns, so predictions through
onnxruntime use the same preprocessing and the same output format.

Quantization uses onnxruntime: *static* QDQ per-channel int8 with calibration
on training images for vision (activations of convolutions need calibrated
ranges to keep accuracy), *dynamic* int8 for text (the usual choice for
transformers: weights int8, activation ranges per batch). Depthwise convolutions
stay float and calibration uses percentiles (see `quantize_int8`). Pruning uses
``torch.nn.utils.prune.l1_unstructured`` per layer, then ``prune.remove`` to make
it permanent; without fine-tuning afterwards, high sparsity usually costs
accuracy, and the check says so.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import atomic_write_text
from ..errors import ConfigError, DataError, HeadstartError
from ..features import predict_outputs
from ._onnx import EXPORT_DIR, OnnxModel

FORMATS = ("onnx",)
QUANTIZE = ("int8",)


# -- the graph ---------------------------------------------------------------------
class _Graph(nn.Module):
    """backbone + head -> probabilities, with the batch's tensors as positional inputs."""

    def __init__(self, backbone: nn.Module, head: nn.Module, keys: Sequence[str] | None):
        super().__init__()
        self.backbone, self.head, self.keys = backbone, head, list(keys) if keys else None

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        batch = dict(zip(self.keys, tensors)) if self.keys else tensors[0]
        out = self.head.outputs(self.head(self.backbone.forward_features(batch)))
        return tuple(self.head.split(out).values()) if hasattr(self.head, "heads") else out  # one output per task


def example_batch(backbone: Any, items: list[Any]) -> tuple[list[str], tuple[torch.Tensor, ...], tuple[dict[int, str], ...]]:
    """(input names, example tensors, dynamic axes per input) for the graph of ``backbone``."""
    batch = backbone.preprocess(train=False)(items)
    if isinstance(batch, dict):
        names = list(batch)
        tensors = tuple(batch[k] for k in names)
        axes = tuple({0: "batch", 1: "seq"} if t.ndim == 2 else {i: f"{k}_dim{i}" for i in range(t.ndim)}
                     for k, t in zip(names, tensors))
        return names, tensors, axes
    return ["pixels"], (batch.contiguous(),), ({0: "batch"},)


def output_names(head: Any) -> list[str]:
    """The graph's outputs: ``probabilities`` (or ``values`` for a regression), or one per task, by task name."""
    if hasattr(head, "heads"):
        return list(head.heads)
    return ["probabilities" if head.kind.probabilities else "values"]


def to_onnx(backbone: Any, head: Any, items: list[Any], path: Path) -> list[str]:
    """Export backbone + head to ``path`` (one self-contained file). Returns the input names.

    ``items``: two or more real examples (different lengths for text), so that the
    traced shapes are not specialised to one batch.
    """
    names, tensors, axes = example_batch(backbone, items)
    graph = _Graph(backbone, head, names if names != ["pixels"] else None).eval()
    # the exporter prints its steps and the graph optimiser logs its skips: the check after export is what matters
    with warnings.catch_warnings(), torch.no_grad(), _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph, tensors, str(path), dynamo=True, external_data=False, input_names=names,
                              output_names=output_names(head),
                              dynamic_shapes=(axes,), verbose=False)
        except Exception as e:  # torch.export / onnxscript raise many types; the first line says which operation
            path.unlink(missing_ok=True)
            raise HeadstartError(f"{backbone.spec.get('kind')}:{backbone.spec.get('name', '')}: this network cannot be "
                                 f"exported to ONNX ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})") from None
    return names


# -- compression -------------------------------------------------------------------------
def prune_magnitude(backbone: nn.Module, head: nn.Module, amount: float) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """Copies of backbone and head with ``amount`` of every conv/linear weight zeroed (smallest |w| per layer).

    ``prune.remove`` makes it permanent: the weights are plain tensors again, zeros included.
    Embeddings and normalisation layers are left alone (they are lookups and scales, not filters).
    """
    from torch.nn.utils import prune

    bb, hd = copy.deepcopy(backbone), copy.deepcopy(head)
    bb.to(memory_format=torch.contiguous_format)  # prediction leaves image weights channels_last; pruning needs views
    layers = [m for part in (bb, hd) for m in part.modules()
              if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and m.weight.numel() > 1]
    total = zeros = 0
    for m in layers:
        prune.l1_unstructured(m, "weight", amount=amount)
        prune.remove(m, "weight")
        total += m.weight.numel()
        zeros += int((m.weight == 0).sum())
    return bb.eval(), hd.eval(), {"layers": len(layers), "weights": total, "sparsity": round(zeros / max(1, total), 4)}


def quantize_int8(src: Path, dst: Path, modality: str, calibration: Callable[[], Any] | None) -> str:
    """int8 copy of an ONNX file; returns the method used (recorded in export.json)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if modality == "text" or calibration is None:
        with _quiet_root_logger():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        return "onnxruntime dynamic int8 (weights int8, activation ranges per batch)"

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration())

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_name(f".{dst.stem}.pre.onnx")
    try:
        # When its symbolic shape inference is incomplete, onnxruntime dumps sym_shape_infer_temp.onnx (+ a
        # ~90 MB .data file) into the working directory: run it from a scratch folder, never the user's.
        with tempfile.TemporaryDirectory(prefix="headstart-quant-") as scratch, contextlib.chdir(scratch):
            quant_pre_process(str(src.resolve()), str(pre.resolve()))
    except Exception:  # shape inference is an optimisation, not a requirement
        pre.write_bytes(src.read_bytes())
    try:
        import onnx

        # Depthwise convolutions stay float: their per-channel ranges vary too widely for int8 (the known
        # MobileNet problem; they are a small share of the FLOPs). Percentile calibration ignores activation
        # outliers. Measured on MobileNetV1 x0.25 / sign-language digits: min-max with everything quantized lost
        # 4.6 points, this recipe 0.5 (docs/benchmarks.md).
        graph = onnx.load(str(pre), load_external_data=False).graph
        depthwise = [n.name for n in graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]
        with _quiet_root_logger(), contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(pre), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            op_types_to_quantize=["Conv", "Gemm", "MatMul"],  # not the output softmax: keep full-precision probabilities
                            nodes_to_exclude=depthwise, calibrate_method=CalibrationMethod.Percentile,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)
    return ("onnxruntime static int8 QDQ, per-channel weights, percentile calibration on training inputs"
            + (f", {len(depthwise)} depthwise convolutions kept in float" if depthwise else ""))


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer logs advice on the root logger; the export's own check reports what matters."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def zipped_size(path: Path) -> int:
    """Bytes after deflate: what pruning's zeros save when the file is shipped compressed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, path.name)
    return buf.tell()


# -- the command ---------------------------------------------------------------------------
def _check_options(format: str, quantize: str | None, prune: float | None, max_drop: float, calibration: int) -> None:
    if format not in FORMATS:
        raise ConfigError(f"option --format: {format!r} is not supported; formats: {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ConfigError(f"option --quantize: {quantize!r} is not supported; use int8")
    if prune is not None and not 0.0 < prune < 1.0:
        raise ConfigError(f"option --prune: {prune} must be a fraction in (0, 1), e.g. 0.5 = half of each layer's weights")
    if not max_drop >= 0:
        raise ConfigError(f"option --max-drop: {max_drop} must be >= 0 (accuracy points)")
    if calibration < 1:
        raise ConfigError(f"option --calibration: {calibration} must be at least 1")


@dataclass
class Checked:
    """Labeled inputs an export is run on: ``items``/``y`` (in the run's order, `Run.truth`) and ``where`` they
    come from."""

    items: list[Any]
    y: Any
    where: str


def check_inputs(run: Any, data: str | Path | None) -> tuple[Checked, Checked | None, list[Any]]:
    """(the inputs that decide whether a file is kept, the inputs only reported, calibration items).

    The run's own data: the decision is taken on its selection split (the part of the training data the fit set
    aside; its training split when it had none), and the reported split is only scored, never used to accept or
    refuse a file. ``data`` given: all of it decides (the user chose it), and nothing else is scored."""
    if data is None:
        ds = run.reload_data()
        rng = np.random.default_rng(0)
        calib = ds.take(rng.permutation(ds.train_idx))
        part, idx = ("selection split", ds.val_idx) if len(ds.val_idx) else ("training split (it has no selection split)",
                                                                             ds.train_idx)
        decide = Checked(ds.take(idx), run.truth(ds, idx), f"the run's {part} (n={len(idx)})")
        what = f"test data {run.config['test']}" if run.config.get("test") else f"held-out split of {run.config.get('data')}"
        report = (Checked(ds.take(ds.test_idx), run.truth(ds, ds.test_idx),
                          f"the run's {what} (n={len(ds.test_idx)}; reported, not used to decide)")
                  if len(ds.test_idx) else None)
        return decide, report, calib
    ds = run.read_like_fit(data, {})
    idx = np.arange(len(ds.items))
    items = ds.take(idx)
    return Checked(items, run.truth(ds, idx), f"all of {data} (n={len(items)}; also used to calibrate int8)"), None, items


def _stage(run: Any, name: str, path: Path, on: Checked, ref: np.ndarray, ref_acc: float,
           batch_size: int) -> dict[str, Any]:
    """Run one exported file on ``on`` and compare with PyTorch fp32's outputs ``ref`` and score ``ref_acc``."""
    t0 = time.perf_counter()
    probs = OnnxModel(path, run.batcher).outputs(on.items, batch_size)
    m = run.score_outputs(on.y, probs)
    acc = m["score"]
    out = {
        "stage": name, "file": path.name, "bytes": path.stat().st_size, "zipped_bytes": zipped_size(path),
        "max_abs_diff": float(np.abs(probs - ref).max()), "score": float(acc), "score_name": m["score_name"],
        "drop_points": round(100.0 * (ref_acc - acc), 3), "seconds": round(time.perf_counter() - t0, 2),
    }
    if "accuracy" in m:
        out["accuracy"] = float(m["accuracy"])
    agree = agreement(run, probs, ref)
    if agree is not None:
        out["class_agreement"] = agree
    return out


def _reference(run: Any, on: Checked, batch_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """PyTorch fp32's outputs on ``on`` and their score (what every stage is compared with)."""
    ref = predict_outputs(run.backbone, run.head, on.items, batch_size)
    m = run.score_outputs(on.y, ref)
    return ref, {"score": float(m["score"]), "score_name": m["score_name"],
                 **({"accuracy": float(m["accuracy"])} if "accuracy" in m else {})}


def agreement(run: Any, probs: np.ndarray, ref: np.ndarray) -> float | None:
    """How often the exported file answers as PyTorch does: the same class, or the same decision per label
    (multilabel, at the run's thresholds); None for values (regression: see ``max_abs_diff``)."""
    if run.tasks:  # several: the mean over the tasks that decide something
        parts = [agreement_of(t["task"], run.decisions.get("tasks", {}).get(n, {}), p, r)
                 for (n, t), p, r in zip(run.tasks.items(), run.split_outputs(probs).values(), run.split_outputs(ref).values())]
        parts = [a for a in parts if a is not None]
        return float(np.mean(parts)) if parts else None
    return agreement_of(run.task, run.decisions, probs, ref)


def agreement_of(task: str, decisions: dict[str, Any], probs: np.ndarray, ref: np.ndarray) -> float | None:
    if task == "regression":
        return None
    if task == "multilabel":
        th = np.asarray(decisions.get("thresholds") or [0.5] * probs.shape[1])
        return float(((probs >= th) == (ref >= th)).mean())
    return float((probs.argmax(1) == ref.argmax(1)).mean())


def export_run(run: Any, *, format: str = "onnx", quantize: str | None = None, prune: float | None = None,
               max_drop: float = 1.0, force: bool = False, data: str | Path | None = None, calibration: int = 256,
               batch_size: int = 32) -> dict[str, Any]:
    """Export ``run`` to ``RUN/export/`` and check every file (see the module docstring). Returns export.json's content."""
    _check_options(format, quantize, prune, max_drop, calibration)
    decide, report, calib = check_inputs(run, data)
    if len(decide.items) < 1:
        raise DataError(f"{decide.where}: no labeled example to check the export on; pass --data with labeled data")
    folder = run.path / EXPORT_DIR
    folder.mkdir(exist_ok=True)
    _forget_previous(folder)
    t0 = time.perf_counter()
    ref, ref_m = _reference(run, decide, batch_size)
    ref_acc = ref_m["score"]
    reported = _reference(run, report, batch_size) if report is not None else None
    items = decide.items
    sample = sorted(items[: max(2, min(8, len(items)))], key=lambda x: len(x) if isinstance(x, str) else 0)
    sample = sample if len(sample) > 1 else sample * 2
    record: dict[str, Any] = {
        "format": format, "run": str(run.path), "modality": run.modality, "task": run.task, "classes": run.classes,
        "checked_on": decide.where, "max_drop_points": max_drop, "stages": [], "pytorch_fp32": ref_m, "refused": None,
    }
    if report is not None and reported is not None:  # (both or neither)
        record["reported_on"] = report.where
        record["pytorch_fp32"]["held_out"] = reported[1]

    def accept(stage: dict[str, Any], tmp: Path, final: Path) -> None:
        stage["accepted"] = stage["drop_points"] <= max_drop
        stage["forced"] = not stage["accepted"] and force
        if not stage["accepted"] and not force:
            tmp.unlink(missing_ok=True)
            record["refused"] = stage
            _write_record(folder, record)
            raise HeadstartError(
                f"{stage['stage']}: {stage['score_name'].replace('_', ' ')} {stage['score']:.4f} vs {ref_acc:.4f} in "
                f"PyTorch on {decide.where} ({stage['drop_points']:.2f} points lost > --max-drop {max_drop:g}); {final.name} not written"
                + (f" (class agreement {stage['class_agreement']:.4f})" if "class_agreement" in stage else "")
                + ". Pass --force to keep it anyway, or raise --max-drop")
        tmp.replace(final)
        stage["file"] = final.name
        record["stages"].append(stage)
        record["default"] = final.name

    def build(name: str, stem: str, make: Callable[[Path], dict[str, Any]]) -> Path:
        final = folder / f"{stem}.onnx"
        tmp = folder / f".{stem}.tmp.onnx"
        extra = make(tmp)
        stage = {**_stage(run, name, tmp, decide, ref, ref_acc, batch_size), **extra}
        if report is not None and reported is not None:  # scored for the record; it decides nothing
            held = _stage(run, name, tmp, report, reported[0], reported[1]["score"], batch_size)
            stage["held_out"] = {k: held[k] for k in ("score", "accuracy", "drop_points", "class_agreement") if k in held}
        accept(stage, tmp, final)
        return final

    def fp32(tmp: Path) -> dict[str, Any]:
        record["inputs"] = to_onnx(run.backbone, run.head, sample, tmp)
        return {}

    current = build("onnx fp32", "model", fp32)
    stem = "model"
    if prune is not None:
        def pruned(tmp: Path) -> dict[str, Any]:
            bb, hd, stats = prune_magnitude(run.backbone, run.head, prune)
            to_onnx(bb, hd, sample, tmp)
            return {"prune": {"amount": prune, **stats}}

        stem = f"model-pruned{int(round(prune * 100))}"
        current = build(f"pruned {prune:g} (fp32)", stem, pruned)
    if quantize == "int8":
        src = current

        def int8(tmp: Path) -> dict[str, Any]:
            calib_fn = _calibration(run.backbone, calib[:calibration]) if run.modality == "image" else None
            return {"method": quantize_int8(src, tmp, run.modality, calib_fn)}

        build("int8", f"{stem}-int8", int8)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    _write_record(folder, record)
    return record


def _calibration(backbone: Any, items: list[Any]) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """Batches of preprocessed images for static quantization's range calibration."""
    size = min(32, len(items))  # equal batches: onnxruntime's histogram calibrators stack them

    def batches() -> Iterator[dict[str, np.ndarray]]:
        batcher = backbone.preprocess(train=False)
        for i in range(0, len(items) - size + 1, size):
            yield {"pixels": np.ascontiguousarray(batcher(items[i : i + size]).numpy())}

    return batches


def _forget_previous(folder: Path) -> None:
    """A new export replaces the previous one: remove the files its export.json lists (nothing else), so that
    no file of an older export is mistaken for one this export checked."""
    try:
        old = json.loads((folder / "export.json").read_text(encoding="utf-8"))
        names = [st["file"] for st in old.get("stages", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    for name in names:
        if isinstance(name, str) and Path(name).name == name and name.endswith(".onnx"):
            (folder / name).unlink(missing_ok=True)
    (folder / "export.json").unlink(missing_ok=True)


def _write_record(folder: Path, record: dict[str, Any]) -> None:
    atomic_write_text(folder / "export.json", json.dumps(record, indent=2))


__all__ = ["export_run", "prune_magnitude", "quantize_int8", "to_onnx"]
