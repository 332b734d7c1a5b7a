"""The `Strategy` interface and its registry.

A strategy is a plain object, one per file, registered by name. The fit pipeline
(``tasks/fit.py``) calls its hooks in a fixed order, each with the `FitContext`:

``read_data(cfg)`` / ``new_head(ctx)``
    the data and the head (one target by default; `multitask` reads several and builds a head per task).
``prepare(ctx)``
    freeze, wrap (LoRA), cache, probe: everything before the training loop. A
    strategy that needs no gradient loop (``trains = False``) does all its work here.
``training_step(batch, ctx)`` / ``param_groups(ctx)`` / ``on_epoch_start(epoch, ctx)``
    the `Trainable` protocol the engine runs (only when ``trains``).
``cleanup(ctx)``
    undo temporary changes to the model once training ends (also on errors).
``decide(ctx)``
    what the task chooses on the selection split after training (multilabel thresholds).
``finish(ctx)``
    extra files and the strategy's own results, as generic data (see `Outcome`)
    that metrics.json, the report and the closing summary show without knowing
    the method.

A strategy with its own knobs declares them in an ``Options`` dataclass (help
text in the field metadata, checks in ``__post_init__``, like `FitConfig`); the
CLI turns every field into a ``fit`` flag and the values live in
``FitConfig.options``. Field names are unique across strategies and `FitConfig`.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ...config import FitConfig, set_option_lookup
from ...errors import ConfigError, did_you_mean
from ..protocol import FitContext

if TYPE_CHECKING:  # torch is imported where used: listing strategies and `fit --help` do not load it
    import numpy as np
    import torch
    from torch import nn

_STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register under ``cls.name``; a duplicate name is an error, and so is an option
    name that another strategy (or `FitConfig`) already uses for a different option (options inherited from
    one base dataclass are shared, e.g. the episode options of the few-shot methods)."""
    if cls.name in _STRATEGIES:
        raise ValueError(f"strategy {cls.name!r} is already registered")
    if cls.Options is not None:
        mine = {f.name: f for f in fields(cls.Options)}
        clash = set(mine) & {f.name for f in fields(FitConfig)}
        for other in _STRATEGIES.values():  # an option shared through a common base dataclass is the same field
            if other.Options is not None:
                clash |= {f.name for f in fields(other.Options) if f.name in mine and mine[f.name] is not f}
        if clash:
            raise ValueError(f"strategy {cls.name!r}: option name(s) {', '.join(sorted(clash))} already in use")
    _STRATEGIES[cls.name] = cls
    return cls


def option_fields() -> dict[str, tuple[Field, list[str]]]:
    """Every strategy option: name -> (dataclass field, strategies that take it)."""
    out: dict[str, tuple[Field, list[str]]] = {}
    for name in list_strategies():
        opts = _STRATEGIES[name].Options
        for f in fields(opts) if opts is not None else ():
            out.setdefault(f.name, (f, []))[1].append(name)
    return out


def option_types() -> dict[str, type]:
    """Every strategy option's value type, ``X | None`` unwrapped to ``X`` (for parsing flags)."""
    out: dict[str, type] = {}
    for name, (_f, owners) in option_fields().items():
        hint = typing.get_type_hints(_STRATEGIES[owners[0]].Options)[name]
        out[name] = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    return out


def options_for(cfg: FitConfig) -> Any:
    """The chosen strategy's Options built from ``cfg.options``; an option of another strategy is an error."""
    cls = get_strategy(cfg.strategy)
    known = option_fields()
    mine = {f.name for f in fields(cls.Options)} if cls.Options is not None else set()
    for key in cfg.options:
        if key not in mine:
            flag = "--" + key.replace("_", "-")
            if key in known:
                raise ConfigError(f"option {flag} belongs to strategy {'/'.join(known[key][1])}, not {cfg.strategy}; "
                                  f"drop it or use --strategy {known[key][1][0]}")
            raise ConfigError(f"option {flag}: unknown (see `headstart fit --help`)")
    return cls.Options(**cfg.options) if cls.Options is not None else None


set_option_lookup(option_fields)  # a config may give strategy options at the top level


def list_strategies() -> list[str]:
    """The registered strategies.

    Returns:
        Their names, sorted (``headstart strategies`` describes each).

    Examples:
        >>> import headstart
        >>> [s for s in headstart.list_strategies() if s in ("finetune", "linear", "lora")]
        ['finetune', 'linear', 'lora']
    """
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> type[Strategy]:
    if name not in _STRATEGIES:
        raise ConfigError(f"option --strategy: {name!r} is unknown; {did_you_mean(name, list_strategies())}"
                          f"choose one of {', '.join(list_strategies())}")
    return _STRATEGIES[name]


