"""headstart: transfer learning with pretrained networks — choose, adapt, measure, ship.

>>> import headstart
>>> run = headstart.fit("demo-text", model="minilm", strategy="linear", out="runs/topics")
>>> run.predict(["the striker scored twice before half time"])[0]["label"]
'sport'

``import headstart`` loads no torch: each public name is imported the first time it is used (PEP 562),
so ``headstart --help`` and scripts that only read a config start at once.
"""

from __future__ import annotations

import importlib
import os as _os
import tempfile as _tempfile
from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any

# Library-wide caches go to a temp dir unless the user chose otherwise (never their home).
_os.environ.setdefault("MPLCONFIGDIR", str(_Path(_tempfile.gettempdir()) / "headstart-matplotlib"))
_os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_Path(_tempfile.gettempdir()) / "headstart-torchinductor"))

from .backbones import declare_family  # noqa: E402
from .errors import HeadstartError  # noqa: E402

declare_family("run", f"{__name__}.run")  # `run:DIR`: the backbone of an earlier run (`headstart.run` registers it)

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "Dataset": "data",
    "FitConfig": "config",
    "Run": "run",
    "compare": "tasks.compare",
    "distance": "tasks.distance",
    "fit": "tasks.fit",
    "list_backbones": "backbones",
    "list_strategies": "training.strategies",
    "load_data": "data",
    "load_run": "run",
    "rank": "tasks.rank",
}

if TYPE_CHECKING:
    from .backbones import list_backbones
    from .config import FitConfig
    from .data import Dataset, load_data
    from .run import Run, load_run
    from .tasks.compare import compare
    from .tasks.distance import distance
    from .tasks.fit import fit
    from .tasks.rank import rank
    from .training.strategies import list_strategies


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'headstart' has no attribute {name!r}")
    # The strategies register first (with the adapters a saved run may need, e.g. LoRA, and FitConfig's options).
    importlib.import_module(".training.strategies", __name__)
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def load(path: str | _Path, trust_code: bool | str = False) -> Run:
    """Load a run folder written by `fit` (`load_run`, after the strategies have registered).

    Args:
        path: The run folder.
        trust_code: Whether a ``py:`` factory the run records may be imported: ``True`` when its file's sha256
            is the one recorded at fit, ``"any"`` whatever it is. Without it, such a run that has an ONNX export
            predicts through the export, and one without is refused (docs/security.md).

    Returns:
        The `Run`.

    Examples:
        >>> import headstart
        >>> _ = headstart.fit("demo-text", model="minilm", strategy="linear", out="runs/topics")
        >>> headstart.load("runs/topics").predict(["a sunny weekend ahead"])[0]["label"]
        'weather'
    """
    return __getattr__("load_run")(path, trust_code)  # after the strategies, which register the adapters a run may need


__all__ = [
    "Dataset",
    "FitConfig",
    "HeadstartError",
    "Run",
    "__version__",
    "compare",
    "distance",
    "fit",
    "list_backbones",
    "list_strategies",
    "load",
    "load_data",
    "rank",
]
