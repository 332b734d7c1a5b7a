"""The model card of a run: ``README.md`` in the run folder, in the Hugging Face model-card layout (YAML metadata
with a ``model-index`` of the held-out results, then the usual sections), written from what the run recorded.

What it states is measured, not boilerplate: the held-out figures with the size of the split they come from
(and a 95% interval for accuracy), the calibration, copies found across the splits, the cross-validated
spread when there is one, how the data was read and split, and the command that fits the run again.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

import yaml

from ..targets import get_task_type
from ._html import fmt, label

PIPELINE_TAGS = {("image", "regression"): "image-feature-extraction", ("text", "regression"): "text-classification"}


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion ``p`` measured on ``n`` examples."""
    if n <= 0:
        return math.nan, math.nan
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def reproduce(config: dict[str, Any]) -> str:
    """The command that fits this run again (every option that differs from the default, resolved values included)."""
    from ..config import FitConfig

    default = FitConfig().to_dict()
    parts = ["headstart", "fit", str(config.get("data", ""))]
    skip = {"data", "out", "name", "overwrite", "resume", "options"}
    for k, v in config.items():
        if k in skip or k not in default or v == default[k] or v is None:
            continue
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else f"--no-{k.replace('_', '-')}")
        else:
            parts.extend(x for item in (v if isinstance(v, list) else [v]) for x in (flag, str(item)))
    for k, v in (config.get("options") or {}).items():
        parts.extend(x for item in (v if isinstance(v, list) else [v]) for x in ("--" + k.replace("_", "-"), str(item)))
    return shlex.join(parts)


