"""Why did the model answer that? Attributions through Captum, written beside the run.

* **Images**: Grad-CAM (Selvaraju et al., 2017) on the backbone's last convolution, upsampled to the input: where
  the evidence for the class lies, coarse but cheap (one forward and backward pass). Integrated gradients
  (Sundararajan et al., 2017) on the pixels, from the mean image (0 after normalisation), summed over the
  colour channels, its positive part (the evidence for the class, as Grad-CAM's map): finer, and for networks
  without convolutions. ``method="auto"`` takes Grad-CAM when there is a convolution.
* **Texts** (a transformers backbone): layer integrated gradients on the token embeddings, from a baseline of
  padding tokens between the special tokens, summed over the embedding: each token's share of the class's
  score. Positive tokens pushed towards the class, negative ones away.

Each attribution explains one class: the predicted one unless ``target`` names another. The outputs are PNG
files (the image, and the heat map over it) and one HTML page for texts (tokens coloured by attribution),
written to ``RUN/explain/``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..report import tokens_html

METHODS = ("auto", "gradcam", "ig")
EXPLAIN_DIR = "explain"


@dataclass
class Attribution:
    """One example's explanation of class ``target``: a heat map [H, W] in [0, 1] (images), or per-token scores."""

    ref: str
    target: str
    probability: float
    method: str
    heatmap: np.ndarray | None = None
    tokens: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    convergence: float | None = None  # integrated gradients' completeness error (small = the path was fine enough)
    view: np.ndarray | None = None  # the image as the model saw it (resized, cropped): what the heat map lies on


def last_conv(module: nn.Module) -> nn.Module | None:
    """The last 2-D convolution of ``module`` in definition order (Grad-CAM's layer), or None."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else None


def _classes_of(head: Any, names: list[str], target: str | int | None, probs: torch.Tensor) -> list[int]:
    if target is None:
        return probs.argmax(1).tolist()
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit() and target not in names):
        idx = int(target)
    elif target in names:
        idx = names.index(target)
    else:
        raise ConfigError(f"option --target: {target!r} is not a class of this run; classes: {', '.join(names)}")
    if not 0 <= idx < probs.shape[1]:
        raise ConfigError(f"option --target: class number {idx} is out of range (0..{probs.shape[1] - 1})")
    return [idx] * probs.shape[0]


def explain_images(backbone: Any, head: Any, items: list[np.ndarray], refs: list[str], names: list[str],
                   method: str = "auto", target: str | int | None = None, steps: int = 32) -> list[Attribution]:
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

    conv = last_conv(backbone)
    if method == "auto":
        method = "gradcam" if conv is not None else "ig"
    if method == "gradcam" and conv is None:
        raise ConfigError("option --method gradcam: this backbone has no convolution; use --method ig")
    backbone.eval()
    head.eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return head.outputs(head(backbone.forward_features(x)))

    x = backbone.preprocess(train=False)(items).float()
    with torch.no_grad():
        probs = forward(x)
    targets = _classes_of(head, names, target, probs)
    out = []
    for i in range(len(items)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        conv_err = None
        if method == "gradcam":
            a = LayerGradCam(forward, conv).attribute(xi, target=targets[i], relu_attributions=True)
            a = LayerAttribution.interpolate(a, tuple(xi.shape[-2:]), interpolate_mode="bilinear")[0, 0]
        else:
            a, delta = IntegratedGradients(forward).attribute(xi, baselines=torch.zeros_like(xi), target=targets[i],
                                                              n_steps=steps, return_convergence_delta=True)
            a, conv_err = a[0].sum(0).clamp(min=0), float(delta.abs().item())  # the evidence for the class
        heat = a.detach().numpy()
        heat = heat / heat.max() if heat.max() > 0 else heat
        out.append(Attribution(refs[i], names[targets[i]], float(probs[i, targets[i]]), method, heatmap=heat,
                               convergence=conv_err, view=model_view(backbone, x[i])))
    return out


def model_view(backbone: Any, x: torch.Tensor) -> np.ndarray:
    """A preprocessed image [3, H, W] back in uint8 pixels (its normalisation undone): the crop the model saw."""
    cfg = getattr(backbone, "data_config", None) or {}
    mean = torch.tensor(cfg.get("mean", (0.0, 0.0, 0.0))).view(3, 1, 1)
    std = torch.tensor(cfg.get("std", (1.0, 1.0, 1.0))).view(3, 1, 1)
    img = (x.detach().float() * std + mean).clamp(0, 1) * 255
    return img.permute(1, 2, 0).round().to(torch.uint8).contiguous().numpy()


def embeddings_of(backbone: Any) -> nn.Module:
    model = getattr(backbone, "model", None)
    if model is None or not hasattr(model, "get_input_embeddings"):
        raise ConfigError(f"explain: token attributions need a transformers backbone (its token embeddings); "
                          f"{backbone.spec.get('name', 'this backbone')} has none")
    return model.get_input_embeddings()


def explain_texts(backbone: Any, head: Any, items: list[Any], refs: list[str], names: list[str],
                  target: str | int | None = None, steps: int = 32) -> list[Attribution]:
    from captum.attr import LayerIntegratedGradients

    emb = embeddings_of(backbone)
    tok = backbone.tokenizer
    batcher = backbone.preprocess(train=False)
    backbone.eval()
    head.eval()
    out = []
    for item, ref in zip(items, refs):
        batch = batcher([item])
        ids = batch["input_ids"]
        rest = {k: v for k, v in batch.items() if k != "input_ids"}

        def forward(input_ids: torch.Tensor, **kw: torch.Tensor) -> torch.Tensor:
            n = input_ids.shape[0]
            return head.outputs(head(backbone.forward_features({"input_ids": input_ids,
                                                               **{k: v.expand(n, -1) for k, v in rest.items()}})))

        with torch.no_grad():
            probs = forward(ids)
        t = _classes_of(head, names, target, probs)[0]
        special = torch.tensor([i in tok.all_special_ids for i in ids[0].tolist()])
        base = torch.where(special, ids[0], torch.full_like(ids[0], tok.pad_token_id or 0))[None]
        a, delta = LayerIntegratedGradients(forward, emb).attribute(ids, baselines=base, target=t, n_steps=steps,
                                                                    return_convergence_delta=True)
        scores = a[0].sum(-1).detach()
        scores[special] = 0.0
        out.append(Attribution(ref, names[t], float(probs[0, t]), "integrated gradients (token embeddings)",
                               tokens=tok.convert_ids_to_tokens(ids[0].tolist()), scores=scores.tolist(),
                               convergence=float(delta.abs().item())))
    return out


def overlay(item: np.ndarray, heat: np.ndarray, path: Path, title: str) -> Path:
    """The image and the heat map over it, side by side, as a PNG."""
    from matplotlib import colormaps
    from PIL import Image

    img = Image.fromarray(item if item.shape[-1] == 3 else np.repeat(item[..., :1], 3, -1)).convert("RGB")
    h = Image.fromarray((heat * 255).astype(np.uint8)).resize(img.size, Image.BILINEAR)
    colour = (colormaps["jet"](np.asarray(h) / 255.0)[..., :3] * 255).astype(np.uint8)
    mixed = (0.55 * np.asarray(img) + 0.45 * colour).astype(np.uint8)
    from ..report import subplots

    fig, axes = subplots(1, 2, figsize=(6.4, 3.4))
    for ax, shown, name in zip(axes, (np.asarray(img), mixed), ("input", "attribution")):
        ax.imshow(shown)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def explain(backbone: Any, head: Any, modality: str, items: list[Any], refs: list[str], names: list[str],
            method: str = "auto", target: str | int | None = None, steps: int = 32) -> list[Attribution]:
    """Attributions of ``items`` by the modality's method (see the module docstring)."""
    if method not in METHODS:
        raise ConfigError(f"option --method: {method!r} is not one of {', '.join(METHODS)}")
    if steps < 2:
        raise ConfigError(f"option --steps: {steps} must be at least 2")
    if modality == "image":
        return explain_images(backbone, head, items, refs, names, method, target, steps)
    if method == "gradcam":
        raise ConfigError("option --method gradcam: is for images; texts are explained by integrated gradients (ig)")
    return explain_texts(backbone, head, items, refs, names, target, steps)


