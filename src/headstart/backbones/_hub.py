"""Offline first: decide in seconds whether hub weights can be had, before a library retries for a minute.

Offline, ``timm.create_model(pretrained=True)`` and ``from_pretrained`` retry the network with back-off for
about 46 s before failing. headstart instead looks in the local Hugging Face cache first and, when the files
are not there, tries one connection to the hub with a short timeout: unreachable means an immediate error that
says where the cache is and how to give weights by hand (``--weights FILE``, a local folder).
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import HeadstartError

PROBE_TIMEOUT = 3.0  # seconds for one TCP connection to the hub: a firewall that drops packets costs no more
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm downloads, in its order of preference
TIMM_FIX = "pass --weights FILE for a local checkpoint, or --no-pretrained for random init"
HF_FIX = "give a local model folder (hf:/path/to/dir) or use `minilm`, which needs no network"


def cache_dir() -> str:
    """Where downloaded hub files are kept (``HF_HUB_CACHE`` / ``HF_HOME``, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_file(repo_id: str, filenames: tuple[str, ...]) -> str | None:
    """The local path of the first of ``filenames`` already downloaded for ``repo_id``, or None."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str):
            return found
    return None


@functools.lru_cache(maxsize=None)
def hub_reachable() -> bool:
    """One TCP connection to the hub's host (through ``HTTPS_PROXY`` when one is set); cached per process."""
    import os

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy if proxy else constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=PROBE_TIMEOUT).close()
    except OSError:
        return False
    return True


def unreachable(model: str, source: str, fix: str) -> HeadstartError:
    """The error for hub weights that are neither cached nor downloadable."""
    from huggingface_hub import constants

    return HeadstartError(
        f"{model}: the pretrained weights ({source}) are not in the local cache ({cache_dir()}) and the hub "
        f"({constants.ENDPOINT}) cannot be reached; {fix}"
    )


def preflight_timm(name: str, weights: str | None, pretrained: bool) -> None:
    """Before timm (and torch) are imported: hub weights of this architecture are in the cache (any tag: the
    exact one is checked when the model is built), or the hub answers; else the error at once."""
    if not name or not pretrained or weights is not None:
        return
    base = name.split(".")[0]
    cache = Path(cache_dir())
    for repo in cache.glob(f"models--timm--{base}*"):  # models--timm--<name>[.<tag>]: the HF cache's folders
        if repo.name.split("--")[-1].split(".")[0] == base and any(
                p.name in WEIGHT_FILES for p in repo.glob("snapshots/*/*")):
            return
    if not hub_reachable():
        raise unreachable(f"timm:{name}", f"timm/{name}", TIMM_FIX)


def preflight_hf(name: str, weights: str | None, pretrained: bool) -> None:
    """Before transformers (and torch) are imported: a local folder, a cached model, or a hub that answers."""
    if not name or weights is not None or Path(name).expanduser().is_dir():
        return
    if cached_file(name, ("config.json",)) is None and not hub_reachable():
        raise unreachable(f"hf:{name}", name, HF_FIX)
