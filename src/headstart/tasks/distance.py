"""`distance`: how far apart two datasets lie in one backbone's feature space.

Both datasets go through the same backbone (features cached like any other
extraction); every measure in ``headstart.transferability`` is computed and a
2-D picture of both domains is saved beside the numbers. Given one dataset,
the two domains are two random halves of it: the null case every distance
should call near zero, and the scale against which a real pair is read.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import transferability as tr
from .._io import atomic_write_text, prepare_output_dir
from ..backbones import build_backbone
from ..data import Dataset, load_data
from ..errors import ConfigError, kind_of
from ..features import default_cache_dir, extract

HELP = {
    "centroid_distance": "Euclidean distance between the feature means (scale of this model's features)",
    "mmd2_linear": "unbiased linear-kernel MMD^2 (squared distance of the means, bias-corrected)",
    "p_value_linear": "permutation test of the linear MMD: high = the domains are indistinguishable",
    "mmd2_rbf": "unbiased Gaussian-kernel MMD^2, median-heuristic bandwidth: all moments",
    "p_value_rbf": "permutation test of the RBF MMD",
    "mmd2_multi": "unbiased MMD^2 averaged over five Gaussian kernels (0.25x to 4x the mean squared distance): "
                  "what the mmd strategy reduces",
    "linear_cka": "linear CKA of the two feature covariance structures: 1 = same directions of variation",
    "a_distance": "proxy A-distance 2(1-2 err) of a domain classifier: 0 = inseparable, 2 = separable",
    "domain_classifier_error": "held-out error of that domain classifier (0.5 = chance)",
}


def _load_all(data: str | Path | Dataset, seed: int, **kw: Any) -> Dataset:
    return data if isinstance(data, Dataset) else load_data(data, seed=seed, **kw)


def _halves(n: int, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified random split of 0..n-1 into two halves."""
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a.append(idx[: len(idx) // 2])
        b.append(idx[len(idx) // 2:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def distance(
    source: str | Path | Dataset,
    target: str | Path | Dataset | None = None,
    *,
    model: str,
    weights: str | None = None,
    seed: int = 0,
    permutations: int = 200,
    max_points: int = 1500,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Distances between two datasets in a model's feature space.

    All examples of each dataset are used; labels are ignored.

    Args:
        source: Data as in `fit`, or a `Dataset`.
        target: The other data; None compares two random halves of ``source`` (the null case).
        model: The backbone whose features are compared (any model string).
        weights: A local weights file for it.
        seed: Seeds the subsamples, the halves and the permutations.
        permutations: Permutations of the MMD tests.
        max_points: At most this many examples of each dataset.
        batch_size: Examples per forward pass.
        cache_dir: The feature cache (default ``runs/.cache``).
        out: A folder for ``distance.json``, ``domains.png`` (PCA and t-SNE) and ``report.html``.
        overwrite: Replace an existing report folder.

    Returns:
        A dict: ``distances`` (centroid distance, linear and RBF MMD with permutation p-values, linear CKA,
        proxy A-distance), ``help`` (what each means), ``n_source``, ``n_target``, ``seconds``, ``path``.

    Examples:
        >>> import headstart
        >>> d = headstart.distance("demo-text", model="minilm")
        >>> d["distances"]["p_value_rbf"] > 0.05    # two halves of one dataset: no shift
        True
    """
    t0 = time.perf_counter()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out_dir = prepare_output_dir(out, overwrite=overwrite, markers=("distance.json",), what="a headstart distance report") if out else None
    backbone = build_backbone(model, weights=weights, pretrained=True)
    src = _load_all(source, seed)
    feats_s = np.asarray(_features(backbone, src, folder, batch_size, "source"), dtype=np.float64)
    if target is None:
        a, b = _halves(len(src.items), src.y, seed)
        feats_s, feats_t = feats_s[a], feats_s[b]
        names = (f"{src.name} (half A)", f"{src.name} (half B)")
    else:
        tgt = _load_all(target, seed)
        if tgt.modality != src.modality:
            raise ConfigError(f"source holds {src.modality}s but target holds {tgt.modality}s: compare like with like")
        feats_t = np.asarray(_features(backbone, tgt, folder, batch_size, "target"), dtype=np.float64)
        names = (src.name, tgt.name)
    lin = tr.mmd(feats_s, feats_t, kernel="linear", permutations=permutations, max_points=max_points, seed=seed)
    rbf = tr.mmd(feats_s, feats_t, kernel="rbf", permutations=permutations, max_points=max_points, seed=seed)
    pad = tr.proxy_a_distance(feats_s, feats_t, seed=seed)
    dists = {
        "centroid_distance": tr.centroid_distance(feats_s, feats_t),
        "mmd2_linear": lin["mmd2"], "p_value_linear": lin["p_value"],
        "mmd2_rbf": rbf["mmd2"], "p_value_rbf": rbf["p_value"],
        "mmd2_multi": float(tr.multi_kernel_mmd2(*_at_most(feats_s, feats_t, max_points, seed))),
        "linear_cka": tr.linear_cka(feats_s, feats_t),
        **pad,
    }
    result: dict[str, Any] = {
        "source": names[0], "target": names[1], "model": model, "weights": weights,
        "n_source": int(len(feats_s)), "n_target": int(len(feats_t)), "permutations": permutations,
        "rbf_bandwidth": rbf["bandwidth"], "distances": dists, "help": HELP,
        "seconds": round(time.perf_counter() - t0, 2), "path": str(out_dir) if out_dir else None,
    }
    if out_dir is not None:
        from ..report import plot_domains, write_distance_report

        plot_domains(feats_s, feats_t, names, out_dir / "domains.png", seed=seed)
        atomic_write_text(out_dir / "distance.json", json.dumps(result, indent=2))
        write_distance_report(out_dir, result)
    return result


def _at_most(s: np.ndarray, t: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each side subsampled to ``n`` rows (an O(n^2) kernel)."""
    rng = np.random.default_rng(seed)
    return tuple(x[np.sort(rng.choice(len(x), n, replace=False))] if len(x) > n else x for x in (s, t))  # type: ignore[return-value]


def _features(backbone: Any, ds: Dataset, folder: Path, batch_size: int, role: str) -> np.ndarray:
    if backbone.modality != ds.modality:
        raise ConfigError(f"option --model: {kind_of(backbone.modality)} cannot embed the {role} data ({ds.modality}s)")
    feats, _ = extract(backbone, ds.items, ds.fingerprint(), folder, batch_size=batch_size, source=ds.name)
    return feats


def default_out(source: str, target: str | None, model: str) -> Path:
    def stem(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(s).rstrip("/")).stem or str(s))

    tail = stem(target) if target else "halves"
    return Path("runs") / f"distance-{stem(source)}-{tail}-{stem(model.split(':')[-1])}"


__all__ = ["distance"]
