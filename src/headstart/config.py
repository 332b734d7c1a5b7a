"""`FitConfig`: every knob of a fit, with help text and checks, in four parts.

`DataConfig` (what data, how split), `ModelConfig` (which backbone), `TrainConfig`
(strategy, optimiser, schedule) and `RuntimeConfig` (where to write, threads,
workers) are dataclasses of their own; `FitConfig` is all four, flat, plus the
chosen strategy's own options (``options``, checked by the strategy's
``Options`` dataclass). The fit pipeline resolves it once, before any work.

The CLI builds its `fit` flags from these fields (one flag per field, the help
text comes from the field's metadata), `--config FILE.yaml` supplies the same
keys, and the resolved config is written into every run directory as
``config.yaml``, so a run can always be reproduced from its own folder.

Defaults that depend on the data (learning rate, epochs, augmentation) are
left as ``None``/``"auto"`` here and resolved by :meth:`FitConfig.resolved`
once the modality is known; the run directory stores the resolved values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, did_you_mean

AUGMENT_PRESETS = ("auto", "none", "light", "standard")
HEADER_MODES = ("auto", "yes", "no")
CACHE_MODES = ("auto", "yes", "no")
PRECISIONS = ("auto", "32", "bf16")
POOLS = ("auto", "avg", "avgmax")
TASK_TYPES = ("auto", "binary", "multiclass", "multilabel", "regression")
POS_WEIGHTS = ("none", "auto")
REGRESSION_LOSSES = ("mse", "huber")
DISTRIBUTED = ("ddp", "fsdp")
LOGGERS = ("csv", "tensorboard", "mlflow")
DEFAULT_MODELS = {"text": "minilm", "image": "timm:resnet18"}  # what ``--model auto`` means for each modality


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


def _bad(name: str, msg: str) -> ConfigError:
    return ConfigError(f"option --{name.replace('_', '-')}: {msg}")


# Strategy options (``lora_r: 8``) may stand at the top level of a config; the strategies register how to find
# them (name -> (dataclass field, strategies that take it)), so that this module imports no strategy.
_option_lookup: Callable[[], dict[str, tuple[Any, list[str]]]] = dict


def set_option_lookup(fn: Callable[[], dict[str, tuple[Any, list[str]]]]) -> None:
    global _option_lookup
    _option_lookup = fn


DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}


def delimiter_char(value: str) -> str:
    """``--delimiter``: one character, or its name (tab, comma, semicolon, pipe, space; ``\\t`` too)."""
    char = DELIMITER_NAMES.get(value.lower(), value)
    if len(char) != 1 or char in "\"\r\n":
        raise _bad("delimiter", f"{value!r} is not one character; give e.g. ';', tab, comma, semicolon or pipe")
    return char


@dataclass
class DataConfig:
    """What data, and how it is split."""

    data: str = _opt("", "Data: an image folder, a CSV/TSV/JSONL/Parquet table, or a built-in ('digits').")
    test: str | None = _opt(None, "Separate labeled data to report on (else the data's test/ or val/ part, or a split).")
    text_col: list[str] | None = _opt(None, "Text column of a table (default: auto-detected); give it twice for a pair of "
                                      "texts (--text-col sentence1 --text-col sentence2), encoded as the tokenizer encodes pairs.")
    label_col: list[str] | None = _opt(None, "Label column of a table (default: auto-detected); several = one multilabel "
                                       "target of 0/1 columns (or several values with --task-type regression), or under "
                                       "--strategy multitask a task each.")
    task_type: str = _opt("auto", "What a label is: auto (detected: docs/task-types.md), binary, multiclass, multilabel, "
                          "regression.")
    label_sep: str | None = _opt(None, "Separator of the labels in a multilabel column, e.g. '|' or ',' (default: "
                                 "detected among | , ;).")
    header: str = _opt("auto", "Does the table have a header row: auto, yes, no.")
    delimiter: str | None = _opt(None, "Field separator of a .csv/.tsv/.txt table: a character, or tab, comma, semicolon, "
                                 "pipe (default: detected from the file).")
    strict: bool = _opt(False, "Fail on the first unreadable file or table row (missing label, empty text) instead of "
                        "skipping it with a warning.")
    seed: int = _opt(0, "Random seed: splits, init, shuffling. Same seed, same metrics on CPU.")
    val_fraction: float = _opt(
        0.15, "Fraction of the training data held out to choose epochs and hyper-parameters (never the reported split)."
    )
    test_fraction: float = _opt(0.2, "Fraction held out for the report when the data has no test/val part (0 with --cv: "
                                "no reported split, every example in the folds).")
    train_size: int | None = _opt(None, "Use only this many training examples (stratified sample).")
    labels_per_class: int | None = _opt(None, "Use only this many training examples per class.")
    dedupe: bool = _opt(False, "Drop from the training and selection splits every copy (exact, or near: perceptual "
                        "hash for images, normalised text) of an example of the reported split. Copies are always "
                        "looked for and reported; this removes them.")
    group_col: str | None = _opt(None, "Column of a table whose equal values stay on one side of every split and --cv "
                                 "fold (a patient, a user, a source document): no group is both trained on and scored.")

    def __post_init__(self) -> None:
        self._check_data()

    def _check_data(self) -> None:
        if not 0.0 <= self.val_fraction < 0.9:
            raise _bad("val_fraction", f"{self.val_fraction} must be in [0, 0.9)")
        if not 0.0 <= self.test_fraction < 0.9:
            raise _bad("test_fraction", f"{self.test_fraction} must be in (0, 0.9), or 0 with --cv")
        if self.header not in HEADER_MODES:
            raise _bad("header", f"'{self.header}' is not one of {', '.join(HEADER_MODES)}")
        if self.delimiter is not None:
            self.delimiter = delimiter_char(self.delimiter)
        for name in ("text_col", "label_col"):  # one column may be given as a string (YAML, the library)
            v = getattr(self, name)
            if isinstance(v, (str, int)):
                setattr(self, name, [str(v)])
            elif v is not None:
                setattr(self, name, [str(c) for c in v] or None)
        if self.text_col is not None and len(self.text_col) > 2:
            raise _bad("text_col", f"given {len(self.text_col)} times; one text column, or two for a pair")
        if self.task_type not in TASK_TYPES:
            raise _bad("task_type", f"'{self.task_type}' is not one of {', '.join(TASK_TYPES)}")
        for name in ("train_size", "labels_per_class"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise _bad(name, f"{v} must be at least 1")


@dataclass
class ModelConfig:
    """Which backbone, and its input and output shape."""

    model: str = _opt(
        "auto",
        "Backbone: timm:<name>, hf:<name-or-dir>, minilm, py:<module>:<factory>, run:<dir>, scratch:<arch>. "
        "'auto' = minilm for text, timm:resnet18 for images.",
    )
    weights: str | None = _opt(None, "Local weights file (safetensors or a torch checkpoint) for the backbone.")
    pretrained: bool = _opt(True, "Load pretrained weights (hub or --weights); --no-pretrained = random init.")
    pool: str = _opt(
        "auto", "Global pooling of an image backbone's last feature map: avg (the source model's own), avgmax (average "
        "and max concatenated: twice the features, more of the spatial detail a frozen backbone otherwise averages "
        "away), auto (the strategy's choice: avgmax for a frozen-feature probe, avg otherwise; text backbones always "
        "use their own pooling).")
    max_length: int = _opt(256, "Longest text in tokens; shorter batches are padded only to their own length.")
    dropout: float = _opt(0.0, "Dropout before the head.")

    def __post_init__(self) -> None:
        self._check_model()

    def _check_model(self) -> None:
        if self.pool not in POOLS:
            raise _bad("pool", f"'{self.pool}' is not one of {', '.join(POOLS)}")


@dataclass
class TrainConfig:
    """How to adapt it: the strategy, the optimiser and the schedule."""

    strategy: str = _opt("finetune", "Adaptation strategy (`headstart strategies` lists them with what each does).")
    epochs: int | None = _opt(None, "Training epochs (default: 10 for images, 2 for text, 6 for multilabel text; more on "
                                    "small data).")
    batch_size: int = _opt(32, "Batch size.")
    lr: float | None = _opt(None, "Peak learning rate of the top layers (default: 2e-3 images, 1e-4 text).")
    weight_decay: float = _opt(0.05, "AdamW weight decay.")
    warmup: float = _opt(0.1, "Fraction of the training steps used for linear warm-up before cosine decay.")
    layer_decay: float | None = _opt(
        None, "Discriminative LR: each layer group below the head gets this factor more (default 0.7 images, 1.0 = none for text)."
    )
    head_lr_mult: float = _opt(10.0, "The new head learns this many times faster than --lr (finetune).")
    freeze: int = _opt(0, "Freeze the lowest N layer groups (their BatchNorm stays in eval mode).")
    train_bn: bool = _opt(False, "Let BatchNorm in frozen layers update its statistics (default: frozen layers keep them).")
    cache_frozen: str = _opt(
        "auto", "Cache the output of the frozen lowest groups once and train only above them: auto (when --freeze > 0 "
        "and --augment none, images), yes, no.")
    label_smoothing: float = _opt(0.1, "Label smoothing of the classification loss (binary, multiclass).")
    pos_weight: str = _opt("none", "Multilabel: weigh each label's positives by its negatives/positives ratio in training "
                           "(auto; capped at 100), for rare labels; none = plain BCE.")
    regression_loss: str = _opt("mse", "Regression loss on the standardised target: mse, or huber (delta 1 standard "
                                "deviation; less swayed by outliers).")
    augment: str = _opt("auto", "Augmentation preset: auto, none, light, standard (flip, shear, zoom, colour).")
    restore_best: bool = _opt(False, "Keep the epoch with the lowest selection-split loss (default: the last epoch of the schedule).")
    patience: int = _opt(0, "Early stopping patience in epochs on the held-out loss (0 = run all epochs).")
    precision: str = _opt("auto", "Training precision: 32, bf16 (autocast; needs native bf16: AVX-512 BF16/AMX or a recent "
                          "GPU), or auto (32 for now: bf16 has not passed the speed and accuracy check that would make "
                          "it a default; see docs/benchmarks.md).")
    compile: bool = _opt(False, "torch.compile the backbone for training (opt-in: it pays off only on long fits of some models).")
    cv_folds: int = _opt(5, "Cross-validation folds of a strategy that chooses its own hyper-parameters by cross-validation "
                         "on the training data (e.g. the regularisation strength of a probe).")
    seeds: int | None = _opt(
        None, "Fit this many seeds (--seed, --seed + 1, ...; same data split) and keep the one the strategy's label-free "
        "criterion prefers, with mean and spread of every seed's results in metrics.json (default: the strategy's "
        "own, 3 for domain adaptation, else 1).")
    cv: int | None = _opt(
        None, "Estimate by K-fold cross-validation: K fits on the training part (stratified; grouped with --group-col), "
        "each scored on its held-out fold; mean ± std and a 95% interval in metrics.json and the report. The run "
        "itself is then fitted once as without --cv, and is the one scored on the reported split.")
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "The strategy's own options (lora_r, unfreeze_every, ...); as flags: --lora-r 8."})

    def __post_init__(self) -> None:
        self._check_training()

    def _check_training(self) -> None:
        if self.batch_size < 1:
            raise _bad("batch_size", f"{self.batch_size} must be at least 1")
        if self.epochs is not None and self.epochs < 1:
            raise _bad("epochs", f"{self.epochs} must be at least 1")
        if self.lr is not None and not self.lr > 0:
            raise _bad("lr", f"{self.lr} must be positive")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            raise _bad("layer_decay", f"{self.layer_decay} must be in (0, 1]")
        if not self.head_lr_mult > 0:
            raise _bad("head_lr_mult", f"{self.head_lr_mult} must be positive")
        if not 0.0 <= self.warmup < 1.0:
            raise _bad("warmup", f"{self.warmup} must be in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise _bad("label_smoothing", f"{self.label_smoothing} must be in [0, 1)")
        if self.freeze < 0:
            raise _bad("freeze", f"{self.freeze} must be >= 0")
        if self.pos_weight not in POS_WEIGHTS:
            raise _bad("pos_weight", f"'{self.pos_weight}' is not one of {', '.join(POS_WEIGHTS)}")
        if self.regression_loss not in REGRESSION_LOSSES:
            raise _bad("regression_loss", f"'{self.regression_loss}' is not one of {', '.join(REGRESSION_LOSSES)}")
        if self.augment not in AUGMENT_PRESETS:
            raise _bad("augment", f"'{self.augment}' is not one of {', '.join(AUGMENT_PRESETS)}")
        if self.cache_frozen not in CACHE_MODES:
            raise _bad("cache_frozen", f"'{self.cache_frozen}' is not one of {', '.join(CACHE_MODES)}")
        if not isinstance(self.options, dict):
            raise _bad("options", "must be a mapping of option: value")
        if str(self.precision) not in PRECISIONS:
            raise _bad("precision", f"'{self.precision}' is not one of {', '.join(PRECISIONS)}")
        self.precision = str(self.precision)  # YAML may give 32 as a number
        if self.cv_folds < 2:
            raise _bad("cv_folds", f"{self.cv_folds} must be at least 2")
        if self.seeds is not None and self.seeds < 1:
            raise _bad("seeds", f"{self.seeds} must be at least 1")
        if self.cv is not None and self.cv < 2:
            raise _bad("cv", f"{self.cv} must be at least 2 folds")


@dataclass
class RuntimeConfig:
    """Where results go and how the machine is used."""

    out: str | None = _opt(None, "Run directory to write (default runs/<name>).")
    name: str | None = _opt(None, "Run name (default: <data>-<model>-<strategy>).")
    overwrite: bool = _opt(False, "Replace an existing run directory.")
    resume: bool = _opt(False, "Continue the run in --out from its last checkpoint.")
    checkpoint_every: float = _opt(60.0, "Seconds of training between resume checkpoints (checkpoints/last.ckpt).")
    num_workers: int | None = _opt(
        None, "DataLoader worker processes (default: 0 on a CPU, where workers would compete with the model for the "
        "cores; min(4, cores) with pinned memory on a GPU).")
    threads: int | None = _opt(None, "Torch intra-op threads (default: all cores; with --devices N on a CPU, cores / N).")
    cache_dir: str | None = _opt(None, "Feature cache folder (default: runs/.cache, or $HEADSTART_CACHE_DIR).")
    devices: int = _opt(1, "Training processes per machine (GPUs, or CPU processes), through Lightning; --batch-size "
                           "stays the global batch, split among them (docs/distributed.md).")
    num_nodes: int = _opt(1, "Machines taking part; start the same command on each (torchrun or SLURM, docs/distributed.md).")
    distributed: str = _opt("ddp", "How several processes train: ddp (each holds the model; gradients averaged) or "
                                   "fsdp (parameters sharded; GPUs only).")
    logger: str = _opt("csv", "Where training curves and the final figures are logged, besides the run folder: csv "
                       "(logs/metrics.csv, always), tensorboard (logs/tensorboard), mlflow (a local SQLite store "
                       "<runs>/mlflow.db, or $MLFLOW_TRACKING_URI); several: tensorboard,mlflow.")

    def __post_init__(self) -> None:
        self._check_runtime()

    def _check_runtime(self) -> None:
        if not self.checkpoint_every > 0:
            raise _bad("checkpoint_every", f"{self.checkpoint_every} must be positive")
        for name in ("devices", "num_nodes"):
            if getattr(self, name) < 1:
                raise _bad(name, f"{getattr(self, name)} must be at least 1")
        if self.distributed not in DISTRIBUTED:
            raise _bad("distributed", f"{self.distributed!r} is not one of {', '.join(DISTRIBUTED)}")
        if self.num_workers is not None and self.num_workers < 0:
            raise _bad("num_workers", f"{self.num_workers} must be >= 0")
        bad = [n for n in self.loggers() if n not in LOGGERS]
        if bad:
            raise _bad("logger", f"{bad[0]!r} is not one of {', '.join(LOGGERS)} (several: comma-separated)")

    def loggers(self) -> list[str]:
        """``--logger`` as names, csv first and always."""
        names = [n.strip().lower() for n in str(self.logger).split(",") if n.strip()]
        return ["csv", *dict.fromkeys(n for n in names if n != "csv")]


@dataclass
class FitConfig(RuntimeConfig, TrainConfig, ModelConfig, DataConfig):
    """What to fit, on which data, with which strategy: the four parts above, flat.

    One flag per field (``headstart fit --help``), the same keys in ``--config FILE.yaml`` and in
    ``config.yaml`` of every run; a strategy's own options go in ``options``. Each part is its own dataclass
    with its own checks: a bad value raises `ConfigError` naming the option.

    Examples:
        >>> from headstart import FitConfig
        >>> cfg = FitConfig.from_dict({"data": "demo-text", "model": "minilm", "strategy": "lora", "lora_r": 4})
        >>> cfg.strategy, cfg.options
        ('lora', {'lora_r': 4})
        >>> FitConfig(data="demo-text", epochs=0)
        Traceback (most recent call last):
        ...
        headstart.errors.ConfigError: option --epochs: 0 must be at least 1
    """

    def __post_init__(self) -> None:
        for check in (self._check_data, self._check_model, self._check_training, self._check_runtime):
            check()
        if self.test_fraction == 0 and not self.cv:
            raise _bad("test_fraction", "0 leaves nothing to report on; it is for --cv, whose folds are then the "
                       "estimate (give --cv K, or a fraction in (0, 0.9))")

    def load_kwargs(self) -> dict[str, Any]:
        """`load_data` keyword arguments for this config's data (everything of `DataConfig` but the source)."""
        return {f.name: getattr(self, f.name) for f in fields(DataConfig) if f.name != "data"}

    # -- defaults that depend on the modality ---------------------------------
    def model_for(self, modality: str) -> str:
        """The backbone to build: ``--model``, or the modality's default when it is ``auto``."""
        return DEFAULT_MODELS[modality] if self.model == "auto" else self.model

    def resolved(self, modality: str, n_train: int = 0, task: str = "multiclass") -> FitConfig:
        """Fill the data-dependent defaults (recorded in the run's config.yaml).

        Epochs: 2 for text (6 for a multilabel text target) and 10 for images, raised on small data so that the
        optimiser takes at least ~60 (text) / ~70 (images) steps, at most 50 epochs. Multilabel text: on
        GoEmotions (28 labels, 4,613 examples, MiniLM) 2 epochs reached micro-F1 0.248, below the linear probe's
        0.399, with the selection loss still falling; 6 epochs reached 0.515 (docs/benchmarks.md).
        """
        text = modality == "text"
        changes: dict[str, Any] = {"model": self.model_for(modality)}
        if self.epochs is None:
            base, min_steps = ((6 if task == "multilabel" else 2), 60) if text else (10, 70)
            steps_per_epoch = max(1, -(-n_train // self.batch_size))
            changes["epochs"] = int(min(50, max(base, -(-min_steps // steps_per_epoch))))
        if self.lr is None:
            changes["lr"] = 1e-4 if text else 2e-3
        if self.layer_decay is None:
            changes["layer_decay"] = 1.0 if text else 0.7
        if self.augment == "auto":
            changes["augment"] = "none" if text else "standard"
        return dataclasses.replace(self, **changes)

    # -- YAML -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> FitConfig:
        """A config from a dict of `FitConfig` keys; a strategy's option may be given at top level (``lora_r: 8``).

        Raises:
            ConfigError: An unknown key, named with the closest valid one.
        """
        known = {f.name for f in fields(cls)}
        d = dict(d)
        strategy_opts = _option_lookup()
        moved = {k: d.pop(k) for k in list(d) if k not in known and k in strategy_opts}
        if moved:
            d["options"] = {**(d.get("options") or {}), **moved}
        unknown = sorted(set(d) - known)
        if unknown:
            hint = did_you_mean(unknown[0], sorted(known | set(strategy_opts)))
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; {hint}valid keys are listed by "
                              "`headstart fit --help`")
        try:
            return cls(**d)
        except TypeError as e:  # pragma: no cover - dataclass signature errors
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> FitConfig:
        """A config from a YAML file of `FitConfig` keys (a run's ``config.yaml``, or ``tune``'s ``best.yaml``)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e.__class__.__name__}); check indentation and quoting") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{p}: expected a mapping of option: value")
        return cls.from_dict(d, source=str(p))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
