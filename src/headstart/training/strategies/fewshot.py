"""Few-shot meta-learning: ``protonet`` and ``maml`` (with FOMAML and ANIL), trained on episodes.

A few-shot fit splits the data **by class** (`data.split_classes`): it learns on
episodes of the meta-train classes, chooses its epoch on fixed episodes of the
meta-val classes, and is scored once on ``--eval-episodes`` episodes of the
meta-test classes, which it never saw: accuracy with a 95% interval. The example
split of the loader (``--test``, ``val/``) is not used.

``protonet`` (Snell et al., NeurIPS 2017, https://arxiv.org/abs/1703.05175)
    episodic fine-tuning: each query's cross-entropy over minus its squared
    distance to the class means of the support set (``--distance euclidean``), or
    a learned scale times its cosine similarity (``cosine``; the scale starts at
    10, Chen et al., ICLR 2019).
``maml`` (Finn et al., ICML 2017, https://arxiv.org/abs/1703.03400)
    ``--inner-steps`` SGD steps on the support set (the head at ``--inner-lr``,
    the backbone at ``--inner-body-lr``, a tenth of it by default), then the
    query loss of the adapted model trains the start. ``--maml-variant maml``
    differentiates through the inner steps (second order), ``fomaml`` does not
    (first order), ``anil`` adapts the head alone (Raghu et al., ICLR 2020). The
    loops are `torch.func` (`functional_call` + `grad`), so any timm or
    transformers module works unchanged; episodes of a meta-batch run one after
    another (not `vmap`: their query counts differ when a class is rare).
    BatchNorm keeps its running statistics (eval mode) in both loops: with 5
    support images batch statistics are noise, and a single query at predict
    time has none. That is neither of the papers' choices (transductive batch
    statistics; MAML++'s per-step statistics); docs/few-shot.md says why.

Both honour ``--freeze N`` (the lowest groups stay fixed, also in the inner loop).
The run predicts like any other (a prototype head over every class of the data)
and, given a support set, like it was scored (`headstart.run._support`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ...config import _opt
from ...data import Episode, draw_episode, eligible, episodes, mean_ci95, split_classes
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import Outcome, register_strategy, with_weight_decay
from .finetune import FineTune

if TYPE_CHECKING:
    import torch
    from torch import nn

# MAML's head sees unit-length features times this (`run._support.head_logits`): one inner rate for every backbone.
HEAD_SCALE = 10.0


@dataclass
class EpisodeOptions:
    """How episodes are drawn, shared by every few-shot method."""

    ways: int = _opt(5, "Classes per episode (N-way).")
    shots: int = _opt(5, "Labeled support examples per class in an episode (K-shot).")
    queries: int = _opt(15, "Query examples per class in an episode (fewer when a class has fewer left).")
    train_episodes: int = _opt(200, "Training episodes per epoch (drawn anew each epoch from the meta-train classes).")
    meta_batch: int | None = _opt(None, "Episodes per optimiser step (default: 1 for protonet, 4 for maml).")
    val_episodes: int = _opt(100, "Fixed meta-val episodes that choose the epoch.")
    eval_episodes: int = _opt(600, "Meta-test episodes scored once after training (accuracy with a 95% interval).")
    class_split: str = _opt("0.6,0.2,0.2", "Classes for meta-train,meta-val,meta-test: fractions or counts (5,0,5).")
    meta_test_classes: str | None = _opt(None, "Comma-separated meta-test classes (instead of --class-split).")
    meta_val_classes: str | None = _opt(None, "Comma-separated meta-val classes (with --meta-test-classes).")

    def __post_init__(self) -> None:
        for name in ("ways", "shots", "queries", "train_episodes", "val_episodes", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"option --{name.replace('_', '-')}: {getattr(self, name)} must be at least 1")
        if self.ways < 2:
            raise ConfigError(f"option --ways: {self.ways} must be at least 2")
        if self.meta_batch is not None and self.meta_batch < 1:
            raise ConfigError(f"option --meta-batch: {self.meta_batch} must be at least 1")

    @staticmethod
    def names(text: str | None) -> list[str] | None:
        return [c.strip() for c in text.split(",") if c.strip()] if text else None


@dataclass
class ProtoNetOptions(EpisodeOptions):
    distance: str = _opt("euclidean", "Prototype distance: euclidean (squared) or cosine (with a learned scale).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distance not in ("euclidean", "cosine"):
            raise ConfigError(f"option --distance: {self.distance!r} must be euclidean or cosine")


@dataclass
class MamlOptions(EpisodeOptions):
    maml_variant: str = _opt("maml", "maml (second order), fomaml (first order) or anil (adapt the head only).")
    inner_steps: int = _opt(5, "SGD steps on the support set per episode (training, scoring and predict).")
    inner_lr: float = _opt(0.1, "Learning rate of the inner SGD steps on the head (it sees unit features x 10).")
    inner_body_lr: float | None = _opt(None, "Inner learning rate of the backbone's adapted layers (default: --inner-lr / 10).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.maml_variant not in ("maml", "fomaml", "anil"):
            raise ConfigError(f"option --maml-variant: {self.maml_variant!r} must be maml, fomaml or anil")
        if self.inner_steps < 1 or self.inner_lr <= 0 or (self.inner_body_lr is not None and self.inner_body_lr < 0):
            raise ConfigError("options --inner-steps / --inner-lr: need at least 1 step and a positive rate")


class EpisodeBatcher:
    """Episodes -> model batches. Training items are slot numbers: the episode is drawn from the numpy RNG that
    the engine seeds per (seed, epoch, position), so a resumed fit draws the same episodes. Selection items
    are fixed `Episode`\\ s. ``joint``: support and query in one batch (one forward, ProtoNet)."""

    lengths = None

    def __init__(self, pre: Any, items: list[Any], by_class: dict[int, np.ndarray], pool: list[int],
                 opts: EpisodeOptions, joint: bool):
        self.pre, self.items, self.by_class, self.pool, self.opts, self.joint = pre, items, by_class, pool, opts, joint

    def resized_once(self, items: list[Any]) -> list[Any]:
        return items

    def __call__(self, batch: list[Any]) -> list[tuple[Any, ...]]:
        import torch

        out = []
        for ep in batch:
            if not isinstance(ep, Episode):
                rng = np.random.default_rng(np.random.randint(2**31))
                o = self.opts
                ep = draw_episode(rng, self.by_class, self.pool, o.ways, o.shots, o.queries)
            s, q = [self.items[i] for i in ep.support], [self.items[i] for i in ep.query]
            ys, yq = torch.as_tensor(ep.support_y), torch.as_tensor(ep.query_y)
            out.append((self.pre(s + q), ys, yq) if self.joint else (self.pre(s), ys, self.pre(q), yq))
        return out


class _Episodic(FineTune):
    """What every few-shot method shares: the class split, the episodes, the scoring, the saved head."""
    tasks = ("binary", "multiclass")  # episodes are drawn by class

    no_frozen_cache = "episodes draw different examples at every step"
    splits_by_class = True
    joint: bool = True  # support and query in one forward
    default_meta_batch: int = 1

    def prepare(self, ctx: FitContext) -> None:
        ds, o = ctx.data, self.opts
        parts = split_classes(ds.classes, o.ways, self.cfg.seed, o.class_split, o.names(o.meta_test_classes),
                              o.names(o.meta_val_classes))
        rows = np.arange(len(ds.items))
        by_part = {k: rows[np.isin(ds.y, v)] for k, v in parts.items()}
        ctx.data = dataclasses.replace(ds, train_idx=by_part["train"], val_idx=by_part["val"], test_idx=by_part["test"])
        self.parts = parts
        left_out = [ds.classes[c] for k in ("train", "test") for c in eligible(ds.y[by_part[k]], parts[k], o.shots)[1]]
        if left_out:  # too few examples for one support set and a query
            ctx.info["fewshot_left_out"] = left_out
        self.val_eps = episodes(ds.y, by_part["val"], parts["val"], o.ways, o.shots, o.queries, o.val_episodes,
                                self.cfg.seed + 1) if parts["val"] else []
        super().prepare(ctx)

    # -- what the engine iterates over --------------------------------------------------
    def train_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        return list(range(self.opts.train_episodes)), np.zeros(self.opts.train_episodes, dtype=np.int64)

    def val_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        return list(self.val_eps), np.zeros(len(self.val_eps), dtype=np.int64)

    def batch_size(self, train: bool, ctx: FitContext) -> int:
        return (self.opts.meta_batch or self.default_meta_batch) if train else 4

    def batcher(self, train: bool, ctx: FitContext) -> EpisodeBatcher:
        ds = ctx.data
        pool, _ = eligible(ds.y[ds.train_idx], self.parts["train"], self.opts.shots)
        by_class = {c: ds.train_idx[ds.y[ds.train_idx] == c] for c in pool}
        pre = ctx.backbone.preprocess(train=train, augment=self.cfg.augment if train else "none")
        return EpisodeBatcher(pre, ds.items, by_class, pool, self.opts, self.joint)

    def training_step(self, batch: tuple[Any, Any], ctx: FitContext) -> dict[str, Any]:
        import torch

        losses, logits, ys = [], [], []
        for ep in batch[0]:
            loss, lg, yq = self.episode_loss(ep, ctx, train=True)
            losses.append(loss)
            logits.append(lg)
            ys.append(yq)
        return {"loss": torch.stack(losses).mean(), "logits": torch.cat(logits), "y": torch.cat(ys).to(logits[0].device)}

    def validation_step(self, batch: tuple[Any, Any], ctx: FitContext) -> dict[str, torch.Tensor]:
        import torch

        loss, acc = [], []
        for ep in batch[0]:
            lo, lg, yq = self.episode_loss(ep, ctx, train=False)
            loss.append(lo.detach())
            acc.append((lg.argmax(-1) == yq.to(lg.device)).float().mean())
        return {"loss": torch.stack(loss).mean(), "acc": torch.stack(acc).mean()}

    def episode_loss(self, ep: tuple[Any, ...], ctx: FitContext, train: bool) -> tuple[Any, Any, Any]:
        """(query loss, query logits [Q, ways], query labels) of one materialised episode."""
        raise NotImplementedError

    # -- scoring and the saved model --------------------------------------------------------
    def score(self, ctx: FitContext, idx: np.ndarray) -> tuple[dict[str, Any], None]:
        """Episodes of the classes of ``idx``: ``--eval-episodes`` on the meta-test part, the selection episodes
        on meta-val. Accuracy over queries per episode, then mean and 95% interval over episodes (no output per
        example: the answers depend on each episode's support set)."""
        import torch

        from ..._progress import track
        from ...features import extract_items

        ds, o = ctx.data, self.opts
        test = np.array_equal(idx, ds.test_idx)
        eps = (episodes(ds.y, idx, self.parts["test"], o.ways, o.shots, o.queries, o.eval_episodes, self.cfg.seed)
               if test else self.val_eps)
        t0 = time.perf_counter()
        ctx.backbone.eval()
        feats = None
        if self.features_suffice():  # `finish` extracted every example's with the final backbone
            feats = torch.from_numpy(ctx.features) if ctx.features is not None else torch.as_tensor(
                extract_items(ctx.backbone, ds.items, description="features"))
        accs = []
        for ep in track(eps, len(eps), f"scoring {len(eps)} episodes", min_total=50):
            if feats is not None:
                fs, fq = feats[ep.support], feats[ep.query]
                logits = self.logits_from_features(fs, torch.as_tensor(ep.support_y), fq, ctx)
            else:
                logits = self.logits_from_items(ep, ctx)
            accs.append(float((logits.argmax(-1).cpu().numpy() == ep.query_y).mean()))
        mean, ci = mean_ci95(accs)
        return {"accuracy": mean, "ci95": ci, "episodes": len(eps), "ways": o.ways, "shots": o.shots,
                "queries": o.queries, "classes": [ds.classes[c] for c in (self.parts["test"] if test else self.parts["val"])],
                "seconds": round(time.perf_counter() - t0, 2)}, None

    def features_suffice(self) -> bool:
        """Whether an episode is scored from fixed features of its examples (else from the examples)."""
        return True

    def logits_from_features(self, fs: Any, ys: Any, fq: Any, ctx: FitContext) -> Any:
        raise NotImplementedError

    def logits_from_items(self, ep: Episode, ctx: FitContext) -> Any:
        raise NotImplementedError

    def support_rule(self) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self, ctx: FitContext) -> Outcome:
        """The saved head: every class's prototype (mean final feature of all its examples), so the run predicts
        the data's classes without a support set; ``--support`` at predict time follows `support_rule`."""
        import torch

        from ...features import extract_items
        from ...run._support import prototype_head, prototypes

        ds = ctx.data
        ctx.backbone.eval()
        feats = torch.as_tensor(extract_items(ctx.backbone, ds.items, description="class prototypes"))
        ctx.features = feats.numpy()  # the final backbone's features of every example: scoring reuses them
        rule = self.support_rule()
        metric = rule.get("metric", "euclidean")
        ctx.head = prototype_head(prototypes(feats, torch.as_tensor(ds.y), ds.num_classes), metric, rule.get("scale", 1.0))
        split = {k: [ds.classes[c] for c in v] for k, v in self.parts.items()}
        o = self.opts
        summary = [("episodes", f"{o.ways}-way {o.shots}-shot, {o.queries} queries per class"),
                   ("classes meta-train / meta-val / meta-test", " / ".join(str(len(split[k])) for k in ("train", "val", "test")))]
        if ctx.info.get("fewshot_left_out"):
            summary.append(("classes left out (too few examples)", ", ".join(ctx.info["fewshot_left_out"])))
        section = {"title": "Class split", "columns": ["part", "classes"],
                   "rows": [[f"meta-{k}", ", ".join(v) or "(none)"] for k, v in split.items()],
                   "note": "scored on meta-test episodes only; the loader's example split is not used."}
        return Outcome(metrics={"fewshot": {"split": split, "rule": rule}}, summary=summary, sections=[section],
                       model={"support": rule}, weights=self.support_weights())

    def support_weights(self) -> dict[str, Any]:
        return {}


