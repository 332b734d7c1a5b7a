"""The toolkit's own error type.

Every mistake a user can make (a bad path, an unreadable file, a wrong option
value) raises :class:`HeadstartError` with a one-line message that names the
file, row or option and says what to do. The CLI prints that line without a
traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations


class HeadstartError(Exception):
    """A user-facing error: the message names the culprit and the fix."""


class DataError(HeadstartError):
    """The data given cannot be used as it is (file, row or folder named)."""


class ConfigError(HeadstartError):
    """An option has a value the toolkit cannot work with."""


class UntrustedCode(HeadstartError):
    """A run folder names code (a ``py:`` factory) that may not run at the trust level in force."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a fit: the message says which checkpoint is kept and how to resume."""


def did_you_mean(name: str, choices: list[str], show: str = "'{}'") -> str:
    """``"did you mean 'x'? "`` for the choice closest to a near miss (``show`` formats it), or ``""``."""
    import difflib

    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean {show.format(close[0])}? " if close else ""


def kind_of(modality: str) -> str:
    """'an image model' / 'a text model', for messages."""
    return f"{'an' if modality[:1] in 'aeiou' else 'a'} {modality} model"
