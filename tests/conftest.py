"""Shared fixtures: tiny real data written on the fly, tiny real models, ../shared detection."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["HEADSTART_QUIET"] = "1"
# Tables printed by the commands are read by the tests: one width for every run, whatever terminal (or none, as in
# pytest-xdist's workers) the suite was started from.
os.environ["COLUMNS"] = "160"
ROOT = Path(__file__).resolve().parents[1]
SUMMARY = pytest.StashKey[list]()  # lines a test leaves for the end of the run (the docs build's figures)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian's, driven by Playwright


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright; skips, with the reason, where either is missing (`make test`
    installs Chromium from the system packages when it can)."""
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    sync = pytest.importorskip("playwright.sync_api")
    with sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def open_page(browser, path: Path, screenshot: str) -> tuple[object, list[str]]:
    """``path`` at 1280 px and what its console and page errors said. ``HEADSTART_SCREENSHOTS=DIR`` also saves a
    full-page screenshot there, named ``screenshot``."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:80]}"))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    folder = os.environ.get("HEADSTART_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / screenshot), full_page=True)
    return page, errors


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Figures that `make test` shows even when quiet: what the docs build executed, and how long it took."""
    for line in config.stash.get(SUMMARY, []):
        terminalreporter.write_line(line)
SHARED = ROOT.parent / "shared" / "data"


def needs_shared(*parts: str):
    """Skip cleanly when ../shared/data (or the named part) is absent, as in a user's clone."""
    path = SHARED.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present (../shared is only on project machines)")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test writes runs and caches under its own temp dir."""
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)


def make_image(kind: int, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A learnable synthetic picture: class 0 = bright disc on the left, class 1 = on the right, 2 = top."""
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cx, cy = [(size * 0.3, size * 0.5), (size * 0.7, size * 0.5), (size * 0.5, size * 0.25)][kind]
    cx += rng.normal(0, 2)
    cy += rng.normal(0, 2)
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (size * 0.18) ** 2
    img[disc] = np.array([220, 200 - 60 * kind, 80 + 60 * kind]) + rng.integers(0, 30, 3)
    return Image.fromarray(img)


def write_image_folder(root: Path, per_class: int = 12, classes: int = 2, seed: int = 0, layout: str = "flat") -> Path:
    rng = np.random.default_rng(seed)
    names = ["left", "right", "top"][:classes]
    parts = {"flat": [("", per_class)], "trainval": [("train", per_class), ("val", max(2, per_class // 2))]}[layout]
    for split, n in parts:
        for k, name in enumerate(names):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                make_image(k, rng).save(d / f"{name}_{i}.png")
    return root


TOPIC_WORDS = {
    "sport": ["goal", "match", "team", "coach", "league", "score", "player", "stadium"],
    "food": ["bake", "recipe", "oven", "flour", "sauce", "taste", "kitchen", "spice"],
}


def write_text_table(path: Path, per_class: int = 20, seed: int = 0, sep: str = ",", header: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["text" + sep + "label"] if header else []
    for label, words in TOPIC_WORDS.items():
        for _ in range(per_class):
            ws = rng.choice(words, size=int(rng.integers(3, 7)))
            lines.append(" ".join(["the"] + list(ws) + ["today"]) + sep + label)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs", per_class=12)


@pytest.fixture
def text_csv(tmp_path: Path) -> Path:
    return write_text_table(tmp_path / "texts.csv")


@pytest.fixture(scope="session")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny CNN trained on a 3-class image task: the pretrained source that image strategies transfer."""
    import headstart

    root = tmp_path_factory.mktemp("source")
    data = write_image_folder(root / "imgs", per_class=20, classes=3, seed=11)
    run = headstart.fit(data, model="scratch:cnn@32", strategy="scratch", out=str(root / "run"), epochs=15,
                        cache_dir=str(root / "cache"))
    return str(run.path)


@pytest.fixture(scope="session")
def teacher_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Teachers for `distill`, one per modality, with the classes of `text_csv` and of 2-class image folders."""
    import headstart

    root = tmp_path_factory.mktemp("teachers")
    text = headstart.fit(write_text_table(root / "t.csv", per_class=20, seed=5), model="scratch:bow", strategy="scratch",
                         out=str(root / "text"), cache_dir=str(root / "cache"))
    image = headstart.fit(write_image_folder(root / "imgs", per_class=20, classes=2, seed=5), model="scratch:cnn@32",
                          strategy="scratch", epochs=10, out=str(root / "image"), cache_dir=str(root / "cache"))
    return {"text": str(text.path), "image": str(image.path)}


def free_port() -> int:
    """A TCP port nothing listens on now (for a server a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

