"""What the documentation's executed blocks call: run a command, show a plot, show a table.

A tutorial page shows the commands a user types and what they print. Its blocks (``exec="on"``, source hidden)
call `sh`, which runs the ``headstart`` command line in the build's process (through Click's test runner: the
same parser, the same code, without paying Python's and torch's start-up once per command) and returns the
command and its output as a console block, for the block to ``print`` (markdown-exec shows what a block
prints). A command that fails fails the build (strict mode turns the block's error into a failure), unless
the page says the failure is the point (``code=1``).
"""

from __future__ import annotations

import base64
import contextlib
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_shown: dict[tuple[str, ...], str] = {}  # command -> its block: a command two pages show runs once per build
_ports: list[int] = []  # the port of the `server` running now
seconds: dict[str, float] = {}  # command -> its wall time in this build (the hooks log them at the end)


def reset() -> None:
    """Forget the commands run so far (a new build starts in a new, empty folder)."""
    _shown.clear()
    seconds.clear()


def sh(command: str, *, code: int = 0) -> str:
    """Run ``command`` (one ``headstart ...`` line; ``\\`` continues it); the command and its output in Markdown.

    ``code`` is the exit status the page expects (2: a mistake the command refuses); another one raises, which
    fails the build. The same command shown on two pages (a source model that a second tutorial starts from)
    runs once; the second page shows the first run's output.
    """
    from typer.testing import CliRunner

    from headstart.cli import app

    words = shlex.split(command.replace("\\\n", " "))
    if words[:1] != ["headstart"]:
        raise ValueError(f"sh() runs headstart commands only, not {command!r}")
    if tuple(words) in _shown:
        return _shown[tuple(words)]
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, words[1:], catch_exceptions=False)
    seconds[" ".join(words)] = time.perf_counter() - t0
    output = _ANSI.sub("", res.output).rstrip()
    if res.exit_code != code:
        raise RuntimeError(f"`{command}` exited with {res.exit_code}, the page expects {code}:\n{output}")
    lines = "\n".join(line.rstrip() for line in output.splitlines())
    prompt = _wrapped(words)
    _shown[tuple(words)] = f"```console\n$ {prompt}\n{lines}\n```\n"
    return _shown[tuple(words)]


def _wrapped(words: list[str], width: int = 88) -> str:
    """The command as a reader would type it, broken with ``\\`` before an option when a line gets long."""
    lines = [shlex.quote(words[0])]
    for w in words[1:]:
        q = shlex.quote(w)
        if len(lines[-1]) + 1 + len(q) > width and w.startswith("--"):
            lines[-1] += " \\"
            lines.append("    " + q)
        else:
            lines[-1] += " " + q
    return "\n".join(lines)


def image(path: str | Path, alt: str, width: int = 640) -> str:
    """A PNG the example wrote, inlined in the page (the run folders are removed after the build)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{alt}" width="{width}" src="data:image/png;base64,{data}">\n'


def table(rows: list[dict[str, Any]], digits: int = 3) -> str:
    """A Markdown table of ``rows`` (dicts with the same keys, in column order); floats rounded."""
    columns = list(rows[0]) if rows else []

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "n/a" if v != v else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def digit_folders(root: str | Path = "digits") -> Path:
    """The image tutorials' data, written once per build from scikit-learn's 8x8 digits (1,797 images, upscaled
    when loaded): ``low/0..4`` (every image of digits 0-4, the source task), ``high/train/5..9`` and
    ``high/val/5..9`` (digits 5-9, a 70/30 split; ``val/`` is the reported split) and ``high-unlabeled/`` (the
    ``high/train`` images, without their class folders). A second domain for domain adaptation: the digits 0-4
    in negative (light ink on dark becomes dark ink on light), half of them unlabeled in ``inverted-adapt/``, the
    other half labeled in ``inverted-eval/0..4``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    if (root / "done").is_file():
        return root
    d = load_digits()
    rng = np.random.default_rng(0)
    for i in rng.permutation(len(d.target)):
        y = int(d.target[i])
        pixels = Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8))
        if y < 5:
            folders = [root / "low" / str(y)]
            negative = Image.fromarray(255 - np.asarray(pixels))
            other = root / ("inverted-adapt" if rng.random() < 0.5 else f"inverted-eval/{y}")
            other.mkdir(parents=True, exist_ok=True)
            negative.save(other / f"{i:04d}.png")
        elif rng.random() < 0.7:
            folders = [root / "high" / "train" / str(y), root / "high-unlabeled"]
        else:
            folders = [root / "high" / "val" / str(y)]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            pixels.save(folder / f"{i:04d}.png")
    (root / "done").touch()
    return root


def prepared(command: str) -> None:
    """A run that another page shows being made (a teacher, a source model), made here if that page has not been
    built yet (pages are built in file order, not in the order of the navigation). Nothing is shown; the page
    links to the one that shows it."""
    sh(command)


@contextlib.contextmanager
def server(run: str | Path, *flags: str) -> Iterator[None]:
    """``headstart serve RUN`` in a process of its own while the block runs; `curl` reaches it as localhost:8000
    (the real port is a free one, so that a build never collides with a server the reader runs)."""
    import socket
    import subprocess
    import sys
    import tempfile
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a server that logs much never blocks on it
    proc = subprocess.Popen([sys.executable, "-m", "headstart", "serve", str(run), "--port", str(port), *flags],
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"headstart serve {run} stopped: {log.read()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        _ports.append(port)
        yield
    finally:
        if _ports and _ports[-1] == port:
            _ports.pop()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def curl(command: str) -> str:
    """Run ``command`` (a ``curl ... localhost:8000/...`` line) against the `server` of the block; the command
    and its answer (JSON indented) in Markdown."""
    import json
    import subprocess

    if not _ports:
        raise RuntimeError("curl() needs a running server: call it inside `with server(...)`")
    words = shlex.split(command)
    real = [w.replace("localhost:8000", f"127.0.0.1:{_ports[-1]}") for w in words]
    res = subprocess.run(real, capture_output=True, text=True, timeout=60, check=True)
    try:
        answer = json.dumps(json.loads(res.stdout), indent=1)
    except ValueError:
        answer = res.stdout.rstrip()
    return f"```console\n$ {command}\n{answer}\n```\n"