def _metadata(config: dict[str, Any], metrics: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    modality, task = data.get("modality", "image"), data.get("task", "multiclass")
    pipeline = PIPELINE_TAGS.get((modality, task), f"{modality}-classification")
    test = metrics.get("test", {})
    results = [{"type": k, "value": round(float(test[k]), 4), "name": f"held-out {label(k).lower()}"}
               for k in (("score",) if task == "multitask" else get_task_type(task).headline) if isinstance(test.get(k), (int, float))]
    meta: dict[str, Any] = {
        "library_name": "headstart", "pipeline_tag": pipeline,
        "tags": ["transfer-learning", str(config.get("strategy")), modality, task],
        "base_model": str(config.get("model")),
    }
    if results:
        meta["model-index"] = [{"name": Path(str(config.get("out") or "run")).name, "results": [{
            "task": {"type": pipeline}, "dataset": {"name": str(data.get("name")), "type": str(config.get("data"))},
            "metrics": results}]}]
    return meta


def model_card(config: dict[str, Any], metrics: dict[str, Any], data: dict[str, Any]) -> str:
    """The text of README.md."""
    test, fit, val = metrics.get("test", {}), metrics.get("fit", {}), metrics.get("val", {})
    task, modality = data.get("task", "multiclass"), data.get("modality", "image")
    names = data.get("classes", [])
    name = Path(str(config.get("out") or "run")).name
    lines = ["---", yaml.safe_dump(_metadata(config, metrics, data), sort_keys=False).strip(), "---", "",
             f"# {name}", "",
             f"A {task} {modality} model: `{config.get('model')}` adapted by headstart's `{config.get('strategy')}` "
             f"strategy to **{data.get('name')}** ({len(names)} {'classes' if task in ('binary', 'multiclass') else 'names'}: "
             f"{', '.join(map(str, names[:20]))}{', ...' if len(names) > 20 else ''}).", ""]
    lines += ["## Intended use", "",
              f"Predicting {', '.join(map(str, names[:8]))}{'...' if len(names) > 8 else ''} for {modality}s like those "
              f"of {data.get('name')}, with `headstart predict {name} INPUT` or `headstart serve {name}`. It has been "
              "evaluated on nothing but the held-out split below: check it on your own data before relying on it.", ""]
    lines += ["## Results (held-out split)", ""]
    n = int(test.get("n") or 0)
    if test:
        lines += ["| figure | value |", "|---|---|"]
        keys = ("score",) if task == "multitask" else get_task_type(task).headline
        for k in (*keys, "log_loss"):
            if isinstance(test.get(k), (int, float)):
                lines.append(f"| {label(k)} | {fmt(k, test[k])} |")
        lines.append(f"| Examples | {n:,} |")
        if isinstance(test.get("accuracy"), float) and n:
            lo, hi = wilson(test["accuracy"], n)
            lines.append(f"| Accuracy, 95% interval (Wilson) | {100 * lo:.1f}% to {100 * hi:.1f}% |")
        lines.append("")
    else:
        lines += ["No held-out split was scored.", ""]
    cv = metrics.get("cv", {}).get("figures", {}).get("score")
    if cv:
        lines += [f"{metrics['cv']['k']}-fold cross-validation on the training part: {cv['mean']:.4f} ± {cv['std']:.4f} "
                  f"(95% interval {cv['ci95_low']:.4f} to {cv['ci95_high']:.4f}).", ""]
    lines += ["## Limitations", ""]
    limits = []
    if n and n < 500:
        limits.append(f"The held-out split has {n} examples: one example moves accuracy by {100 / n:.1f} points.")
    n_train = int(data.get("n_train") or 0)
    if n_train and names and task in ("binary", "multiclass"):
        limits.append(f"Trained on {n_train:,} examples, about {n_train / len(names):.0f} per class.")
    cal = metrics.get("calibration")
    if cal:
        t = cal.get("temperature")
        limits.append(f"Calibration: expected calibration error {100 * cal['ece']:.1f}% held out"
                      + (f"; a temperature of {t['value']:.2f} (fitted on the selection split) would bring it to "
                         f"{100 * t['ece']:.1f}%." if t else "."))
    leak = data.get("leakage") or {}
    if leak.get("exact") or leak.get("near"):
        limits.append(f"{leak['exact']} exact and {leak['near']} near copies of held-out examples were found on the "
                      + ("training side and dropped." if leak.get("dropped") else "training side: the held-out figure "
                         "is flattered (refit with --dedupe)."))
    if data.get("skipped"):
        limits.append(f"{data['skipped']} unreadable files or unusable rows were skipped (metrics.json lists them).")
    limits.append("Biases of the pretrained backbone and of this data carry over; nothing here measures them.")
    lines += [f"- {x}" for x in limits] + [""]
    lines += ["## Training data", "",
              f"`{config.get('data')}`: {data.get('n_train')} training, {data.get('n_val')} selection and "
              f"{data.get('n_test')} held-out examples. Epochs and every other choice were made on the selection split; "
              "the held-out split was scored once.", ""]
    lines += ["## Training procedure", "", "| setting | value |", "|---|---|"]
    for k in ("model", "strategy", "epochs", "lr", "batch_size", "weight_decay", "freeze", "augment", "seed", "precision"):
        if config.get(k) is not None:
            lines.append(f"| {label(k)} | {config[k]} |")
    for k, v in (config.get("options") or {}).items():
        lines.append(f"| {k} | {v} |")
    if fit.get("wall_seconds") is not None:
        lines.append(f"| Wall time | {fmt('wall_seconds', fit['wall_seconds'])} |")
    if val.get("score") is not None:
        lines.append(f"| Selection-split {str(val.get('score_name', 'score')).replace('_', ' ')} | {val['score']:.4f} |")
    lines += ["", "Fit it again:", "", "```bash", reproduce(config), "```", ""]
    lines += ["## How to use", "", "```python", "import headstart", "",
              f"run = headstart.load({str(config.get('out') or name)!r})",
              "print(run.predict([...]))  # image paths or arrays, or texts", "```", ""]
    return "\n".join(lines)


def write_model_card(run_dir: Path, config: dict[str, Any], metrics: dict[str, Any], data: dict[str, Any]) -> Path:
    from .._io import atomic_write_text

    out = run_dir / "README.md"
    atomic_write_text(out, model_card(config, metrics, data))
    return out
