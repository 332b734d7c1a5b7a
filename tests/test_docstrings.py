"""The public API's docstrings: each says what it takes and returns (Google style) and has an example, and every
example runs, as written, on the built-in data (doctest). The API reference page shows these docstrings."""

from __future__ import annotations

import doctest
import inspect
from pathlib import Path

import pytest

import headstart

# What a user of the library calls: the package's public names, and what they do with a Run and a FitConfig.
PUBLIC = [
    "headstart", "fit", "load", "load_run", "compare", "rank", "distance", "load_data", "list_backbones",
    "list_strategies", "Run", "Dataset", "FitConfig", "Run.predict", "Run.evaluate", "Run.explain", "Run.export",
]


def resolve(name: str) -> object:
    if name == "headstart":
        return headstart
    obj: object = headstart
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def test_the_list_covers_every_public_name() -> None:
    assert set(headstart._PUBLIC) <= set(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_documented_with_arguments_results_and_an_example(name: str) -> None:
    obj = resolve(name)
    doc = inspect.getdoc(obj) or ""
    assert ">>> " in doc, f"{name}: no example"
    if inspect.isfunction(obj):
        params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        if params:
            assert "Args:" in doc, f"{name}: its arguments are not described"
            missing = [p for p in params if not any(line.strip().startswith((f"{p}:", f"**{p}:", f"*{p}:"))
                                                    for line in doc.splitlines())]
            assert not missing, f"{name}: arguments without a description: {missing}"
        assert "Returns:" in doc, f"{name}: what it returns is not described"


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLIC)
def test_the_example_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write runs/ where they run
    # one feature cache for all the examples, as one user's would be
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "docstring-cache"))
    obj = resolve(name)
    tests = [t for t in doctest.DocTestFinder(recurse=False).find(obj, name) if t.examples]
    assert tests, f"{name}: no example found"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0, f"{name}: {runner.failures} of {runner.tries} example lines failed (output above)"
