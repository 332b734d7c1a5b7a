"""headstart: transfer learning with pretrained networks — choose, adapt, measure, ship.

>>> import headstart
>>> run = headstart.fit("photos/", model="timm:resnet18", strategy="linear")   # doctest: +SKIP
>>> run.predict(["new.jpg"])                                                   # doctest: +SKIP
"""

from __future__ import annotations

import os as _os
import tempfile as _tempfile
from pathlib import Path as _Path

# Library-wide caches go to a temp dir unless the user chose otherwise (never their home).
_os.environ.setdefault("MPLCONFIGDIR", str(_Path(_tempfile.gettempdir()) / "headstart-matplotlib"))
_os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_Path(_tempfile.gettempdir()) / "headstart-torchinductor"))

from .backbones import list_backbones  # noqa: E402
from .config import FitConfig  # noqa: E402
from .data import Dataset, load_data  # noqa: E402
from .errors import HeadstartError  # noqa: E402
from .run import Run, load_run  # noqa: E402
from .tasks.compare import compare  # noqa: E402
from .tasks.distance import distance  # noqa: E402
from .tasks.fit import fit  # noqa: E402
from .tasks.rank import rank  # noqa: E402
from .training.strategies import list_strategies  # noqa: E402

__version__ = "0.1.0"


def load(path: str | _Path) -> Run:
    """Load a run directory written by `fit`."""
    return load_run(path)


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