def write_explanations(folder: Path, attributions: list[Attribution], items: list[Any], title: str) -> list[Path]:
    """One PNG per image (``<n>-<file stem>.png``) or one HTML page for every text; returns the files written."""
    import re

    from .._io import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    texts = []
    for n, (a, item) in enumerate(zip(attributions, items)):
        caption = f"{a.target} ({100 * a.probability:.0f}%), {a.method}: {a.ref}"
        if a.heatmap is not None:
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(a.ref).stem)[:60]
            written.append(overlay(a.view if a.view is not None else item, a.heatmap, folder / f"{n:03d}-{stem}.png", caption))
        else:
            texts.append(f"<h3>{html.escape(a.ref)}</h3><p>{html.escape(caption)}</p><p>{tokens_html(a.tokens, a.scores)}</p>")
    if texts:
        from ..report import page

        out = folder / "texts.html"
        atomic_write_text(out, page(title, f"<h1>{html.escape(title)}</h1><p>Red tokens pushed the answer towards the "
                                    "class shown, blue ones away from it (integrated gradients on the token "
                                    "embeddings; hover for the value).</p>" + "".join(texts)))
        written.append(out)
    return written


def explain_mistakes(run_dir: Path, backbone: Any, head: Any, modality: str, wrong: list[dict[str, Any]],
                     items: list[Any], names: list[str]) -> None:
    """Explain the predicted class of each confidently wrong example (`evaluate.confidently_wrong`): why the
    model believed it. Each entry gains ``explanation``: a heat-map PNG in ``plots/`` (images) or per-token
    scores (texts). Left without one when the backbone cannot be explained this way (no token embeddings)."""
    try:
        got = [explain(backbone, head, modality, [x], [w["ref"]], names, target=w["predicted"])[0]
               for w, x in zip(wrong, items)]
    except ConfigError:
        return
    for n, (w, a, item) in enumerate(zip(wrong, got, items)):
        if a.heatmap is not None:
            png = overlay(a.view if a.view is not None else item, a.heatmap, run_dir / "plots" / f"mistake-{n:02d}.png",
                          f"evidence for {a.target} ({a.method}); true {w['true']}")
            w["explanation"] = {"method": a.method, "png": f"plots/{png.name}"}
        else:
            w["explanation"] = {"method": a.method, "tokens": a.tokens, "scores": [round(x, 5) for x in a.scores]}


__all__ = ["Attribution", "EXPLAIN_DIR", "METHODS", "explain_mistakes", "explain", "explain_images", "explain_texts",
           "last_conv", "overlay", "write_explanations"]
