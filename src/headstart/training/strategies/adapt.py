"""Domain adaptation with unlabeled target data: ``source-only``, ``dann``, ``mmd``, ``selftrain``.

DATA is the labeled *source* domain (reviews of books, clean photos); ``--unlabeled-target`` holds examples
of the domain that matters (reviews of kitchen goods, phone photos) without labels: an image folder (class
sub-folders, if any, are not read) or a table of texts (its label column, if any, is not read). Each batch
is drawn from the union of the source training split and the target examples; the source rows give the
classification loss, and the method's own term uses both:

``dann``
    a gradient reversal layer and a domain discriminator (Ganin et al., "Domain-Adversarial Training of
    Neural Networks", JMLR 2016, https://jmlr.org/papers/v17/15-239.html): the discriminator learns to
    tell the domains apart from the features, the backbone receives its gradient reversed, scaled by
    ``weight * (2 / (1 + exp(-10 p)) - 1)`` where ``p`` goes from 0 to 1 over training (the paper's ramp,
    which keeps the noisy early discriminator from steering the backbone).
``mmd``
    the multi-kernel MMD^2 between the batch's source and target features is added to the loss (DAN, Long
    et al., ICML 2015, https://arxiv.org/abs/1502.02791), the same estimator `headstart distance` reports
    (`transferability.multi_kernel_mmd2`). It is applied to the backbone's pooled features (DAN also
    matches the classifier's hidden layers; headstart's head is one linear layer).
``selftrain``
    pseudo-labels in the FixMatch style (Sohn et al., NeurIPS 2020, https://arxiv.org/abs/2001.07685):
    the model's prediction on a weakly augmented target example (``--augment none`` or ``light``; ``light``
    when ``--augment`` asks for more, the source rows included) becomes its label when its
    confidence passes ``--pseudo-threshold``, and the model is trained to give that label to a strongly
    augmented view (``standard`` augmentation; text has no augmentation here, so the strong view is a
    second pass with other dropout). Class balance is guarded by distribution alignment (Berthelot et al.,
    ReMixMatch, ICLR 2020): target probabilities (floored at 1e-4) are multiplied by the source class prior
    over a running mean of the target predictions before thresholding, so one class cannot take over the
    pseudo-labels; and a quota: a class whose running share of the confident target predictions passes
    ``min(2 x prior, (1 + prior) / 2)`` gets no pseudo-labels until it falls back. Pseudo-labels start after ``--pseudo-warmup`` (20%) of the steps on the source alone: a
    network that does not yet know the source labels the target at random and then learns its own noise
    (seen from scratch on MNIST -> USPS: every target digit became a 4). Their loss uses ``--label-smoothing``.
``source-only``
    the baseline: the same network, schedule and evaluation, trained on the source alone (the target
    examples are used only for the measurements below).

Selection never sees target labels. Epochs (``--restore-best``, ``--patience``) are chosen on the source
selection split. Between seeds (``--seeds``, 3 by default for these strategies) the run keeps the one with
the lowest Deep Embedded Validation risk (You et al., ICML 2019): the source selection split's loss, each
example weighted by how target-like a domain classifier finds it, with a control variate
(`transferability.dev_risk`). The mean entropy of the target predictions is reported beside it, not used
(it rewards confident mistakes). ``--target-eval`` (labeled target data) is scored once, after training,
and reported; nothing is chosen on it.

Every run records the domain distance (multi-kernel MMD^2 and the proxy A-distance, as `headstart
distance` computes them) between source and target features before and after adaptation, and plots both
domains in 2-D (``plots/domains_before.png``, ``plots/domains_after.png``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...config import _opt
from ...data import TABLE_EXTENSIONS, load_data, read_inputs
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import Outcome, register_strategy, with_weight_decay
from .finetune import FineTune

if TYPE_CHECKING:  # torch is imported where used: `headstart --help` and the registry do not load it
    import torch
    from torch import nn

DISTANCE_POINTS = 500  # examples per domain for the before/after distances and plots
PROB_FLOOR = 1e-4  # selftrain: the smallest class probability distribution alignment works with


@dataclass
class AdaptOptions:
    unlabeled_target: str | None = _opt(
        None, "domain adaptation: examples of the target domain, unlabeled (image folder, or a table of texts; "
        "labels in it are not read).")
    target_eval: str | None = _opt(
        None, "domain adaptation: labeled target data, scored once after training and reported (never used to "
        "choose anything).")
    adapt_weight: float = _opt(
        1.0, "domain adaptation: weight of the adaptation term (dann: the reversed adversarial loss at full ramp; "
        "mmd: the MMD^2 term; selftrain: the pseudo-label loss; source-only: unused).")
    pseudo_threshold: float = _opt(0.9, "selftrain: confidence a target prediction needs to become a pseudo-label.")
    pseudo_warmup: float = _opt(0.2, "selftrain: fraction of the training steps on the source alone before pseudo-labels start.")

    def __post_init__(self) -> None:
        if not self.unlabeled_target:
            raise ConfigError("domain adaptation needs --unlabeled-target: examples of the target domain "
                              "(an image folder, or a table of texts)")
        for flag, value in (("--unlabeled-target", self.unlabeled_target), ("--target-eval", self.target_eval)):
            if value is not None and not Path(value).expanduser().exists():
                raise ConfigError(f"option {flag}: {value} does not exist")
        if not self.adapt_weight >= 0:
            raise ConfigError(f"option --adapt-weight: {self.adapt_weight} must be >= 0")
        if not 0.0 < self.pseudo_threshold < 1.0:
            raise ConfigError(f"option --pseudo-threshold: {self.pseudo_threshold} must be in (0, 1)")
        if not 0.0 <= self.pseudo_warmup < 1.0:
            raise ConfigError(f"option --pseudo-warmup: {self.pseudo_warmup} must be in [0, 1)")


def read_unlabeled(path: Path, modality: str, text_col: str | None = None) -> list[Any]:
    """The examples of an unlabeled image folder (searched recursively) or table of texts."""
    if modality == "text" and (path.suffix.lower() not in TABLE_EXTENSIONS or not path.is_file()):
        raise ConfigError(f"option --unlabeled-target: {path} must be a table of texts ({', '.join(sorted(TABLE_EXTENSIONS))})")
    if modality == "image" and not path.is_dir():
        raise ConfigError(f"option --unlabeled-target: {path} must be a folder of images")
    items = read_inputs([path], modality, text_col)[0]
    if len(items) < 2:
        raise ConfigError(f"option --unlabeled-target: {path} has {len(items)} usable example(s); give at least 2")
    return items


def dann_coefficient(progress: float) -> float:
    """The DANN ramp of the reversed gradient: 0 at the start of training, ~1 at its end."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class _Adapt(FineTune):
    """Shared by the four: the target examples, mixed batches, the measurements, the seed criterion."""
    tasks = ("binary", "multiclass")  # class priors, pseudo-labels and target accuracy

    Options = AdaptOptions
    no_frozen_cache = "domain adaptation; the target examples are not cached"
    default_seeds = 3
    uses_target = True  # False: the baseline trains on the source alone

    def prepare(self, ctx: FitContext) -> None:
        data, cfg = ctx.data, self.cfg
        self.target = read_unlabeled(Path(self.opts.unlabeled_target).expanduser(), data.modality, cfg.text_col)
        self.evaluation = self._target_eval(ctx) if self.opts.target_eval else None
        self.step, self.total_steps = 0, 1
        self.before = self._domain_features(ctx)
        ctx.info.update({"target_examples": len(self.target), "unlabeled_target": self.opts.unlabeled_target})
        super().prepare(ctx)

    def _target_eval(self, ctx: FitContext) -> Any:
        cfg, data = self.cfg, ctx.data
        ev = load_data(self.opts.target_eval, header=cfg.header, strict=cfg.strict, seed=cfg.seed,
                       text_col=cfg.text_col, label_col=cfg.label_col)
        if ev.modality != data.modality or sorted(ev.classes) != sorted(data.classes):
            raise ConfigError(f"option --target-eval: {self.opts.target_eval} must hold {data.modality}s labeled with the "
                              f"source's classes ({', '.join(data.classes)}); it has {ev.modality}s of "
                              f"{', '.join(ev.classes)}")
        order = np.array([data.classes.index(c) for c in ev.classes])
        return ev.items, order[ev.y]

    def _domain_features(self, ctx: FitContext) -> tuple[np.ndarray, np.ndarray]:
        """Backbone features of up to `DISTANCE_POINTS` source training and target examples (fixed draws)."""
        from ...features import extract_items

        rng = np.random.default_rng(self.cfg.seed)
        src = ctx.data.train_idx[rng.choice(len(ctx.data.train_idx), min(DISTANCE_POINTS, len(ctx.data.train_idx)), replace=False)]
        tgt = rng.choice(len(self.target), min(DISTANCE_POINTS, len(self.target)), replace=False)
        bs = max(64, self.cfg.batch_size)
        return (extract_items(ctx.backbone, ctx.data.take(src), bs, "source features"),
                extract_items(ctx.backbone, [self.target[i] for i in tgt], bs, "target features"))

    # -- training ------------------------------------------------------------------------
    def train_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        """Source training examples, then the target ones; the "label" is the row (target rows have no class)."""
        import torch

        items, y = ctx.data.subset(ctx.data.train_idx)
        if not self.uses_target:
            return items, y
        self.labels = torch.as_tensor(np.concatenate([y, -np.ones(len(self.target), dtype=np.int64)]))
        rows = items + list(self.target)
        self.total_steps = max(1, self.cfg.epochs * math.ceil(len(rows) / self.cfg.batch_size))
        return rows, np.arange(len(rows))

    def training_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, Any]:
        if not self.uses_target:
            return super().training_step(batch, ctx)
        x, rows = batch
        y = self.labels[rows].to(rows.device)
        src = y >= 0
        feats = self.features(self._weak(x), ctx)
        logits = ctx.head(feats[src])
        zero = feats.sum() * 0.0  # keeps the graph when a batch holds one domain only
        cls = ctx.head.loss(logits, y[src], self.cfg.label_smoothing) if src.any() else zero
        term, log = self.adaptation(x, feats, src, ctx)
        self.step += 1
        return {"loss": cls + term, "logits": logits, "y": y[src], "log": {"class_loss": cls.detach(), **log}}

    def _weak(self, x: Any) -> Any:
        return x

    def adaptation(self, x: Any, feats: torch.Tensor, src: torch.Tensor, ctx: FitContext) -> tuple[torch.Tensor, dict[str, Any]]:
        """The method's own term (already weighted) and what to log: override."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state.get("step", 0))

    # -- after training: distances, label-free criterion, target evaluation -------------------
    def finish(self, ctx: FitContext) -> Outcome:
        from ... import transferability as tr
        from ...evaluate import compute_metrics
        from ...features import head_outputs, predict_outputs
        from ...report import plot_domains

        data = ctx.data
        after = self._domain_features(ctx)
        distances = {when: {"mmd2_multi": float(tr.multi_kernel_mmd2(s, t)),
                            "a_distance": tr.proxy_a_distance(s, t, seed=self.cfg.seed)["a_distance"]}
                     for when, (s, t) in (("before", self.before), ("after", after))}
        names = (f"source ({data.name})", f"target ({Path(self.opts.unlabeled_target).name})")
        for when, (s, t) in (("before", self.before), ("after", after)):
            plot_domains(s, t, names, ctx.run_dir / "plots" / f"domains_{when}.png", seed=self.cfg.seed)
        p_target = head_outputs(ctx.head, after[1])
        record: dict[str, Any] = {
            "method": self.name, "target_examples": len(self.target), "distance": distances,
            "target_entropy": float(np.mean(-np.sum(p_target * np.log(np.clip(p_target, 1e-12, 1.0)), 1))),
        }
        if len(data.val_idx) >= 2:
            record["dev_risk"] = self._dev_risk(ctx, after)
        if self.evaluation is not None:
            items, y = self.evaluation
            m = compute_metrics(y, predict_outputs(ctx.backbone, ctx.head, items, max(64, self.cfg.batch_size)),
                                data.task, data.classes)
            record["target_eval"] = {k: m[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1") if k in m}
        return self._outcome(record, len(after[0]), len(after[1]))

    def _dev_risk(self, ctx: FitContext, after: tuple[np.ndarray, np.ndarray]) -> float:
        """DEV on the source selection split, weighted by a domain classifier on the adapted features."""
        from ... import transferability as tr
        from ...features import extract_items, head_outputs

        data = ctx.data
        f_val = extract_items(ctx.backbone, data.take(data.val_idx), max(64, self.cfg.batch_size),
                              "selection features")
        p_val = head_outputs(ctx.head, f_val)
        losses = -np.log(np.clip(p_val[np.arange(len(p_val)), data.y[data.val_idx]], 1e-12, 1.0))
        return tr.dev_risk(losses, tr.importance_weights(after[0], after[1], f_val, seed=self.cfg.seed))

    @staticmethod
    def _outcome(record: dict[str, Any], n_source: int, n_target: int) -> Outcome:
        d = record["distance"]
        summary = [("domain distance before -> after", f"MMD^2 {d['before']['mmd2_multi']:.4f} -> "
                    f"{d['after']['mmd2_multi']:.4f}, A-distance {d['before']['a_distance']:.3f} -> "
                    f"{d['after']['a_distance']:.3f}")]
        metrics: dict[str, Any] = {"adapt": record}
        if "dev_risk" in record:
            summary.append(("DEV risk (label-free, lower is better)", f"{record['dev_risk']:.4f}"))
            metrics["selection_criterion"] = {"name": "dev_risk", "value": record["dev_risk"], "goal": "min"}
        if "target_eval" in record:
            summary.append(("target accuracy (--target-eval, used once)", f"{record['target_eval']['accuracy']:.4f}"))
            metrics["figures"] = {"target_accuracy": record["target_eval"]["accuracy"]}  # listed per seed
        rows = [[when, round(v["mmd2_multi"], 5), round(v["a_distance"], 4)] for when, v in d.items()]
        sections = [{"title": "Domain distance, source vs target features", "columns": ["when", "MMD^2 (multi-kernel)", "A-distance"],
                     "rows": rows, "note": f"{n_source} source and {n_target} target examples; before = the "
                     "backbone as loaded, after = as adapted (see plots/domains_*.png)."}]
        return Outcome(metrics=metrics, summary=summary, sections=sections)


@register_strategy
class SourceOnly(_Adapt):
    name = "source-only"
    summary = "domain adaptation baseline: the same network and schedule, trained on the source alone"
    uses_target = False  # `training_step` is the plain one: `adaptation` is never called


@functools.cache
def _reversal() -> Any:
    """The gradient reversal layer: identity forward, gradient times ``-coefficient`` backward."""
    import torch

    class GradientReversal(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, coefficient: float) -> torch.Tensor:
            ctx.coefficient = coefficient
            return x.view_as(x)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            return -ctx.coefficient * grad, None

    return GradientReversal


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    return _reversal().apply(x, coefficient)


@register_strategy
class DANN(_Adapt):
    name = "dann"
    summary = "domain-adversarial training: gradient reversal + domain discriminator (Ganin et al. 2016)"

    def prepare(self, ctx: FitContext) -> None:
        from torch import nn

        super().prepare(ctx)
        width = ctx.backbone.num_features
        hidden = min(1024, max(64, width))
        self.discriminator = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.5),
                                           nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, 1))

    def extra_modules(self, ctx: FitContext) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        lr = self.base_lr(ctx) * self.head_lr_mult(ctx)
        disc = [{"params": list(self.discriminator.parameters()), "lr": lr, "name": "discriminator"}]
        return super().param_groups(ctx) + with_weight_decay(disc, self.cfg.weight_decay)

    def coefficient(self) -> float:
        return self.opts.adapt_weight * dann_coefficient(min(1.0, self.step / self.total_steps))

    def adaptation(self, x: Any, feats: torch.Tensor, src: torch.Tensor, ctx: FitContext) -> tuple[torch.Tensor, dict[str, Any]]:
        import torch.nn.functional as F

        coef = self.coefficient()
        d = self.discriminator(reverse_gradient(feats, coef)).view(-1)
        is_target = (~src).float()
        loss = F.binary_cross_entropy_with_logits(d, is_target)
        acc = ((d > 0).float() == is_target).float().mean()
        # The discriminator minimises ``loss``; the reversal makes the backbone maximise it (times ``coef``).
        return loss, {"domain_loss": loss.detach(), "domain_accuracy": acc.detach(), "grl_coefficient": coef}


@register_strategy
class MMD(_Adapt):
    name = "mmd"
    summary = "multi-kernel MMD between source and target features added to the loss (DAN, Long et al. 2015)"

    def adaptation(self, x: Any, feats: torch.Tensor, src: torch.Tensor, ctx: FitContext) -> tuple[torch.Tensor, dict[str, Any]]:
        from ... import transferability as tr

        mmd2 = tr.multi_kernel_mmd2(feats[src], feats[~src])
        return self.opts.adapt_weight * mmd2, {"mmd2": mmd2.detach()}


class TwoViews:
    """A batcher giving (weak, strong) views of every example: the training batches of ``selftrain`` (images)."""

    lengths = None

    def __init__(self, weak: Any, strong: Any):
        self.weak, self.strong = weak, strong

    def __call__(self, items: list[Any]) -> tuple[Any, Any]:
        return self.weak(items), self.strong(items)

    def resized_once(self, items: list[Any]) -> list[Any]:
        return items  # the strong view is random in every epoch


@register_strategy
class SelfTrain(_Adapt):
    name = "selftrain"
    summary = "confident pseudo-labels on weak views teach strong views of the target (FixMatch-style, class-balanced)"

    def prepare(self, ctx: FitContext) -> None:
        import torch

        super().prepare(ctx)
        prior = np.bincount(ctx.data.y[ctx.data.train_idx], minlength=ctx.data.num_classes).astype(np.float64)
        self.prior = torch.as_tensor(prior / prior.sum(), dtype=torch.float32)
        self.target_mean = self.prior.clone()  # running mean of the target predictions (distribution alignment)
        self.confident_share = self.prior.clone()  # running class shares of the confident ones (the quota)

    def batcher(self, train: bool, ctx: FitContext) -> Any:
        if not train or ctx.data.modality != "image":
            return super().batcher(train, ctx)
        bb, weak = ctx.backbone, self.cfg.augment if self.cfg.augment in ("none", "light") else "light"
        return TwoViews(bb.preprocess(train=True, augment=weak), bb.preprocess(train=True, augment="standard"))

    def _weak(self, x: Any) -> Any:
        return x[0] if isinstance(x, tuple) else x

    def pseudo_labels(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class, kept) for target probabilities [B, C]: aligned to the source prior, thresholded, and within
        each class's quota."""
        import torch

        if not len(probs):
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
        # A floor under the probabilities: a softmax that underflowed to exact zeros would make the
        # multiplicative alignment powerless.
        probs = probs.clamp(min=PROB_FLOOR)
        self.target_mean = 0.9 * self.target_mean + 0.1 * probs.mean(0).cpu()
        aligned = probs * (self.prior / self.target_mean).to(probs.device)
        conf, label = (aligned / aligned.sum(1, keepdim=True)).max(1)
        confident = conf >= self.opts.pseudo_threshold
        # The quota: a class whose running share of the confident predictions passes min(2 x prior,
        # (1 + prior) / 2) gets no pseudo-labels until the share falls back (a collapse feeds itself otherwise).
        if confident.any():
            counts = torch.bincount(label[confident].cpu(), minlength=len(self.prior)).float()
            self.confident_share = 0.9 * self.confident_share + 0.1 * counts / counts.sum()
        cap = torch.minimum(2 * self.prior, (1 + self.prior) / 2)
        return label, confident & (self.confident_share <= cap).to(label.device)[label]

    def adaptation(self, x: Any, feats: torch.Tensor, src: torch.Tensor, ctx: FitContext) -> tuple[torch.Tensor, dict[str, Any]]:
        import torch

        head, tgt = ctx.head, ~src
        n_tgt = int(tgt.sum())
        if n_tgt == 0 or self.step < self.opts.pseudo_warmup * self.total_steps:
            return feats.sum() * 0.0, {"pseudo_kept": 0.0}
        with torch.no_grad():
            label, keep = self.pseudo_labels(head.outputs(head(feats[tgt])))
        if not keep.any():
            return feats.sum() * 0.0, {"pseudo_kept": 0.0}
        rows = tgt.nonzero().view(-1)[keep]
        if isinstance(x, tuple):  # images: the strong view of the kept rows
            feats_strong = ctx.backbone.forward_features(x[1][rows])
        else:  # text: the whole batch again (a batch format need not be row-indexable), other dropout masks
            feats_strong = ctx.backbone.forward_features(x)[rows]
        logits = head(feats_strong)
        # FixMatch's mean over every target row of the batch: unconfident rows count as zero loss
        loss = head.loss(logits, label[keep], self.cfg.label_smoothing) * (len(rows) / n_tgt)
        return self.opts.adapt_weight * loss, {"pseudo_loss": loss.detach(), "pseudo_kept": len(rows) / n_tgt}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "target_mean": self.target_mean.tolist(), "confident_share": self.confident_share.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        super().load_state_dict(state)
        for key in ("target_mean", "confident_share"):
            if key in state:
                setattr(self, key, torch.as_tensor(state[key], dtype=torch.float32))
