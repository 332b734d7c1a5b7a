"""``multitask``: one shared backbone, one head per task, the task losses combined.

Caruana (1997), "Multitask Learning": tasks that share a representation teach it more than one alone. The
tasks come from one table (every ``--label-col`` a task of its own, each of its own type: classes, label
sets or values) or from several datasets of one modality (``--task NAME=PATH``, repeated); see
`headstart.data._targets`. A missing label is masked in its task's loss, so a row labeled for one task only
still trains the shared backbone through that task.

The loss is ``sum_t w_t * L_t`` over the tasks a batch has labels for, with ``--task-weighting``:

``static``       ``w_t`` from ``--task-weight NAME=W`` (default 1 each).
``uncertainty``  Kendall, Gal & Cipolla, CVPR 2018: a learned log-variance ``s_t`` per task,
                 ``exp(-s_t) * L_t + s_t / 2`` for classes and label sets, ``exp(-s_t) * L_t / 2 + s_t / 2``
                 for values (the Gaussian likelihood's 1/2): a noisier task gets a smaller weight.
``dwa``          dynamic weight averaging, Liu, Johns & Davison, CVPR 2019: ``w_t = K * softmax(r_t / T)`` with
                 ``r_t`` = the task's mean training loss in the last epoch over the one before (a task whose
                 loss falls slowly gets more weight); equal weights for the first two epochs.

The epochs are chosen on the selection split's sum of task losses (static weights). Every ``finetune``
option applies: freezing, the frozen-layer cache, discriminative learning rates. The run predicts every
task's output; its metrics, report and plots are per task, with the mean of the task scores as its score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...config import _opt
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import Outcome, options_for, register_strategy
from .finetune import FineTune

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHTINGS = ("static", "uncertainty", "dwa")


def pairs(values: list[str] | None, option: str, cast: Any = str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> {"a": cast("1"), "b": cast("x")}, each checked."""
    out: dict[str, Any] = {}
    for v in values or []:
        name, sep, rest = str(v).partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise ConfigError(f"option {option}: {v!r} must look like NAME=VALUE")
        if name.strip() in out:
            raise ConfigError(f"option {option}: task {name.strip()!r} is given twice")
        try:
            out[name.strip()] = cast(rest.strip())
        except ValueError:
            raise ConfigError(f"option {option}: {rest.strip()!r} of task {name.strip()!r} is not a number") from None
    return out


@dataclass
class MultitaskOptions:
    task: list[str] | None = _opt(None, "multitask: one dataset per task, NAME=PATH (repeat; a folder or a table); "
                                        "without it every --label-col of the table is a task.")
    task_weight: list[str] | None = _opt(None, "multitask: static weight of a task's loss, NAME=W (repeat; default 1).")
    task_weighting: str = _opt("static", "multitask: how the task losses are combined: static (--task-weight), "
                                         "uncertainty (learned, Kendall et al. 2018), dwa (dynamic weight averaging, "
                                         "Liu et al. 2019).")
    dwa_temperature: float = _opt(2.0, "multitask: DWA's temperature (larger: weights nearer equal).")

    def __post_init__(self) -> None:
        if isinstance(self.task, str):  # one given in a config file or the library
            self.task = [self.task]
        if isinstance(self.task_weight, str):
            self.task_weight = [self.task_weight]
        if self.task_weighting not in WEIGHTINGS:
            raise ConfigError(f"option --task-weighting: {self.task_weighting!r} is not one of {', '.join(WEIGHTINGS)}")
        if not self.dwa_temperature > 0:
            raise ConfigError(f"option --dwa-temperature: {self.dwa_temperature} must be positive")
        self.datasets = pairs(self.task, "--task")
        self.weights = pairs(self.task_weight, "--task-weight", float)
        if any(not w >= 0 for w in self.weights.values()):
            raise ConfigError("option --task-weight: weights must be >= 0")


