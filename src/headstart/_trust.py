"""Whether code that a run folder names may run: ``no`` (the default), ``yes`` or ``any``.

A run folder is data: loading it reads YAML, JSON and safetensors and imports
nothing the folder names. A run of a user's ``py:`` factory needs that factory's
code to rebuild its network. It runs only under a trust level set by the caller
(``--trust-code``, ``trust_code=True``), and ``yes`` still refuses a file whose
sha256 differs from the one recorded at fit time; ``any`` accepts it anyway.

The level is a context variable, so that it reaches every place that loads a
run on behalf of one command: `load`, a ``run:`` backbone, a distillation
teacher, a ``rank`` candidate. See docs/security.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from .errors import ConfigError

LEVELS = ("no", "yes", "any")  # in increasing trust
_LEVEL: ContextVar[str] = ContextVar("headstart_trust_code", default="no")


def trust_level(value: bool | str | None) -> str:
    """``False``/``None`` -> ``no``, ``True`` -> ``yes``; the strings themselves pass (an error for others)."""
    if value is None or value is False:
        return "no"
    if value is True:
        return "yes"
    text = str(value).strip().lower()
    if text in LEVELS:
        return text
    raise ConfigError(f"option --trust-code: {value!r} is not one of: (no value) = trust the recorded code when its "
                      "hash matches, any = trust it even when the file changed, no")


def current() -> str:
    """The trust level in force (``no`` unless a caller raised it)."""
    return _LEVEL.get()


def at_least(value: bool | str | None) -> str:
    """The stronger of ``value`` and the level in force."""
    level = trust_level(value)
    return max(level, current(), key=LEVELS.index)


@contextlib.contextmanager
def trusting(value: bool | str | None) -> Iterator[str]:
    """Run the block under trust level ``value`` (``None`` keeps the level in force)."""
    level = current() if value is None else trust_level(value)
    token = _LEVEL.set(level)
    try:
        yield level
    finally:
        _LEVEL.reset(token)


__all__ = ["LEVELS", "at_least", "current", "trust_level", "trusting"]
