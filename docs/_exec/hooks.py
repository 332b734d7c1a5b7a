"""MkDocs hooks (mkdocs.yml ``hooks:``): where the documentation's executed examples run.

Every block marked ``exec="on"`` runs in one temporary folder made for the build (its run folders, its feature
cache), removed when the build ends, so that building the site leaves nothing behind in the clone or in /tmp.
The examples share that folder's feature cache: a page that fits on features another page extracted reuses them,
as a user's second fit would. ``docs/_exec`` is on ``sys.path``, so a page imports its helpers with
``from tutorial import sh, image, table`` (see tutorial.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_state: dict[str, str] = {}


def on_config(config: Any, **kwargs: Any) -> Any:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return config


def on_pre_build(config: Any, **kwargs: Any) -> None:
    work = tempfile.mkdtemp(prefix="headstart-docs-")
    _state.update(home=os.getcwd(), work=work)
    env = {"HEADSTART_QUIET": "1", "HEADSTART_CACHE_DIR": str(Path(work) / "cache"), "MPLBACKEND": "Agg",
           "COLUMNS": "90"}  # the width of the command outputs shown (read when the CLI's console is made)
    _state.update({f"env:{k}": os.environ.get(k, "\0") for k in env})
    os.environ.update(env)
    os.chdir(work)
    import tutorial

    tutorial.reset()


def on_post_build(config: Any, **kwargs: Any) -> None:
    import tutorial

    log = logging.getLogger("mkdocs.plugins.headstart")
    for command, s in sorted(tutorial.seconds.items(), key=lambda kv: -kv[1]):
        log.info("executed in %5.1f s: %s", s, command)
    log.info("%d commands executed in %.0f s", len(tutorial.seconds), sum(tutorial.seconds.values()))
    _restore()


def on_build_error(error: Exception, **kwargs: Any) -> None:
    _restore()


def _restore() -> None:
    if "work" not in _state:
        return
    os.chdir(_state.pop("home"))
    shutil.rmtree(_state.pop("work"), ignore_errors=True)
    for key in [k for k in _state if k.startswith("env:")]:
        value = _state.pop(key)
        if value == "\0":
            os.environ.pop(key[4:], None)
        else:
            os.environ[key[4:]] = value