@register_strategy
class ProtoNet(_Episodic):
    name = "protonet"
    summary = "few-shot: Prototypical Networks, episodic fine-tuning; predicts new classes from a support set"
    Options = ProtoNetOptions

    def prepare(self, ctx: FitContext) -> None:
        import torch

        super().prepare(ctx)
        self.scale = torch.nn.Parameter(torch.tensor(10.0)) if self.opts.distance == "cosine" else None

    def extra_modules(self, ctx: FitContext) -> dict[str, nn.Module]:
        import torch

        if self.scale is None:
            return {}
        holder = torch.nn.Module()
        holder.scale = self.scale
        return {"prototype_scale": holder}

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        extra = [{"params": [self.scale], "lr": self.base_lr(ctx) * self.head_lr_mult(ctx), "name": "scale",
                  "weight_decay": 0.0}] if self.scale is not None else []
        return super().param_groups(ctx) + extra

    def _scale(self) -> Any:
        return self.scale if self.scale is not None else 1.0

    def _scale_value(self) -> float:
        return float(self.scale.detach()) if self.scale is not None else 1.0

    def episode_loss(self, ep: tuple[Any, ...], ctx: FitContext, train: bool) -> tuple[Any, Any, Any]:
        import torch.nn.functional as F

        from ...run._support import prototype_logits, prototypes

        x, ys, yq = ep
        f = self.features(x, ctx)
        ys, yq = ys.to(f.device), yq.to(f.device)
        logits = prototype_logits(f[len(ys):], prototypes(f[: len(ys)], ys, self.opts.ways), self.opts.distance, self._scale())
        return F.cross_entropy(logits, yq), logits, yq

    def logits_from_features(self, fs: Any, ys: Any, fq: Any, ctx: FitContext) -> Any:
        from ...run._support import prototype_logits, prototypes

        return prototype_logits(fq, prototypes(fs, ys, self.opts.ways), self.opts.distance, self._scale_value())

    def support_rule(self) -> dict[str, Any]:
        return {"rule": "prototypes", "metric": self.opts.distance, "scale": round(self._scale_value(), 6)}