@register_strategy
class Multitask(FineTune):
    name = "multitask"
    summary = "one backbone, a head per task (several label columns or datasets), losses weighted static/uncertainty/DWA"
    Options = MultitaskOptions
    tasks = ("multitask",)

    @classmethod
    def read_data(cls, cfg: Any) -> Any:
        from ...data import load_data

        opts = options_for(cfg)
        kw = cfg.load_kwargs()
        if opts.datasets:
            if len(opts.datasets) < 2:
                raise ConfigError("strategy multitask: give two or more --task NAME=PATH (or several --label-col)")
            ds = load_data(cfg.data, **kw, tasks=opts.datasets)
        else:
            if not cfg.label_col or len(cfg.label_col) < 2:
                raise ConfigError("strategy multitask: give each task's label column, --label-col A --label-col B, or "
                                  "one dataset per task, --task NAME=PATH (twice or more)")
            ds = load_data(cfg.data, **kw, multitask=True)
        unknown = sorted(set(opts.weights) - set(ds.targets))
        if unknown:
            raise ConfigError(f"option --task-weight: {unknown[0]!r} is not a task; the tasks are {', '.join(ds.targets)}")
        return ds

    # -- the heads and the labels ------------------------------------------------------------
    def new_head(self, ctx: FitContext) -> None:
        from ...heads import MultiHead

        ds = ctx.data
        ctx.head = MultiHead({n: (t.task, len(t.classes)) for n, t in ds.targets.items()}, ctx.backbone.num_features,
                             self.cfg.dropout)
        options = {"pos_weight": self.cfg.pos_weight, "regression_loss": self.cfg.regression_loss}
        fitted = {}
        for name, t in ds.targets.items():
            rows = ds.train_idx[t.known[ds.train_idx]]
            got = ctx.head.heads[name].fit_targets(t.y[rows], options)
            if got:
                fitted[name] = got
        if fitted:
            ctx.info["targets"] = fitted

    def prepare(self, ctx: FitContext) -> None:
        import torch

        super().prepare(ctx)
        targets = ctx.data.targets
        self.names = list(targets)
        self.labels = {n: torch.as_tensor(np.nan_to_num(t.y, nan=0.0)) for n, t in targets.items()}
        self.known = {n: torch.as_tensor(t.known) for n, t in targets.items()}
        self.values = {n: t.task == "regression" for n, t in targets.items()}
        o = self.opts
        self.static = {n: float(o.weights.get(n, 1.0)) for n in self.names}
        self.weights = dict(self.static)
        self.log_var = torch.nn.Parameter(torch.zeros(len(self.names))) if o.task_weighting == "uncertainty" else None
        self.epoch_losses: list[dict[str, float]] = []  # DWA: each finished epoch's mean training loss per task
        self._sums = {n: 0.0 for n in self.names}
        self._counts = {n: 0 for n in self.names}

    def extra_modules(self, ctx: FitContext) -> dict[str, nn.Module]:
        import torch

        if self.log_var is None:
            return {}
        holder = torch.nn.Module()
        holder.log_var = self.log_var
        return {"task_uncertainty": holder}

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        extra = [] if self.log_var is None else [{"params": [self.log_var], "lr": self.base_lr(ctx) * self.head_lr_mult(ctx),
                                                  "name": "task_uncertainty", "weight_decay": 0.0}]
        return super().param_groups(ctx) + extra

    def train_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        """The training examples (or their cached frozen-layer rows) with their row in the data as the label:
        each task's label (or its absence) is looked up by row."""
        ds = ctx.data
        items = list(range(len(ds.train_idx))) if self.prefix is not None else ds.take(ds.train_idx)
        return items, ds.train_idx.astype(np.int64)

    def val_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        ds = ctx.data
        return ds.take(ds.val_idx), ds.val_idx.astype(np.int64)

    # -- the loss -----------------------------------------------------------------------------
    def task_losses(self, logits: dict[str, torch.Tensor], rows: torch.Tensor, ctx: FitContext) -> dict[str, torch.Tensor]:
        """Each task's mean loss over the examples of the batch that carry its label (tasks without one: absent)."""
        out = {}
        rows = rows.cpu()
        for name in self.names:
            m = self.known[name][rows]
            if m.any():
                y = self.labels[name][rows][m].to(logits[name].device)
                out[name] = ctx.head.heads[name].loss(logits[name][m.to(logits[name].device)], y, self.cfg.label_smoothing)
        return out

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.log_var is None:
            return sum(self.weights[n] * v for n, v in losses.items())  # type: ignore[return-value]
        total = 0.0
        for n, v in losses.items():
            s = self.log_var[self.names.index(n)]
            half = 0.5 if self.values[n] else 1.0
            total = total + half * self.static[n] * v * s.neg().exp() + 0.5 * s
        return total  # type: ignore[return-value]

    def training_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, Any]:
        x, rows = batch
        logits = ctx.head.logits(self.features(x, ctx))
        losses = self.task_losses(logits, rows, ctx)
        for n, v in losses.items():  # DWA's record of the epoch
            k = int(self.known[n][rows.cpu()].sum())
            self._sums[n] += float(v.detach()) * k
            self._counts[n] += k
        loss = self.combine(losses) if losses else sum(lg.sum() * 0.0 for lg in logits.values())
        return {"loss": loss, "log": {f"{n}_loss": v.detach() for n, v in losses.items()}}

    def validation_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, torch.Tensor]:
        import torch

        x, rows = batch
        losses = self.task_losses(ctx.head.logits(ctx.backbone.forward_features(x)), rows, ctx)
        loss = sum(self.static[n] * v for n, v in losses.items()) if losses else torch.tensor(0.0)
        return {"loss": loss, "acc": torch.tensor(float("nan"))}  # type: ignore[dict-item]

    # -- the schedule -------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None:
        super().on_epoch_start(epoch, ctx)
        if any(self._counts.values()):
            self.epoch_losses.append({n: self._sums[n] / max(1, self._counts[n]) for n in self.names})
        self._sums = {n: 0.0 for n in self.names}
        self._counts = {n: 0 for n in self.names}
        if self.opts.task_weighting == "dwa":
            self.weights = dwa_weights(self.epoch_losses, self.names, self.opts.dwa_temperature, self.static)

    def epoch_record(self, ctx: FitContext) -> dict[str, Any]:
        if self.log_var is not None:
            return {f"w_{n}": round(float(self.log_var[i].detach().neg().exp()), 5) for i, n in enumerate(self.names)}
        return {f"w_{n}": round(w, 5) for n, w in self.weights.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_losses": [dict(e) for e in self.epoch_losses], "sums": dict(self._sums), "counts": dict(self._counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch_losses = [dict(e) for e in state.get("epoch_losses", [])]
        self._sums = dict(state.get("sums", self._sums))
        self._counts = dict(state.get("counts", self._counts))

    # -- after training -------------------------------------------------------------------------
    def decide(self, ctx: FitContext) -> None:
        """Per task, what its type chooses on the selection split (the thresholds of a multilabel task)."""
        ds = ctx.data
        deciding = [n for n, t in ds.targets.items() if t.kind.decides]
        if not deciding:
            return
        if not len(ds.val_idx):
            ctx.info["decisions"] = "defaults (0.5): no selection split to choose them on"
            return
        split = ctx.head.split(self.outputs(ctx, ds.val_idx))
        for n in deciding:
            t = ds.targets[n]
            m = t.known[ds.val_idx]
            if m.any():
                ctx.head.heads[n].set_decisions(t.kind.decide(t.y[ds.val_idx][m], split[n][m]))
        ctx.info["decisions"] = "chosen on the selection split"

    def score(self, ctx: FitContext, idx: np.ndarray) -> tuple[dict[str, Any], np.ndarray | None]:
        """Each task's metrics on its labeled examples of ``idx``; the score is the mean of the task scores."""
        from ...evaluate import multitask_metrics

        ds = ctx.data
        out = self.outputs(ctx, idx)
        return multitask_metrics({n: (t.task, t.classes, t.y[idx]) for n, t in ds.targets.items()},
                                 ctx.head.split(out), ctx.head.decisions()), out

    def finish(self, ctx: FitContext) -> Outcome:
        ds, o = ctx.data, self.opts
        spec = [{"name": n, "task": t.task, "classes": t.classes} for n, t in ds.targets.items()]
        summary = [("tasks", ", ".join(f"{n} ({t.task}, {len(t.classes)})" for n, t in ds.targets.items())),
                   ("task weighting", o.task_weighting + (f" (T={o.dwa_temperature:g})" if o.task_weighting == "dwa" else ""))]
        rows = [[n, t.task, int(t.known[ds.train_idx].sum()), self.static[n]] for n, t in ds.targets.items()]
        if self.log_var is not None:
            for r, s in zip(rows, self.log_var.detach().tolist()):
                r.append(round(math.exp(-s), 4))
        cols = ["task", "type", "labeled training examples", "static weight"] + (["learned 1/sigma^2"] if self.log_var is not None else [])
        section = {"title": "Tasks", "columns": cols, "rows": rows,
                   "note": "a missing label is masked in its task's loss; the held-out result per task is in the report."}
        return Outcome(summary=summary, sections=[section], model={"tasks": spec},
                       metrics={"multitask": {"weighting": o.task_weighting, "static_weights": self.static,
                                              "epoch_losses": self.epoch_losses}})


def dwa_weights(history: list[dict[str, float]], names: list[str], temperature: float,
                static: dict[str, float]) -> dict[str, float]:
    """Liu et al.'s dynamic weight averaging from the mean training losses of the last two epochs (equal weights
    before there are two), times the static weights."""
    if len(history) < 2:
        return dict(static)
    prev, last = history[-2], history[-1]
    r = np.array([last[n] / max(prev[n], 1e-12) for n in names]) / temperature
    w = len(names) * np.exp(r - r.max()) / np.exp(r - r.max()).sum()
    return {n: float(wi) * static[n] for n, wi in zip(names, w)}