@dataclass
class Outcome:
    """What a strategy adds to its run, as generic data the pipeline, report and CLI show without knowing it.

    ``metrics``: top-level keys merged into metrics.json (``{"distill": {...}}``);
    ``summary``: extra (label, value) rows of the closing summary;
    ``sections``: tables for the report and the CLI, each
    ``{"title": str, "columns": [str, ...], "rows": [[value, ...], ...], "note": str}``.
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    summary: list[tuple[str, str]] = field(default_factory=list)
    sections: list[dict[str, Any]] = field(default_factory=list)
    # ``model``: keys added to model.json (e.g. a few-shot run's support rule); ``weights``: extra tensors
    # saved with the model under their own names (never "backbone." or "head.").
    model: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """Base of every adaptation method: trains backbone + head on the training split, nothing frozen."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type | None] = None  # the strategy's own knobs (a dataclass), if any
    trains: ClassVar[bool] = True  # False: no gradient loop, ``prepare`` fits everything (a cached-feature probe)
    # True when the strategy fits on the selection split too (cross-validation over train + selection):
    # scores on that split are then training scores, and the fit does not report them as a selection result.
    fits_selection_split: ClassVar[bool] = False
    # True when the fit learns some classes and is scored on others (few-shot): its reported split holds classes
    # it never trained on, and its metrics are per episode.
    splits_by_class: ClassVar[bool] = False
    # The task types it handles (`headstart.targets`); the fit refuses the others before any work.
    tasks: ClassVar[tuple[str, ...]] = ("binary", "multiclass", "multilabel", "regression")
    # Seeds a fit runs when --seeds is not given (the pipeline keeps the best by the strategy's label-free
    # ``selection_criterion`` metric, else by selection-split accuracy).
    default_seeds: ClassVar[int] = 1
    # The global pooling of an image backbone under ``--pool auto`` (a frozen-feature probe prefers avgmax).
    pool: ClassVar[str] = "avg"
    # Part of `headstart compare`'s default set of strategies (not inherited: a subclass says so itself).
    compared_by_default: ClassVar[bool] = False
    # A command of its own, ``headstart NAME ARG... DATA --FLAG MODEL [fit flags]`` (the CLI builds it):
    # {"help": str, "args": [(option, help), ...], "data_help": str, "model_flag": (flag, help)}.
    command: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "compared_by_default" not in vars(cls):  # each strategy opts in itself: `gradual` is not `finetune`
            cls.compared_by_default = False

    def __init__(self, cfg: FitConfig):
        self.cfg = cfg
        self.opts = options_for(cfg)

    @classmethod
    def search_space(cls, trial: Any, cfg: FitConfig) -> dict[str, Any]:
        """What `headstart tune` searches: `FitConfig` fields or this strategy's options, each drawn from
        ``trial`` (an Optuna trial). ``cfg`` is resolved (its learning rate is the one the fit would use).

        Every method that trains searches its learning rate, a decade either side of that one, log-uniform;
        its epochs, from half to twice the resolved default; and, where the data is augmented (images), the
        augmentation's strength. A method adds its own knobs (``super().search_space(...) | {...}``)."""
        if not cls.trains or not cfg.lr:
            return {}
        space = {"lr": trial.suggest_float("lr", cfg.lr / 10, cfg.lr * 10, log=True)}
        if cfg.epochs:
            space["epochs"] = trial.suggest_int("epochs", max(1, cfg.epochs // 2), max(2, 2 * cfg.epochs))
        if cfg.augment not in ("none", "auto"):
            space["augment"] = trial.suggest_categorical("augment", ["none", "light", "standard"])
        return space

    @classmethod
    def read_data(cls, cfg: FitConfig) -> Any:
        """The fit's `Dataset` (a strategy with several targets reads them its own way)."""
        from ...data import load_data

        return load_data(cfg.data, **cfg.load_kwargs())

    # -- override points -------------------------------------------------------
    def new_head(self, ctx: FitContext) -> None:
        """``ctx.head``: the head for the data's task, its task tensors (a scaler, label weights) set from the
        training split; what was set goes into the run's fit record."""
        from ...heads import make_head

        ds = ctx.data
        ctx.head = make_head(ds.task, ctx.backbone.num_features, ds.num_classes, self.cfg.dropout)
        fitted = ctx.head.fit_targets(ds.y[ds.train_idx], {"pos_weight": self.cfg.pos_weight,
                                                            "regression_loss": self.cfg.regression_loss})
        if fitted:
            ctx.info["targets"] = fitted

    def decide(self, ctx: FitContext) -> None:
        """What the task chooses after training, on the selection split only (a multilabel head's per-label
        thresholds), set in the head that is saved. A strategy that trained on the selection split chooses them
        itself (out of fold); without a selection split the defaults stay (0.5), and the run says so."""
        ds = ctx.data
        if not ds.kind.decides:
            return
        if self.fits_selection_split:
            ctx.info.setdefault("decisions", "defaults (0.5): the strategy trained on the selection split")
        elif not len(ds.val_idx):
            ctx.info["decisions"] = "defaults (0.5): no selection split to choose them on"
        else:
            ctx.head.set_decisions(ds.kind.decide(ds.y[ds.val_idx], self.outputs(ctx, ds.val_idx)))
            ctx.info["decisions"] = "chosen on the selection split"

    def prepare(self, ctx: FitContext) -> None:
        """Before training: freeze, wrap, cache, probe (a strategy that does not train does all its work here)."""

    def training_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, Any]:
        x, y = batch
        logits = ctx.head(self.features(x, ctx))
        return {"loss": ctx.head.loss(logits, y, self.cfg.label_smoothing), "logits": logits}

    def features(self, x: Any, ctx: FitContext) -> torch.Tensor:
        """Backbone features of a training batch (a strategy may compute them differently, e.g. from a cache)."""
        return ctx.backbone.forward_features(x)

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        params = list(ctx.backbone.parameters()) + list(ctx.head.parameters())
        return with_weight_decay([{"params": params, "lr": self.cfg.lr}], self.cfg.weight_decay)

    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None:
        """Called by the engine at the start of each training epoch (after the whole model was set to train mode)."""

    def train_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        """What the training loader iterates over (default: the training split)."""
        return ctx.data.subset(ctx.data.train_idx)

    def val_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        """What the selection loader iterates over (default: the selection split)."""
        return ctx.data.subset(ctx.data.val_idx)

    def batch_size(self, train: bool, ctx: FitContext) -> int:
        """Examples per step (``train``) or per selection batch."""
        return self.cfg.batch_size if train else max(64, self.cfg.batch_size)

    def validation_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, torch.Tensor]:
        """Loss and accuracy of one selection batch (the epochs are chosen on the loss)."""
        x, y = batch
        logits = ctx.head(ctx.backbone.forward_features(x))
        return {"loss": ctx.head.loss(logits, y), "acc": ctx.head.accuracy(logits, y)}

    def outputs(self, ctx: FitContext, idx: np.ndarray) -> np.ndarray:
        """The fitted model's outputs (probabilities, or values) on examples ``idx``."""
        from ...features import head_outputs, predict_outputs

        ds = ctx.data
        return (head_outputs(ctx.head, ctx.features, idx) if ctx.features is not None
                else predict_outputs(ctx.backbone, ctx.head, ds.take(idx)))

    def score(self, ctx: FitContext, idx: np.ndarray) -> tuple[dict[str, Any], np.ndarray | None]:
        """Metrics of the fitted model on examples ``idx`` (the reported or the selection split), once, and the
        outputs they come from (what the report's calibration and worst examples read), or None for a method
        that scores something else than each example's output (few-shot: episodes)."""
        from ...evaluate import compute_metrics

        ds = ctx.data
        out = self.outputs(ctx, idx)
        return compute_metrics(ds.y[idx], out, ds.task, ds.classes, ctx.head.decisions()), out

    def batcher(self, train: bool, ctx: FitContext) -> Callable[[list[Any]], Any]:
        """Turns a list of examples into a batch (default: the backbone's preprocessing)."""
        return ctx.backbone.preprocess(train=train, augment=self.cfg.augment if train else "none")

    def extra_modules(self, ctx: FitContext) -> dict[str, nn.Module]:
        """Modules trained besides backbone and head (a source head, a discriminator): checkpointed too."""
        return {}

    def epoch_record(self, ctx: FitContext) -> dict[str, Any]:
        """Extra columns for this epoch's history row (e.g. how many groups are unfrozen)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Schedule state saved in resume checkpoints (e.g. which groups are unfrozen)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved, when a fit resumes."""

    def cleanup(self, ctx: FitContext) -> None:
        """Called once training ends (also on errors): undo temporary changes to the model."""

    def finish(self, ctx: FitContext) -> Outcome:
        """After training: extra files in ``ctx.run_dir`` and the strategy's own results (see `Outcome`)."""
        return Outcome()

    # -- helpers (static: no override needed) ----------------------------------
    @staticmethod
    def freeze(modules: list[nn.Module]) -> None:
        for m in modules:
            for p in m.parameters():
                p.requires_grad_(False)

    @staticmethod
    def unfreeze(modules: list[nn.Module]) -> None:
        for m in modules:
            for p in m.parameters():
                p.requires_grad_(True)

    def frozen_bn_eval(self, modules: list[nn.Module]) -> None:
        """Frozen groups keep their BatchNorm statistics fixed, unless ``--train-bn``.

        In train mode a frozen BatchNorm still overwrites its running mean/var with
        the target data's: the weights stay, the statistics they were trained with do
        not, and accuracy silently drops, worst with small batches.
        """
        if not self.cfg.train_bn:
            self.set_bn_eval(modules)

    @staticmethod
    def set_bn_eval(modules: list[nn.Module]) -> None:
        from torch import nn

        for m in modules:
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.eval()


def with_weight_decay(groups: list[dict[str, Any]], weight_decay: float, trainable_only: bool = True) -> list[dict[str, Any]]:
    """Split each group: no weight decay on biases and normalisation weights (1-D tensors).

    ``trainable_only=False`` keeps frozen parameters too, for schedules that unfreeze
    them later (AdamW skips a parameter while its gradient is None).
    """
    out = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad or not trainable_only]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        rest = {k: v for k, v in g.items() if k != "params"}
        if decay:
            out.append({**rest, "params": decay, "weight_decay": weight_decay})
        if no_decay:
            out.append({**rest, "params": no_decay, "weight_decay": 0.0})
    return out