@register_strategy
class Maml(_Episodic):
    name = "maml"
    summary = "few-shot: MAML / FOMAML / ANIL with torch.func; adapts to a support set in a few SGD steps"
    Options = MamlOptions
    joint = False
    default_meta_batch = 4

    @classmethod
    def search_space(cls, trial: Any, cfg: Any) -> dict[str, Any]:
        """Besides the outer rates, the inner ones: measured on the sign digits, MAML 5-shot went from 63.6% to
        38.1% when the backbone's inner rate went from 0.1 to 0.01, and FOMAML the other way (docs/benchmarks.md)."""
        return super().search_space(trial, cfg) | {
            "inner_lr": trial.suggest_float("inner_lr", 0.01, 1.0, log=True),
            "inner_body_lr": trial.suggest_float("inner_body_lr", 1e-3, 0.3, log=True)}

    def prepare(self, ctx: FitContext) -> None:
        import torch

        from ...run._support import Adaptable

        super().prepare(ctx)
        width = ctx.backbone.num_features
        self.start = torch.nn.Linear(width, 1)  # the meta-learned head row, copied for every class of an episode
        torch.nn.init.zeros_(self.start.weight)  # every class starts equal (Ye & Chao, ICLR 2022)
        torch.nn.init.zeros_(self.start.bias)
        self.net = Adaptable(ctx.backbone, HEAD_SCALE)

    def extra_modules(self, ctx: FitContext) -> dict[str, nn.Module]:
        return {"maml_start": self.start}

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        start = [{"params": list(self.start.parameters()), "lr": self.base_lr(ctx) * self.head_lr_mult(ctx), "name": "start"}]
        return super().param_groups(ctx) + with_weight_decay(start, self.cfg.weight_decay)  # ANIL's body too: outer loop

    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None:
        self.set_bn_eval([ctx.backbone])  # running statistics in both loops (module docstring)

    def _start(self, ways: int) -> dict[str, Any]:
        from ...run._support import adapted_params, expand_head

        adapt = "head" if self.opts.maml_variant == "anil" else "all"
        return adapted_params(self.net, self.frozen, adapt) | expand_head(self.start.weight, self.start.bias, ways)

    def episode_loss(self, ep: tuple[Any, ...], ctx: FitContext, train: bool) -> tuple[Any, Any, Any]:
        import torch
        import torch.nn.functional as F

        from ...run._support import adapt_inner, functional_logits, head_inner, head_logits

        xs, ys, xq, yq = ep
        o = self.opts
        first_order = o.maml_variant == "fomaml" or not train  # selection needs no second derivatives
        with torch.enable_grad():
            start = self._start(o.ways)
            if o.maml_variant == "anil":
                fs = ctx.backbone.forward_features(xs)
                ys = ys.to(fs.device)
                done = head_inner(fs, ys, start, o.inner_steps, o.inner_lr, first_order, HEAD_SCALE)
                logits = head_logits(ctx.backbone.forward_features(xq), done["head.weight"], done["head.bias"], HEAD_SCALE)
            else:
                ys = ys.to(next(ctx.backbone.parameters()).device)
                done = adapt_inner(self.net, start, xs, ys, o.inner_steps, o.inner_lr, first_order, self.body_lr())
                logits = functional_logits(self.net, done, xq)
            yq = yq.to(logits.device)
            loss = F.cross_entropy(logits, yq)
        return loss, logits, yq

    def body_lr(self) -> float:
        """The backbone's inner rate. A tenth of the head's by default: at the head's rate, three full-network
        steps of FOMAML on MobileNet overshot (meta-test accuracy 58% after one step, 23% after three, chance
        after ten), while the head's steps stay small because its features have a fixed length."""
        o = self.opts
        return o.inner_body_lr if o.inner_body_lr is not None else o.inner_lr / 10

    def features_suffice(self) -> bool:
        return self.opts.maml_variant == "anil"

    def logits_from_features(self, fs: Any, ys: Any, fq: Any, ctx: FitContext) -> Any:
        import torch

        from ...run._support import expand_head, head_inner, head_logits

        start = {k: v.detach() for k, v in expand_head(self.start.weight, self.start.bias, self.opts.ways).items()}
        with torch.enable_grad():
            done = head_inner(fs, ys, start, self.opts.inner_steps, self.opts.inner_lr, True, HEAD_SCALE)
        return head_logits(fq, done["head.weight"], done["head.bias"], HEAD_SCALE).detach()

    def logits_from_items(self, ep: Episode, ctx: FitContext) -> Any:
        import torch

        from ...run._support import functional_logits, support_params

        pre, items = ctx.backbone.preprocess(train=False), ctx.data.items
        xs, xq = pre([items[i] for i in ep.support]), pre([items[i] for i in ep.query])
        done = support_params(self.net, self.support_rule(), self.support_weights(), xs, torch.as_tensor(ep.support_y),
                              self.opts.ways)
        with torch.no_grad():
            return functional_logits(self.net, done, xq)

    def support_rule(self) -> dict[str, Any]:
        o = self.opts
        return {"rule": "inner-loop", "adapt": "head" if o.maml_variant == "anil" else "all", "steps": o.inner_steps,
                "lr": o.inner_lr, "body_lr": self.body_lr(), "frozen_groups": self.cfg.freeze, "variant": o.maml_variant, "scale": HEAD_SCALE,
                "metric": "cosine"}

    def support_weights(self) -> dict[str, Any]:
        return {"support.weight": self.start.weight.detach(), "support.bias": self.start.bias.detach()}
