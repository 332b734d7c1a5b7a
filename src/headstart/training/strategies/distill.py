"""``distill``: train a (smaller) student on a teacher run's softened outputs plus the true labels.

Knowledge distillation (Hinton, Vinyals & Dean 2015, https://arxiv.org/abs/1503.02531)::

    loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)

``t`` [B, C] are the teacher's logits, ``s`` the student's, ``T`` the temperature
(``T^2`` keeps the soft term's gradients on the scale of the hard one). Binary
heads have one logit: the soft term is the cross-entropy of ``sigmoid(s / T)``
against ``sigmoid(t / T)``. Examples from ``--unlabeled`` (an image folder, or a
table of texts) have no ``y`` and contribute the soft term only.

The teacher runs once per example, before training, on the un-augmented input
(its logits are cached on disk, keyed by the teacher's weights file and the
examples, so another student or a resumed fit reuses them); the student sees
augmented views of the same images (offline distillation: cheap, and the usual
choice when the teacher is much larger). The student is any backbone
(``--model``) trained like ``finetune`` (freezing, layer-wise LR decay, warm-up +
cosine); the result is an ordinary run. Its ``metrics.json["distill"]`` and
report compare teacher and student on the same held-out split: accuracy,
parameters, weights file size, latency per example.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...config import _opt
from ...data import TABLE_EXTENSIONS, file_key
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import Outcome, register_strategy
from .finetune import FineTune

if TYPE_CHECKING:  # torch is imported where used: `headstart --help` and the registry do not load it
    import torch


@dataclass
class DistillOptions:
    teacher: str | None = _opt(None, "distill: the teacher's run directory (written by `headstart fit`).")
    temperature: float = _opt(4.0, "distill: softmax temperature T of the soft targets (higher = softer).")
    alpha: float = _opt(0.9, "distill: weight of the soft (teacher) term; 1 - alpha weighs the true labels.")
    unlabeled: str | None = _opt(None, "distill: extra unlabeled inputs (image folder, or a table of texts) taught by the teacher only.")

    def __post_init__(self) -> None:
        if not self.teacher:
            raise ConfigError("strategy distill needs --teacher: the run directory of the teacher model")
        if not (Path(self.teacher).expanduser() / "model.json").is_file():
            raise ConfigError(f"option --teacher: {self.teacher} is not a headstart run directory (no model.json)")
        if not self.temperature > 0:
            raise ConfigError(f"option --temperature: {self.temperature} must be positive")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"option --alpha: {self.alpha} must be in [0, 1]")
        if self.unlabeled is not None and not Path(self.unlabeled).expanduser().exists():
            raise ConfigError(f"option --unlabeled: {self.unlabeled} does not exist")


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float, task: str) -> torch.Tensor:
    """The distillation term, scaled by T^2. ``student``/``teacher``: logits [B, C] ([B, 1] for binary)."""
    import torch
    import torch.nn.functional as F

    t = temperature
    if task == "multiclass":
        return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                        reduction="batchmean") * t * t
    if task in ("binary", "multilabel"):
        return F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t)) * t * t
    return F.mse_loss(student, teacher)  # regression: the teacher's values (standardised as the student's)


def teacher_columns(teacher_classes: list[str], classes: list[str], task: str) -> tuple[np.ndarray, float]:
    """How to put the teacher's logits in the student's class order: (column order, sign).

    A binary head has one logit for its second class: a reversed class order flips its sign.
    """
    if sorted(teacher_classes) != sorted(classes):
        raise ConfigError(f"option --teacher: its classes ({', '.join(teacher_classes)}) are not the data's "
                          f"({', '.join(classes)}); distill on data with the teacher's classes")
    if task == "binary":
        return np.array([0]), (1.0 if teacher_classes == classes else -1.0)
    return np.array([teacher_classes.index(c) for c in classes]), 1.0


@register_strategy
class Distill(FineTune):
    name = "distill"
    summary = "student trained on a teacher run's softened outputs + the true labels (Hinton et al. 2015)"
    Options = DistillOptions

    no_frozen_cache = "distill"
    command = {
        "help": "Train a student model on a teacher run's softened outputs plus DATA's labels (strategy distill). "
                "Any `fit` option may follow (e.g. --epochs 20 --augment none --temperature 4 --alpha 0.9 --unlabeled DIR).",
        "args": [("teacher", "The teacher's run directory.")],
        "data_help": "Labeled data with the teacher's classes: image folder or table file.",
        "model_flag": ("student", "The student backbone: any model string (e.g. scratch:cnn-w8, timm:...)."),
    }

    def prepare(self, ctx: FitContext) -> None:
        import torch

        from ...run import load_run

        self.teacher = load_run(self.opts.teacher)
        data = ctx.data
        if self.teacher.modality != data.modality:
            raise ConfigError(f"option --teacher: {self.opts.teacher} is a model of {self.teacher.modality}s but "
                              f"{self.cfg.data} holds {data.modality}s")
        cols, sign = teacher_columns(self.teacher.classes, data.classes, data.task)
        if data.task != self.teacher.task:
            raise ConfigError(f"option --teacher: its task is {self.teacher.task}, the data's is {data.task}")
        items, keys = data.take(data.train_idx), [data.keys[i] for i in data.train_idx]
        extra, extra_keys = self._unlabeled()
        t = self._teacher_logits(items + extra, keys + extra_keys, ctx)
        t = np.asarray(t)[:, cols] * sign
        if data.task == "regression":  # the teacher's values, in the student's standardised units
            with torch.no_grad():
                values = self.teacher.head.outputs(torch.as_tensor(np.asarray(t), dtype=torch.float32))
                t = ((values - ctx.head.target_mean) / ctx.head.target_std).numpy()
        self.soft_targets = torch.as_tensor(t, dtype=torch.float32)
        y = data.y[data.train_idx]
        self.labels = torch.as_tensor(np.concatenate([y, np.zeros((len(extra), *y.shape[1:]), dtype=y.dtype)]))
        self.labeled = torch.as_tensor(np.arange(len(self.labels)) < len(y))  # unlabeled rows: the teacher's term only
        self.items = items + extra
        ctx.info.update({"teacher": str(self.teacher.path), "temperature": self.opts.temperature, "alpha": self.opts.alpha,
                         "unlabeled_examples": len(extra)})
        super().prepare(ctx)

    def _unlabeled(self) -> tuple[list[Any], list[str]]:
        """The --unlabeled examples and their fingerprint keys (file identity for images, the text itself)."""
        if self.opts.unlabeled is None:
            return [], []
        path = Path(self.opts.unlabeled).expanduser()
        if self.teacher.modality == "text" and path.suffix.lower() not in TABLE_EXTENSIONS:
            raise ConfigError(f"option --unlabeled: {path} must be a table of texts ({', '.join(sorted(TABLE_EXTENSIONS))})")
        if self.teacher.modality == "image" and not path.is_dir():
            raise ConfigError(f"option --unlabeled: {path} must be a folder of images")
        items, refs = self.teacher.resolve_inputs([path])
        if self.teacher.modality == "text":
            return items, [str(x) for x in items]
        return items, [file_key(Path(r)) for r in refs]

    def _teacher_logits(self, items: list[Any], keys: list[str], ctx: FitContext) -> np.ndarray:
        from ...features import extract

        teacher = self.teacher
        weights = teacher.path / "model.safetensors"
        st = weights.stat()
        h = hashlib.sha256(f"{weights.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        for k in keys:
            h.update(k.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        width = 1 if teacher.task == "binary" else teacher.head.num_outputs
        logits, got = extract(teacher.backbone, items, h.hexdigest()[:24], ctx.cache_dir, max(64, self.cfg.batch_size),
                              fn=lambda b: teacher.head(teacher.backbone.forward_features(b)), width=width,
                              tag="teacher-logits", source=self.cfg.data)
        ctx.info["teacher_logits_cached"] = got["cached"]
        return logits

    # -- training ------------------------------------------------------------------------
    def train_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        """Training examples then unlabeled ones; the "label" is the row, which finds targets and soft targets."""
        return self.items, np.arange(len(self.items))

    def training_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, Any]:
        x, rows = batch
        head = ctx.head
        logits = head(self.features(x, ctx))
        y, teacher, has = self.labels[rows], self.soft_targets[rows].to(logits.device), self.labeled[rows]
        soft = soft_loss(logits, teacher, self.opts.temperature, head.task)
        hard = head.loss(logits[has], y[has].to(logits.device), self.cfg.label_smoothing) if has.any() else soft * 0.0
        a = self.opts.alpha
        return {"loss": a * soft + (1.0 - a) * hard, "logits": logits[has], "y": y[has],
                "log": {"soft_loss": soft.detach(), "hard_loss": hard.detach()}}

    # -- teacher vs student ------------------------------------------------------------------
    def finish(self, ctx: FitContext) -> Outcome:
        """Teacher and student on the same held-out split: accuracy, size, latency (``metrics["distill"]``)."""
        from safetensors.torch import save

        from ...evaluate import compute_metrics
        from ...features import predict_outputs

        data, teacher = ctx.data, self.teacher
        items, y = data.take(data.test_idx), data.y[data.test_idx]
        record: dict[str, Any] = {}
        for who, backbone, head in (("teacher", teacher.backbone, teacher.head), ("student", ctx.backbone, ctx.head)):
            if who == "teacher":
                size = (teacher.path / "model.safetensors").stat().st_size
            else:  # what the pipeline will write as the student's model.safetensors
                state = {f"{part}.{k}": v.detach().cpu().contiguous() for part, m in (("backbone", backbone), ("head", head))
                         for k, v in m.state_dict().items()}
                size = len(save(state))
            row: dict[str, Any] = {
                "model": teacher.config.get("model", "") if who == "teacher" else self.cfg.model,
                "parameters": int(sum(p.numel() for m in (backbone, head) for p in m.parameters())),
                "file_mb": round(size / 1e6, 3),
            }
            if len(items):
                probs = predict_outputs(backbone, head, items)
                if who == "teacher":  # teacher columns in the student's class order
                    probs = probs[:, [teacher.classes.index(c) for c in data.classes]]
                m = compute_metrics(y, probs, data.task, data.classes, self._decisions(head, teacher, who, data))
                row["score"], row["score_name"] = m["score"], m["score_name"]
                row["latency_ms"] = round(latency_per_example(backbone, head, items[:32]), 3)
            record[who] = row
        t, s = record["teacher"], record["student"]
        record["size_ratio"] = round(t["parameters"] / max(1, s["parameters"]), 2)
        if "latency_ms" in t:
            record["speedup"] = round(t["latency_ms"] / max(s["latency_ms"], 1e-9), 2)
        same = all(teacher.config.get(k) == getattr(self.cfg, k) for k in ("data", "test", "seed", "test_fraction"))
        record["teacher_split"] = ("same data, seed and held-out split as the student" if same else
                                   "other data or split: the teacher may have trained on the student's held-out examples")
        rows = [[who, r["model"], r.get("score", "n/a"), f"{r['parameters']:,}", r["file_mb"], r.get("latency_ms", "n/a")]
                for who, r in (("teacher", t), ("student", s))]
        note = (f"Student {record['size_ratio']:g}x fewer parameters"
                + (f", {record['speedup']:g}x faster" if "speedup" in record else "") + f". Teacher: {record['teacher_split']}.")
        section = {"title": "Teacher vs student (held-out split)", "rows": rows, "note": note,
                   "columns": ["", "model", s.get("score_name", "accuracy").replace("_", " "), "parameters", "weights MB",
                               "ms / example (batch 1)"]}
        return Outcome(metrics={"distill": record}, sections=[section])

    @staticmethod
    def _decisions(head: Any, teacher: Any, who: str, data: Any) -> dict[str, Any]:
        """The thresholds each model decides with (the teacher's, in the student's label order)."""
        got = head.decisions()
        if who == "teacher" and "thresholds" in got:
            got = {"thresholds": [got["thresholds"][teacher.classes.index(c)] for c in data.classes]}
        return got


def latency_per_example(backbone: Any, head: Any, items: list[Any], warmup: int = 3) -> float:
    """Median milliseconds to predict one example alone (batch of 1), preprocessing included."""
    import torch

    backbone.eval()
    head.eval()
    batcher = backbone.preprocess(train=False)
    times = []
    with torch.inference_mode():
        for i, item in enumerate([items[0]] * warmup + list(items)):
            t0 = time.perf_counter()
            head.outputs(head(backbone.forward_features(batcher([item]))))
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)
