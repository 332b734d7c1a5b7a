"""The run directory: a self-describing record of one fit, and `Run` to use it.

::

    runs/<name>/
      config.yaml        resolved FitConfig (re-run with `headstart fit --config`)
      model.json         architecture: backbone spec, task, feature width
      model.safetensors  weights: backbone.* and head.*
      labels.json        class names in output order, task type
      metrics.json       held-out metrics, selection metrics, timings
      history.csv        one row per epoch (or per regularisation strength C, for a probe that searches C)
      report.html        summary + plots/ (learning curves, confusion matrix)
      backbone/          tokenizer and config of text backbones (no network needed to load)
      logs/              Lightning CSV logs (logs/resume-N/ for the N-th resume)
      checkpoints/       last training checkpoint while a fit runs (removed when it ends)
      export/            ONNX files written and checked by `headstart export` (``export.py`` here)

Loading never unpickles: weights come from safetensors, the rest is YAML/JSON, and no
file name recorded inside the run leads outside it. A run whose network is built
by a user's ``py:`` factory imports that factory only when trusted
(``trust_code``); untrusted, it still predicts through its ONNX export, which
needs no code (docs/security.md).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from safetensors.torch import load_file, save_file

from .._io import atomic_write_text
from .._progress import info
from .._trust import trusting
from ..backbones import Backbone, ImageBatcher, rebuild_backbone, register_backbone, runs_user_code, why_untrusted
from ..config import DataConfig
from ..data import Dataset, load_data, read_inputs
from ..errors import ConfigError, DataError, HeadstartError, UntrustedCode
from ..evaluate import compute_metrics, multitask_metrics
from ..features import predict_outputs
from ..heads import Head, MultiHead
from ..targets import get_task_type, split_columns
from ._folder import check_members
from ._onnx import EXPORT_DIR, OnnxModel, default_onnx

ENGINES = ("torch", "onnx")


class Run:
    """A fitted model and its record, read from its run folder (`load_run`, or what `fit` returns).

    ``path`` is the folder, ``config`` its resolved configuration, ``classes`` the class (label, target)
    names, ``task`` the task type, ``metrics`` the content of ``metrics.json``. `predict`, `evaluate`,
    `explain` and `export` work on new data. A run loaded without the code its network needs (an untrusted
    ``py:`` factory) has no ``backbone`` or ``head``: asking for them raises the refusal, and prediction goes
    through its ONNX export.

    Examples:
        >>> import headstart
        >>> run = headstart.fit("demo-text", model="minilm", strategy="linear", out="runs/topics")
        >>> run.task, run.classes
        ('multiclass', ['cooking', 'finance', 'health', 'sport', 'technology', 'weather'])
        >>> headstart.load("runs/topics").metrics["test"]["n"]
        42
    """

    def __init__(self, path: Path, config: dict[str, Any], classes: list[str], task: str, backbone: Backbone | None,
                 head: Head | None, metrics: dict[str, Any] | None = None, *, modality: str | None = None,
                 batcher: Any = None, refusal: str | None = None, decisions: dict[str, Any] | None = None,
                 tasks: dict[str, dict[str, Any]] | None = None):
        self.path, self.config, self.classes, self.task = Path(path), config, classes, task
        self._backbone, self._head, self._refusal = backbone, head, refusal
        self.metrics = metrics or {}
        self.modality = backbone.modality if backbone is not None else str(modality)
        self._batcher = batcher
        self._onnx: OnnxModel | None = None
        self._decisions: dict[str, Any] = decisions or {}
        self.tasks: dict[str, dict[str, Any]] = tasks or {}  # a multitask run's tasks: name -> {task, classes}
        self.support_rule: dict[str, Any] = {}  # a few-shot run's rule for `predict(support=...)` (model.json)
        self.support_weights: dict[str, Any] = {}

    def __repr__(self) -> str:
        test = self.metrics.get("test", {})
        acc = test.get("score", test.get("accuracy"))
        tail = f", test {test.get('score_name', 'accuracy').replace('_', ' ')} {acc:.4f}" if acc is not None else ""
        return f"Run({str(self.path)!r}, {self.config.get('model')}, {self.config.get('strategy')}{tail})"

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            raise UntrustedCode(str(self._refusal))
        return self._backbone

    @property
    def head(self) -> Head:
        if self._head is None:
            raise UntrustedCode(str(self._refusal))
        return self._head

    @property
    def batcher(self) -> Any:
        """The eval-time preprocessing: the backbone's, or the one recorded for a run loaded without its code."""
        return self._backbone.preprocess(train=False) if self._backbone is not None else self._batcher

    @property
    def default_engine(self) -> str:
        """``onnx`` for a run loaded without its code (the export needs none), else ``torch``."""
        return "torch" if self._backbone is not None else "onnx"

    # -- inputs ----------------------------------------------------------------
    def resolve_inputs(self, inputs: Any, text_col: str | list[str] | None = None) -> tuple[list[Any], list[str]]:
        """(examples, where each came from) for files, folders, tables, arrays or strings, as `predict` takes them.
        A run fitted on pairs of texts reads the same two columns of a table unless ``text_col`` names others."""
        own = self.config.get("text_col")
        pairs = isinstance(own, list) and len(own) > 1
        if text_col is None and pairs:
            text_col = own
        items, refs = read_inputs(inputs, self.modality, text_col)
        if pairs and any(isinstance(x, str) for x in items):
            raise DataError(f"{self.path.name} reads pairs of texts ({' + '.join(own)}); give a table with those two "
                            "columns (or --text-col twice), not single texts")
        return items, refs

    # -- use -------------------------------------------------------------------
    def outputs(self, items: list[Any], batch_size: int = 64, engine: str | None = None) -> np.ndarray:
        """Probabilities [N, C] for decoded examples (image arrays, texts), through PyTorch (``engine="torch"``) or
        the ONNX export (``"onnx"``, its session opened once per Run); None = `default_engine`.

        Unlike `predict`, strings are always texts, never file names: what a server receives goes here.
        """
        engine = engine or self.default_engine
        if engine == "torch":
            return predict_outputs(self.backbone, self.head, items, batch_size)
        if engine == "onnx":
            if self._onnx is None:
                self._onnx = OnnxModel(default_onnx(self.path), self.batcher)
            return self._onnx.outputs(items, batch_size)
        raise HeadstartError(f"option --engine: {engine!r} is not one of {', '.join(ENGINES)}")

    @property
    def decisions(self) -> dict[str, Any]:
        """What turns outputs into answers besides argmax (a multilabel run's per-label thresholds): labels.json."""
        return self._decisions

    def records(self, refs: list[str], probs: np.ndarray, classes: list[str] | None = None) -> list[dict[str, Any]]:
        """`predict`'s output: one dict per example with its ``input`` name and the task's answer: ``label`` and
        class ``probabilities`` (of this run's classes, or of ``classes``: a support set's); ``labels`` and label
        probabilities (multilabel); ``value`` or ``values`` (regression)."""
        if classes is not None:  # a support set's classes
            return [{"input": ref, **row} for ref, row in zip(refs, get_task_type("multiclass").records(probs, classes))]
        if self.tasks:  # every task's answer, by task name
            per = {n: get_task_type(t["task"]).records(part, t["classes"], self.decisions.get("tasks", {}).get(n))
                   for (n, t), part in zip(self.tasks.items(), self.split_outputs(probs).values())}
            return [{"input": ref, "tasks": {n: per[n][i] for n in per}} for i, ref in enumerate(refs)]
        rows = get_task_type(self.task).records(probs, self.classes, self.decisions)
        return [{"input": ref, **row} for ref, row in zip(refs, rows)]

    def split_outputs(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """A multitask run's side-by-side outputs, cut per task (binary tasks give two columns)."""
        return split_columns(outputs, {n: get_task_type(t["task"]).output_width(len(t["classes"])) for n, t in self.tasks.items()})

    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of the files that decide the answers: architecture, labels and weights."""
        h = hashlib.sha256()
        for name in ("model.json", "labels.json", "model.safetensors"):
            with open(self.path / name, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        return h.hexdigest()[:16]

    def predict_proba(self, inputs: Any, batch_size: int = 64, engine: str | None = None) -> np.ndarray:
        """The raw outputs for ``inputs`` (as `predict` takes them): class probabilities [N, C], or a
        regression run's values."""
        items, _ = self.resolve_inputs(inputs)
        return self.outputs(items, batch_size, engine)

    def predict(self, inputs: Any, batch_size: int = 64, text_col: str | list[str] | None = None,
                engine: str | None = None, support: str | Path | Dataset | None = None) -> list[dict[str, Any]]:
        """Predict new examples: one dict per input.

        Args:
            inputs: Texts, image files or folders, a table file, or decoded arrays.
            batch_size: Examples per forward pass.
            text_col: The text column of a table input.
            engine: ``"torch"``, or ``"onnx"`` for the file the last `export` accepted (same preprocessing,
                same output); None takes ``default_engine``.
            support: Labeled examples (a folder of class folders, a table, or a `Dataset`) of the classes to
                predict, which may be classes the run never saw: a few-shot run adapts to them by the rule it
                was scored with (prototypes, or MAML's inner loop).

        Returns:
            One dict per input: ``input`` (its name), the predicted ``label`` and the class ``probabilities``
            (a multilabel run: the ``labels`` over their thresholds; regression: the ``values``).

        Examples:
            >>> import headstart
            >>> run = headstart.fit("demo-text", model="minilm", strategy="linear", out="runs/topics")
            >>> [p["label"] for p in run.predict(["light rain this evening", "stir in the butter"])]
            ['weather', 'cooking']
        """
        items, refs = self.resolve_inputs(inputs, text_col)
        if support is None:
            return self.records(refs, self.outputs(items, batch_size, engine))
        if engine == "onnx":
            raise HeadstartError("option --support: adapting to a support set runs through PyTorch; drop --engine onnx")
        backbone, head, classes = self.adapted(support, text_col)
        probs = predict_outputs(backbone, head, items, batch_size)
        return self.records(refs, probs, classes)

    def explain(self, inputs: Any, method: str = "auto", target: str | int | None = None, steps: int = 32,
                text_col: str | list[str] | None = None, out: str | Path | None = None) -> dict[str, Any]:
        """Why the run answered as it did, through Captum; written to ``RUN/explain/`` (or ``out``).

        Args:
            inputs: As `predict` takes them.
            method: ``"auto"`` (Grad-CAM where the backbone has a convolution, else integrated gradients),
                ``"gradcam"`` or ``"ig"``.
            target: The class to explain (default: each input's predicted class).
            steps: Integrated-gradients steps along the path from the baseline.
            text_col: The text column of a table input.
            out: Another folder to write to.

        Returns:
            ``folder`` and ``explanations``: per input, the file written (a PNG per image; one HTML page for
            all texts), the class explained, its probability and the method.

        Examples:
            >>> import headstart
            >>> run = headstart.fit("demo-text", model="minilm", strategy="linear", out="runs/topics")
            >>> got = run.explain(["the striker scored twice"])
            >>> got["explanations"][0]["class"], got["explanations"][0]["file"]
            ('sport', 'runs/topics/explain/texts.html')
        """
        from .explain import EXPLAIN_DIR, explain, write_explanations

        if self.tasks:
            raise HeadstartError(f"{self.path}: explain one task at a time is not supported for a multitask run")
        items, refs = self.resolve_inputs(inputs, text_col)
        got = explain(self.backbone, self.head, self.modality, items, refs, self.classes, method, target, steps)
        folder = Path(out) if out is not None else self.path / EXPLAIN_DIR
        files = write_explanations(folder, got, items, f"headstart explain {self.path.name}")
        rows = [{"input": a.ref, "class": a.target, "probability": a.probability, "method": a.method,
                 **({"convergence_delta": a.convergence} if a.convergence is not None else {})} for a in got]
        for row, f in zip(rows, files if self.modality == "image" else files * len(rows)):
            row["file"] = str(f)
        return {"folder": str(folder), "explanations": rows}

    def adapted(self, support: str | Path | Dataset, text_col: str | None = None) -> tuple[Backbone, Head, list[str]]:
        """This run's network fitted to a support set: (backbone, head over the support's classes, class names)."""
        import torch

        from ._support import adapt_to_support

        if not self.support_rule:
            raise HeadstartError(f"{self.path}: option --support needs a few-shot run (strategy protonet or maml); this "
                                 f"one was fitted with {self.config.get('strategy')} and predicts its own classes")
        ds = support if isinstance(support, Dataset) else load_data(
            str(support), val_fraction=0.0, test_fraction=0.0, **({"text_col": text_col} if text_col else {}))
        if ds.modality != self.modality:
            raise DataError(f"{support}: holds {ds.modality}s but the run predicts {self.modality}s")
        batch = self.backbone.preprocess(train=False)(list(ds.items))
        backbone, head = adapt_to_support(self.backbone, self.support_weights, self.support_rule, batch,
                                          torch.as_tensor(ds.y), ds.num_classes)
        return backbone, head, list(ds.classes)

    def evaluate(self, data: str | Path | Dataset, split: str = "all", engine: str | None = None, **load_kw: Any) -> dict[str, Any]:
        """Metrics on labeled data, read as the fit read its own.

        Args:
            data: Labeled data as `fit` takes it, or a `Dataset`.
            split: ``"all"`` scores every example; ``"test"`` only the data's reported part (the run's own data
                with ``"test"`` gives its held-out figures again).
            engine: As in `predict`.
            **load_kw: Options of `load_data` (``text_col``, ``label_col`` ...).

        Returns:
            The task's metrics: accuracy, balanced accuracy, macro F1, log-loss and the confusion matrix for
            classes; per-label figures for multilabel; errors and correlations for regression.

        Examples:
            >>> import headstart
            >>> run = headstart.fit("demo-text", model="minilm", strategy="linear", out="runs/topics")
            >>> m = run.evaluate("demo-text", split="test")
            >>> m["accuracy"] == run.metrics["test"]["accuracy"]
            True
        """
        ds = data if isinstance(data, Dataset) else self.read_like_fit(data, load_kw)
        idx = {"all": np.arange(len(ds.items)), "test": ds.test_idx}.get(split)
        if idx is None:
            raise HeadstartError(f"option --split: {split!r} must be 'all' or 'test'")
        return self.score_outputs(self.truth(ds, idx), self.outputs(ds.take(idx), 64, engine))

    def truth(self, ds: Dataset, idx: np.ndarray) -> Any:
        """The labels of examples ``idx`` in this run's order: an array, or per task (name -> (task, names, y))
        for a multitask run, missing labels kept as missing."""
        if not self.tasks:
            return self.labeled(ds, idx)[1]
        missing = [n for n in self.tasks if n not in ds.targets]
        if missing:
            raise DataError(f"{ds.name}: no labels of task {missing[0]!r}; the run's tasks are {', '.join(self.tasks)}")
        out = {}
        for n, t in self.tasks.items():
            mine = ds.targets[n]
            if mine.task != t["task"] or (t["task"] != "regression" and not set(mine.classes) <= set(t["classes"])):
                raise DataError(f"{ds.name}: task {n!r} holds {mine.task} labels ({', '.join(mine.classes[:5])}) that the "
                                f"run's {t['task']} head does not predict")
            y = mine.y[idx]
            if t["task"] in ("binary", "multiclass"):
                order = np.array([t["classes"].index(c) for c in mine.classes])
                y = np.where(y >= 0, order[np.maximum(y, 0)], -1)
            elif t["task"] == "multilabel":
                full = np.zeros((len(idx), len(t["classes"])), dtype=np.float32)  # a label the data lacks: 0
                full[:, [t["classes"].index(c) for c in mine.classes]] = np.nan_to_num(y)
                full[np.isnan(y).any(1)] = np.nan  # rows without this task's label stay missing
                y = full
            out[n] = (t["task"], t["classes"], y)
        return out

    def score_outputs(self, truth: Any, outputs: np.ndarray) -> dict[str, Any]:
        """Metrics of ``outputs`` against `truth`, with this run's decisions (thresholds)."""
        if self.tasks:
            return multitask_metrics(truth, self.split_outputs(outputs), self.decisions)
        return compute_metrics(truth, outputs, self.task, self.classes, self.decisions)

    def read_like_fit(self, data: str | Path, load_kw: dict[str, Any]) -> Dataset:
        """Labeled data read as the fit read its own: its task type and label separator, and its text and label
        columns when the table has them (else detected, e.g. a test file that names its columns differently).
        A multitask run reads every task's label column."""
        load_kw = {k: v for k, v in load_kw.items() if v}
        if self.tasks:
            load_kw.setdefault("text_col", self.config.get("text_col"))
            load_kw.setdefault("label_col", list(self.tasks))
            return load_data(data, **load_kw, multitask=True)
        for key in ("task_type", "label_sep"):
            if key not in load_kw and self.config.get(key) is not None:
                load_kw[key] = self.config[key]
        own = {k: self.config[k] for k in ("text_col", "label_col") if self.config.get(k) and k not in load_kw}
        if own:
            try:
                return load_data(data, **load_kw, **own)
            except DataError as e:
                if "is not a column" not in str(e):  # `read_table`'s words for a column the file lacks
                    raise
        return load_data(data, **load_kw)

    def labeled(self, ds: Dataset, idx: np.ndarray) -> tuple[list[Any], np.ndarray]:
        """Examples ``idx`` of ``ds`` with labels in this run's class order (an unknown class is an error)."""
        if ds.task != self.task and {ds.task, self.task} != {"binary", "multiclass"}:
            raise DataError(f"{ds.name}: holds a {ds.task} target but the run predicts a {self.task} one; give "
                            f"--task-type {self.task} (and the run's label columns) if the data was read wrongly")
        if self.task == "regression":
            if ds.y.shape[1] != len(self.classes):
                raise DataError(f"{ds.name}: {ds.y.shape[1]} target column(s), the run predicts {len(self.classes)} "
                                f"({', '.join(self.classes)}); give them with --label-col")
            return ds.take(idx), ds.y[idx]
        if self.task == "multilabel":  # columns in the run's label order; a label the data lacks is all 0
            unknown = [c for c in ds.classes if c not in self.classes]
            if unknown:
                raise DataError(f"{ds.name}: label {unknown[0]!r} is not one of the run's labels ({', '.join(self.classes)})")
            y = np.zeros((len(idx), len(self.classes)), dtype=np.float32)
            y[:, [self.classes.index(c) for c in ds.classes]] = ds.y[idx]
            return ds.take(idx), y
        mapping = {}
        for i, c in enumerate(ds.classes):
            if c not in self.classes:
                where = ds.refs[int(np.flatnonzero(ds.y == i)[0])]
                raise DataError(f"{where}: label {c!r} is not one of the run's classes ({', '.join(self.classes)})")
            mapping[i] = self.classes.index(c)
        return ds.take(idx), np.array([mapping[int(v)] for v in ds.y[idx]], dtype=np.int64)

    def export(self, **options: Any) -> dict[str, Any]:
        """Export to ONNX (and optionally pruned and int8 copies) in ``RUN/export/``, each file checked.

        onnxruntime runs every file on the run's selection split next to PyTorch; a file that loses more than
        ``max_drop`` accuracy points there is refused unless ``force``. The held-out split is scored too and
        only reported.

        Args:
            **options: ``format`` (``"onnx"``), ``quantize`` (``"int8"``), ``prune`` (a fraction of every
                weight set to zero), ``max_drop`` (points, 1.0), ``force``, ``data`` (labeled data that decides
                instead of the selection split).

        Returns:
            The content of ``export.json``: ``stages``, one per file written (its size, its difference from
            PyTorch, its score on the deciding data and on the held-out data), and ``default``, the file that
            ``engine="onnx"`` uses.

        Examples:
            >>> import headstart
            >>> run = headstart.fit("demo-text", model="scratch:bow", strategy="scratch", epochs=2, out="runs/bow")
            >>> report = run.export(quantize="int8")
            >>> [stage["file"] for stage in report["stages"]], report["default"]
            (['model.onnx', 'model-int8.onnx'], 'model-int8.onnx')
        """
        from .export import export_run

        self._onnx = None  # the export may name a new default file
        return export_run(self, **options)

    def reload_data(self) -> Dataset:
        """The data this run was fitted on, split exactly as in the fit (same seed and fractions)."""
        c = self.config
        if not c.get("data"):
            raise HeadstartError(f"{self.path}/config.yaml: does not name the run's data; pass --data with labeled data")
        keys = [f.name for f in dataclasses.fields(DataConfig) if f.name != "data"]  # what `load_data` takes
        several = {}
        if self.tasks:  # a multitask run: its datasets (the strategy's --task), or its table's label columns
            given = (c.get("options") or {}).get("task") or []
            datasets = dict(str(t).split("=", 1) for t in ([given] if isinstance(given, str) else given))
            several = {"tasks": datasets} if datasets else {"multitask": True}
        try:
            return load_data(c["data"], **{k: c[k] for k in keys if k in c}, **several)
        except DataError as e:
            raise DataError(f"the run's data cannot be read again ({e}); pass --data with labeled data") from None


# -- save / load ---------------------------------------------------------------
def save_model(run_dir: Path, backbone: Backbone, head: Head, task: str, classes: list[str], dropout: float,
               record: dict[str, Any] | None = None, tensors: dict[str, Any] | None = None) -> None:
    """Weights into model.safetensors, architecture into model.json (plus ``record``'s keys), classes into
    labels.json. ``tensors``: extra named tensors saved beside ``backbone.*`` and ``head.*``."""
    state = {f"backbone.{k}": v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    state.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    state.update({k: v.detach().cpu().contiguous() for k, v in (tensors or {}).items()})
    buf_path = run_dir / ".model.safetensors.tmp"
    save_file(state, str(buf_path))
    buf_path.replace(run_dir / "model.safetensors")
    spec = dict(backbone.spec)
    if isinstance(spec.get("code"), dict):  # a user's factory: also found from the run folder if both move
        code = spec["code"]
        spec["code"] = {**code, "relative": os.path.relpath(code["file"], run_dir.resolve())}
    model = {"backbone": spec, "modality": backbone.modality, "num_features": backbone.num_features,
             "task": task, "num_outputs": len(classes), "dropout": dropout, **(record or {})}
    if head.normalize is not None:
        model["normalize"] = head.normalize
    if backbone.data_config is not None:  # what predicting through the ONNX export needs, without the network
        model["data_config"] = backbone.data_config
    atomic_write_text(run_dir / "model.json", json.dumps(model, indent=2))
    decisions = head.decisions()  # also here: predicting through the ONNX export reads them without torch
    tasks = {t["name"]: {"task": t["task"], "classes": t["classes"]} for t in (record or {}).get("tasks", [])}
    atomic_write_text(run_dir / "labels.json", json.dumps({"classes": classes, "task": task, **({"tasks": tasks} if tasks else {}),
                                                           **({"decisions": decisions} if decisions else {})}, indent=2))
    backbone.save_assets(run_dir / "backbone")


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys or ["epoch"])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(run_dir / "history.csv", buf.getvalue())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


def load_run(path: str | Path, trust_code: bool | str | None = None) -> Run:
    """Load a run folder written by `fit`: YAML, JSON and safetensors, never a pickle.

    Args:
        path: The run folder.
        trust_code: Whether a ``py:`` factory the run records may be imported: ``True`` when its file's sha256
            is the recorded one, ``"any"`` whatever it is; None keeps the level in force (``False`` unless a
            caller raised it). Untrusted, a run that has an ONNX export loads without its network and predicts
            through the export; one without is refused, in one line naming the file and its hash.

    Returns:
        The `Run`.

    Raises:
        HeadstartError: Not a run folder, a damaged one, or code that is not trusted.

    Examples:
        >>> import headstart
        >>> _ = headstart.fit("demo-text", model="minilm", strategy="linear", out="runs/topics")
        >>> headstart.load_run("runs/topics").config["strategy"]
        'linear'
    """
    p = Path(path).expanduser()
    for name in ("model.json", "labels.json", "model.safetensors"):
        if not (p / name).is_file():
            raise HeadstartError(f"{p}: not a headstart run directory (missing {name}); give the folder `fit` wrote")
    check_members(p, ["model.json", "labels.json", "model.safetensors", "config.yaml", "metrics.json"])
    model = _read_record(p / "model.json", ("backbone", "task", "num_features", "num_outputs"))
    labels = _read_record(p / "labels.json", ("classes", "task"))
    config = _read_record(p / "config.yaml", ()) if (p / "config.yaml").is_file() else {}
    metrics = _read_record(p / "metrics.json", ()) if (p / "metrics.json").is_file() else {}
    with trusting(trust_code) as level:
        spec = model["backbone"]
        if not isinstance(spec, dict):
            raise HeadstartError(f"{p / 'model.json'}: the recorded backbone is not a record; fit the run again")
        if level == "no" and runs_user_code(spec):
            return _without_code(p, model, labels, config, metrics)
        try:
            backbone = rebuild_backbone(spec, p / "backbone")
            if model["task"] == "multitask":  # a head per task (model.json "tasks")
                head = MultiHead({t["name"]: (t["task"], len(t["classes"])) for t in model["tasks"]},
                                 int(model["num_features"]), float(model.get("dropout", 0.0)))
            else:
                head = Head(model["task"], int(model["num_features"]), int(model["num_outputs"]),
                            float(model.get("dropout", 0.0)),
                            normalize=float(model["normalize"]) if model.get("normalize") is not None else None)
        except (KeyError, TypeError, ValueError) as e:
            raise HeadstartError(f"{p / 'model.json'}: the recorded architecture is damaged ({e!r}); fit the run again") from None
        except ConfigError as e:  # e.g. a family this installation lacks, or a backbone that points at another run
            raise ConfigError(f"{p / 'model.json'}: {e}") from None
    try:
        state = load_file(str(p / "model.safetensors"))
    except Exception as e:
        raise HeadstartError(f"{p / 'model.safetensors'}: unreadable ({e}); the run is damaged, fit it again") from None
    bb = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    hd = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
    try:
        backbone.load_state_dict(bb, strict=True)
        head.load_state_dict(hd, strict=True)
    except RuntimeError as e:
        raise HeadstartError(f"{p}: weights do not match the recorded architecture ({str(e).splitlines()[0]})") from None
    backbone.eval()
    head.eval()
    run = Run(p, config, labels["classes"], labels["task"], backbone, head, metrics, decisions=labels.get("decisions"),
              tasks=labels.get("tasks"))
    if isinstance(model.get("support"), dict):
        run.support_rule = model["support"]
        run.support_weights = {k: v for k, v in state.items() if k.startswith("support.")}
    return run


def _without_code(p: Path, model: dict[str, Any], labels: dict[str, Any], config: dict[str, Any],
                  metrics: dict[str, Any]) -> Run:
    """An untrusted run of a user's factory: through its ONNX export when it has one, else refused."""
    refusal = why_untrusted(model["backbone"], p)  # one line naming the file and its hash
    cfg = model.get("data_config")
    exported = (p / EXPORT_DIR / "export.json").is_file()
    if not exported or model.get("modality") != "image" or not isinstance(cfg, dict):
        tail = "" if exported else ("; or export it once where it is trusted (`headstart export --trust-code`): "
                                    "its ONNX file predicts without code")
        raise UntrustedCode(refusal + tail)
    try:
        batcher = ImageBatcher(cfg, False, "none")
    except (KeyError, TypeError, ValueError) as e:
        raise HeadstartError(f"{p / 'model.json'}: the recorded data_config is damaged ({e!r}); fit the run again") from None
    info(f"{p}: its network's code is not trusted, so it predicts through its ONNX export ({default_onnx(p).name}), "
         "which runs no code from the run folder")
    return Run(p, config, labels["classes"], labels["task"], None, None, metrics, modality="image", batcher=batcher,
               refusal=refusal, decisions=labels.get("decisions"), tasks=labels.get("tasks"))


def _read_record(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A run's JSON/YAML record, or a clear error naming the damaged file."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        raise HeadstartError(f"{path}: unreadable ({str(e).splitlines()[0][:120]}); the run is damaged, fit it again") from None
    missing = [k for k in required if not isinstance(data, dict) or k not in data]
    if not isinstance(data, dict) or missing:
        raise HeadstartError(f"{path}: missing {', '.join(missing) or 'content'}; the run is damaged, fit it again")
    return data


def dump_config(run_dir: Path, cfg_dict: dict[str, Any]) -> None:
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg_dict, sort_keys=False))


@register_backbone("run")
def run_backbone(path: str, *, weights: str | None = None, pretrained: bool = True) -> Backbone:
    """``run:<dir>``: an earlier run's adapted backbone as the source model.

    The two-step workflow: fit a source model on a large related dataset, then
    ``headstart fit TARGET --model run:<that run>`` transfers it. The earlier run's
    head becomes the backbone's ``source_head`` (its class probabilities are what
    LEEP/NCE need). Registered here, not in ``backbones/``: reading a run needs the
    heads and the run format, which sit beside or above the backbones.
    """
    if weights is not None:
        raise HeadstartError("option --weights: a run: model already has its weights; drop --weights")
    run = load_run(path)
    backbone = run.backbone
    if pretrained:
        backbone.source_head = run.head
    else:
        backbone.reinit()
    return backbone


__all__ = ["ENGINES", "EXPORT_DIR", "OnnxModel", "Run", "default_onnx", "dump_config", "load_run", "run_backbone",
           "save_model", "write_history", "write_json"]
