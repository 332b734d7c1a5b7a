"""Partial feature caching: run the frozen lowest layer groups once, train only the layers above.

When the lowest N layer groups are frozen (BatchNorm in eval mode) and the training
images are not augmented, every epoch pushes the same inputs through the same frozen
function. Its output is computed once, kept memory-mapped in the feature cache, and
each training step runs only the layers above it.

How this works for any network, without knowing its ``forward``: the frozen part is
cut at the *boundary*, the frozen module whose forward finishes last on a probe
batch. During a cached step every other frozen module is bypassed (returns its
input), the boundary returns the cached tensor, and the network's own forward does
the rest. The cut is verified numerically on the probe batch; where it does not
hold (e.g. a ViT adds position embeddings to the input between frozen modules) the
fit trains without the cache and says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ...backbones import Backbone, Batcher
from ...data import Dataset
from ...features import extract


class _Stop(Exception):
    """Raised from the boundary's hook while caching: the layers above are not needed."""

    def __init__(self, value: torch.Tensor):
        self.value = value


def _units(groups: list[nn.Module]) -> list[nn.Module]:
    """Modules that are called as a whole: a group, or the members of a ModuleList/ModuleDict group."""
    out: list[nn.Module] = []
    for g in groups:
        if isinstance(g, (nn.ModuleList, nn.ModuleDict)):
            out.extend(_units(list(g.children())))
        else:
            out.append(g)
    return out


class _Rows(Batcher):
    """Picklable batcher: cached rows by index -> [B, *shape] tensor (in the backbone's memory format).

    Holds the memory-mapped file by path, so DataLoader workers map it themselves
    instead of receiving a pickled copy of the whole array.
    """

    def __init__(self, path: str, shape: tuple[int, ...], memory_format: torch.memory_format = torch.contiguous_format):
        self.path, self.shape, self.memory_format = path, shape, memory_format
        self.rows = np.load(path, mmap_mode="r")

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "shape": self.shape, "memory_format": self.memory_format}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["shape"], state["memory_format"])

    def __call__(self, idx: list[int]) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.rows[np.asarray(idx)])).view(len(idx), *self.shape)
        return x.contiguous(memory_format=self.memory_format) if x.ndim == 4 else x


class FrozenPrefix:
    """The cut between frozen lower groups and the trained rest of one backbone.

    ``FrozenPrefix.try_build(...)`` returns ``(prefix, None)`` or ``(None, reason)``.
    """

    def __init__(self, backbone: Backbone, units: list[nn.Module], boundary: nn.Module, shape: tuple[int, ...]):
        self.backbone, self.units, self.boundary, self.shape = backbone, units, boundary, shape
        self._value: torch.Tensor | None = None
        self._patched = False

    # -- construction --------------------------------------------------------------
    @classmethod
    def try_build(cls, backbone: Backbone, frozen_groups: list[nn.Module], probe: list[Any]) -> tuple[FrozenPrefix | None, str | None]:
        if not backbone.frozen_cache:
            return None, "only image backbones (text layers also need the attention mask)"
        units = _units(frozen_groups)
        if not units:
            return None, "no frozen layers"
        finished: list[nn.Module] = []
        outputs: dict[int, Any] = {}

        def record(m: nn.Module, _inp: Any, out: Any) -> None:
            finished.append(m)
            outputs[id(m)] = out

        batch = backbone.preprocess(train=False)(probe)
        was_training = backbone.training
        backbone.eval()
        handles = [u.register_forward_hook(record) for u in units]
        try:
            with torch.no_grad():
                reference = backbone.forward_features(batch)
        finally:
            for h in handles:
                h.remove()
        if not finished or not isinstance(outputs[id(finished[-1])], torch.Tensor):
            backbone.train(was_training)
            return None, "the frozen layers' output is not a single tensor"
        boundary = finished[-1]
        cached = outputs[id(boundary)]
        prefix = cls(backbone, units, boundary, tuple(cached.shape[1:]))
        prefix._patch()
        try:
            with torch.no_grad():
                via_cache = prefix.forward(cached)
            ok = via_cache.shape == reference.shape and torch.allclose(via_cache, reference, rtol=1e-3, atol=1e-4)
            reason = None if ok else "the network does not run its frozen layers as one block before the rest"
        except Exception as e:  # a forward that needs the real input between frozen modules
            reason = f"the network's forward needs its input between frozen layers ({e.__class__.__name__})"
        backbone.train(was_training)
        if reason is not None:
            prefix.restore()
            return None, reason
        return prefix, None

    # -- the bypass ----------------------------------------------------------------
    def _patch(self) -> None:
        for unit in self.units:
            original = unit.forward

            def forward(*args: Any, _original: Any = original, _boundary: bool = unit is self.boundary, **kw: Any) -> Any:
                if self._value is None:
                    return _original(*args, **kw)
                return self._value if _boundary else args[0]

            unit.forward = forward  # instance attribute: nn.Module.__call__ finds it first
        self._patched = True

    def restore(self) -> None:
        """Put the modules' own forward back (the saved model must not depend on this object)."""
        if self._patched:
            for unit in self.units:
                unit.__dict__.pop("forward", None)
            self._patched = False

    @contextlib.contextmanager
    def _feeding(self, value: torch.Tensor) -> Iterator[None]:
        self._value = value
        try:
            yield
        finally:
            self._value = None

    def forward(self, cached: torch.Tensor) -> torch.Tensor:
        """Backbone features from the cached boundary output (the layers above run as usual)."""
        dummy = torch.zeros(len(cached), 3, 1, 1, dtype=cached.dtype, device=cached.device)
        with self._feeding(cached):
            return self.backbone.forward_features(dummy)

    # -- the cache -----------------------------------------------------------------
    def cached_rows(self, data: Dataset, cache_dir: Any, batch_size: int) -> tuple[np.ndarray, dict[str, Any]]:
        """The boundary output of every training example, memory-mapped [N, prod(shape)]."""
        width = math.prod(self.shape)

        def upto_boundary(batch: torch.Tensor) -> torch.Tensor:
            def stop(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
                raise _Stop(out)

            handle = self.boundary.register_forward_hook(stop)
            try:
                self.backbone.forward_features(batch)
            except _Stop as s:
                return s.value.reshape(len(s.value), width)
            finally:
                handle.remove()
            raise RuntimeError("the frozen boundary was not reached")  # pragma: no cover - checked in try_build

        items, _ = data.subset(data.train_idx)
        train_key = hashlib.sha256(np.asarray(data.train_idx, dtype=np.int64).tobytes()).hexdigest()[:12]
        n_units = len(self.units)
        return extract(self.backbone, items, f"{data.fingerprint()}|train={train_key}", cache_dir, batch_size,
                       fn=upto_boundary, width=width, tag=f"frozen-prefix:{n_units}:{self.shape}", source=data.name)

    def batcher(self, cache_file: str) -> _Rows:
        return _Rows(cache_file, self.shape, self.backbone.memory_format)
