"""The bad-input matrix: every user mistake we know of, by command, and what must happen.

Each case builds its input under a temp folder and gives the command line; the
expectation is either ``error`` (exit code 2, one ``error:`` line containing the
given text, no traceback) or ``handled`` (exit code 0, plus a check of the
result). ``tests/test_reliability.py`` runs the matrix; ``benchmarks/reliability.py``
renders it as the table in docs/reliability.md from a real run.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .conftest import make_image, write_image_folder, write_text_table

TINY = f"py:{Path(__file__).parent / 'backbones' / 'tiny_factory.py'}:tiny"
FAST_IMG = ["--model", TINY, "--strategy", "linear", "--cv-folds", "2"]
FAST_TXT = ["--model", "scratch:bow", "--strategy", "linear", "--cv-folds", "2"]


@dataclass
class Case:
    command: str
    name: str
    build: Callable[[Path], list[str]]  # writes the input under the folder, returns the argv
    error: str | None = None  # expected text of the one-line error; None = handled
    check: Callable[[Path, str], None] | None = None  # for handled cases: (folder, output) -> asserts
    stdin: str | None = None
    patch: Callable[[], contextlib.AbstractContextManager[Any]] = field(default=contextlib.nullcontext)


# -- inputs ----------------------------------------------------------------------------
def images(tmp: Path, per_class: int = 8) -> Path:
    return write_image_folder(tmp / "imgs", per_class=per_class, classes=2)


def _add(tmp: Path, name: str, writer: Callable[[Path], None]) -> list[str]:
    root = images(tmp)
    writer(root / "left" / name)
    return ["fit", str(root), *FAST_IMG]


def _pil(mode: str) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        rgb = make_image(0, np.random.default_rng(1))
        if mode == "I;16":
            Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)).save(p)
        else:
            rgb.convert(mode).save(p)
    return write


def _truncated_jpeg(p: Path) -> None:
    buf = io.BytesIO()
    make_image(0, np.random.default_rng(2)).save(buf, format="JPEG")
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])


def _png_as_jpg(p: Path) -> None:
    make_image(0, np.random.default_rng(3)).save(p, format="PNG")


def _skipped(n: int, kind: str = "files") -> Callable[[Path, str], None]:
    """``kind``: files (unreadable images) or rows (table rows without a label or a text)."""
    def check(tmp: Path, output: str) -> None:
        m = json.loads(next((tmp / "runs").glob("*/metrics.json")).read_text())
        assert m["fit"][f"skipped_{kind}"] == n, m["fit"]
        if n:
            assert len(m["data"][f"skipped_{kind}"]) == n and f"skipped {kind}" in output, output
    return check


def _fitted(n_train_min: int = 1) -> Callable[[Path, str], None]:
    def check(tmp: Path, output: str) -> None:
        m = json.loads(next((tmp / "runs").glob("*/metrics.json")).read_text())
        skipped = m["fit"].get("skipped_files", m["fit"].get("skipped_rows"))
        assert skipped == 0 and m["data"]["n_train"] >= n_train_min, m
    return check


@contextlib.contextmanager
def _small_bomb_limit() -> Iterator[None]:
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 10_000  # 40x40 pictures pass; 200x200 is > 2x the limit: PIL's DecompressionBombError
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _table(tmp: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def _good_rows(n: int = 6) -> str:
    return "".join(f"the match was a goal number {i},sport\nbake the bread {i} in the oven,food\n" for i in range(n))


def _run(tmp: Path) -> Path:
    """A real (tiny, fast) run directory to evaluate / predict / resume with."""
    import headstart

    data = write_text_table(tmp / "texts.csv", per_class=12)
    return headstart.fit(data, model="scratch:bow", strategy="linear", cv_folds=2, out=str(tmp / "runs" / "r")).path


def _image_run(tmp: Path) -> Path:
    import headstart

    return headstart.fit(images(tmp), model=TINY, strategy="linear", cv_folds=2, out=str(tmp / "runs" / "img")).path


class _Boom:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil_pickle(p: Path, marker: Path) -> None:
    p.write_bytes(pickle.dumps({"state_dict": _Boom(marker)}, protocol=2))  # the protocol torch.save writes


def _no_marker(tmp: Path, output: str) -> None:
    assert not (tmp / "pwned").exists()


def _resume_evil(tmp: Path) -> list[str]:
    data = write_text_table(tmp / "texts.csv", per_class=12)
    out = tmp / "runs" / "r"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.yaml").write_text("model: scratch:bow\n")
    _evil_pickle(out / "checkpoints" / "last.ckpt", tmp / "pwned")
    return ["fit", str(data), "--model", "scratch:bow", "--strategy", "scratch", "--epochs", "2", "--out", str(out), "--resume"]


def _existing_run(tmp: Path) -> list[str]:
    (tmp / "runs" / "x").mkdir(parents=True)
    (tmp / "runs" / "x" / "notes.txt").write_text("an earlier result")
    return ["fit", "demo-text", *FAST_TXT, "--out", str(tmp / "runs" / "x")]


def _not_a_run(tmp: Path) -> list[str]:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("years of work")
    return ["fit", "demo-text", *FAST_TXT, "--out", str(tmp / "mine"), "--overwrite"]


def _damaged_run(tmp: Path, name: str, content: bytes, command: list[str]) -> list[str]:
    run = _run(tmp)
    (run / name).write_bytes(content)
    return [command[0], str(run), *command[1:]]


def _bomb(tmp: Path) -> list[str]:
    root = images(tmp)
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(root / "left" / "huge.png")  # 40,000 px > 2 x the limit
    return ["fit", str(root), *FAST_IMG]


def _bomb_skipped(tmp: Path, output: str) -> None:
    m = json.loads(next((tmp / "runs").glob("*/metrics.json")).read_text())
    reasons = [s["reason"] for s in m["data"]["skipped_files"]]
    assert len(reasons) == 1 and "image too large" in reasons[0], reasons


def _mixed_labels(tmp: Path) -> list[str]:
    return ["fit", str(_table(tmp, "text,label\n" + "".join(f"row {i} words,{i % 2}\n" for i in range(8)) + "more words,cat\n")), *FAST_TXT]


def _config(tmp: Path, text: str) -> list[str]:
    data = write_text_table(tmp / "texts.csv", per_class=12)
    cfg = tmp / "c.yaml"
    cfg.write_text(text.replace("DATA", str(data)))
    return ["fit", "--config", str(cfg)]


CASES: list[Case] = [
    # ---- fit: image folders --------------------------------------------------------
    Case("fit", "truncated JPEG", lambda t: _add(t, "cut.jpg", _truncated_jpeg), check=_skipped(1)),
    Case("fit", "text file named .jpg", lambda t: _add(t, "notes.jpg", lambda p: p.write_text("not an image")), check=_skipped(1)),
    Case("fit", "zero-byte .png", lambda t: _add(t, "empty.png", lambda p: p.write_bytes(b"")), check=_skipped(1)),
    Case("fit", "PNG named .jpg", lambda t: _add(t, "really_png.jpg", _png_as_jpg), check=_fitted()),
    Case("fit", "grayscale image", lambda t: _add(t, "gray.png", _pil("L")), check=_fitted()),
    Case("fit", "RGBA image", lambda t: _add(t, "rgba.png", _pil("RGBA")), check=_fitted()),
    Case("fit", "CMYK JPEG", lambda t: _add(t, "cmyk.jpg", _pil("CMYK")), check=_fitted()),
    Case("fit", "16-bit grayscale PNG", lambda t: _add(t, "deep.png", _pil("I;16")), check=_fitted()),
    Case("fit", "palette (P) image", lambda t: _add(t, "pal.png", _pil("P")), check=_fitted()),
    Case("fit", "decompression bomb (over PIL's pixel limit)", _bomb, check=_bomb_skipped, patch=_small_bomb_limit),
    Case("fit", "corrupt file with --strict", lambda t: [*_add(t, "cut.jpg", _truncated_jpeg), "--strict"],
         error="drop --strict to skip"),
    Case("fit", "empty class folder", lambda t: (images(t) / "empty").mkdir() or ["fit", str(t / "imgs"), *FAST_IMG],
         error="has no image files"),
    Case("fit", "a single class", lambda t: ["fit", str(write_image_folder(t / "one", per_class=6, classes=1)), *FAST_IMG],
         error="one: only one class ('left') found"),
    Case("fit", "folder without class sub-folders", lambda t: (t / "flat").mkdir() or make_image(0, np.random.default_rng(0)).save(t / "flat" / "a.png") or ["fit", str(t / "flat"), *FAST_IMG],
         error="no class sub-folders"),
    Case("fit", "unicode and spaces in paths", lambda t: ["fit", str(write_image_folder(t / "mes données é", per_class=8)), *FAST_IMG],
         check=_fitted()),
    Case("fit", "class present only in val/", lambda t: (write_image_folder(t / "tv", per_class=8, layout="trainval"),
                                                         write_image_folder(t / "extra", per_class=2, classes=3),
                                                         (t / "extra" / "top").rename(t / "tv" / "val" / "top"))
         and ["fit", str(t / "tv"), *FAST_IMG], error="top"),
    # ---- fit: tables ---------------------------------------------------------------
    Case("fit", "CSV row with a missing label (skipped)", lambda t: ["fit", str(_table(t, "text,label\n" + _good_rows() + "an orphan sentence,\n")), *FAST_TXT],
         check=_skipped(1, "rows")),
    Case("fit", "CSV row with a missing label, --strict", lambda t: ["fit", str(_table(t, "text,label\n" + _good_rows() + "an orphan sentence,\n")), *FAST_TXT, "--strict"],
         error="t.csv:14: missing label in column 'label'"),
    Case("fit", "empty text (skipped)", lambda t: ["fit", str(_table(t, "text,label\n" + _good_rows() + ",sport\n")), *FAST_TXT],
         check=_skipped(1, "rows")),
    Case("fit", "empty text, --strict", lambda t: ["fit", str(_table(t, "text,label\n" + _good_rows() + ",sport\n")), *FAST_TXT, "--strict"],
         error="t.csv:14: empty text in column 'text'"),
    Case("fit", "no row has a label", lambda t: ["fit", str(_table(t, "text,label\n" + "a sentence,\n" * 8)), *FAST_TXT],
         error="t.csv: no usable row: all 8 rows"),
    Case("fit", "a class whose every text is empty", lambda t: ["fit", str(_table(t, "text,label\n" + _good_rows() + " ,music\n,music\n")), *FAST_TXT],
         error="t.csv: class 'music' has no usable row left"),
    Case("fit", "semicolon-separated CSV with a UTF-8 BOM", lambda t: (t / "s.csv").write_bytes(
        ("\ufefftext;label\n" + _good_rows().replace(",", ";")).encode("utf-8")) and ["fit", str(t / "s.csv"), *FAST_TXT], check=_fitted()),
    Case("fit", "malformed JSONL line", lambda t: ["fit", str(_table(t, '{"text": "goal", "label": "sport"}\n\n{"text": "oven, "label": "food"}\n', "d.jsonl")), *FAST_TXT],
         error="d.jsonl:3: not valid JSON"),
    Case("fit", "unknown label column", lambda t: ["fit", str(_table(t, "text,label\n" + _good_rows())), *FAST_TXT, "--label-col", "nope"],
         error="--label-col 'nope' is not a column"),
    Case("fit", "mixed label types (numbers and words)", _mixed_labels, error="mixed label types"),
    Case("fit", "labels 1 and 1.0 are one class", lambda t: ["fit", str(_table(t, "text,label\n" + "".join(
        f"goal match team {i},{'1' if i % 4 == 0 else '1.0' if i % 2 == 0 else '2'}\n" for i in range(16)))), *FAST_TXT],
         check=lambda t, o: json.loads(next((t / "runs").glob("*/labels.json")).read_text())["classes"] == ["1", "2"] or (_ for _ in ()).throw(AssertionError(o))),
    Case("fit", "empty (0-byte) CSV", lambda t: ["fit", str(_table(t, "")), *FAST_TXT], error="t.csv"),
    Case("fit", "CSV with a header only", lambda t: ["fit", str(_table(t, "text,label\n")), *FAST_TXT], error="t.csv"),
    Case("fit", "binary garbage named .csv", lambda t: (t / "g.csv").write_bytes(bytes(range(256)) * 4) and ["fit", str(t / "g.csv"), *FAST_TXT],
         error="g.csv"),
    Case("fit", "Latin-1 encoded CSV", lambda t: (t / "l.csv").write_bytes(("text,label\n" + _good_rows().replace("bake", "bâke")).encode("latin-1"))
         and ["fit", str(t / "l.csv"), *FAST_TXT], check=_fitted()),
    Case("fit", "single-column table", lambda t: ["fit", str(_table(t, "text\n" + "only text here\n" * 10)), *FAST_TXT], error="t.csv: the table has a single column"),
    Case("fit", "unsupported file type", lambda t: (t / "data.xlsx").write_bytes(b"PK\x03\x04") and ["fit", str(t / "data.xlsx")],
         error="unsupported file type"),
    Case("fit", "data path does not exist", lambda t: ["fit", str(t / "nope")], error="no such file or folder"),
    # ---- fit: options ----------------------------------------------------------------
    Case("fit", "misspelled --strategy", lambda t: ["fit", "demo-text", "--strategy", "finetuen"], error="'finetuen' is unknown"),
    Case("fit", "misspelled --augment value", lambda t: ["fit", "demo-text", "--augment", "heavy"], error="option --augment"),
    Case("fit", "misspelled --header value", lambda t: ["fit", "demo-text", "--header", "maybe"], error="option --header"),
    Case("fit", "--precision 16 (not a supported precision)", lambda t: ["fit", "demo-text", "--precision", "16"],
         error="option --precision: '16' is not one of auto, 32, bf16"),
    Case("fit", "misspelled --pool value", lambda t: ["fit", "demo-text", "--pool", "max"], error="option --pool"),
    Case("fit", "--pool avgmax for a text model", lambda t: ["fit", "demo-text", "--model", "scratch:bow", "--pool", "avgmax"],
         error="only available for image backbones"),
    Case("fit", "negative --num-workers", lambda t: ["fit", "demo-text", "--num-workers", "-1"], error="option --num-workers"),
    Case("fit", "--val-fraction out of range", lambda t: ["fit", "demo-text", "--val-fraction", "1.5"], error="--val-fraction"),
    Case("fit", "unknown model prefix", lambda t: ["fit", "demo-text", "--model", "resnet18"], error="no known prefix"),
    Case("fit", "image model on text data", lambda t: ["fit", "demo-text", "--model", TINY], error="is an image model but demo-text holds texts"),
    Case("fit", "--weights file missing", lambda t: ["fit", str(images(t)), "--model", TINY, "--weights", str(t / "w.pt")], error="does not exist"),
    Case("fit", "--weights file is garbage", lambda t: (t / "w.pt").write_bytes(b"\x00garbage" * 50) and
         ["fit", str(images(t)), "--model", TINY, "--weights", str(t / "w.pt")], error="refused to load: it is not a plain tensor checkpoint"),
    Case("fit", "--weights is a malicious pickle", lambda t: _evil_pickle(t / "w.pt", t / "pwned") or
         ["fit", str(images(t)), "--model", TINY, "--weights", str(t / "w.pt")], error="Unsupported global: GLOBAL getattr was not an allowed global"),
    Case("fit", "existing run directory", _existing_run, error="already exists"),
    Case("fit", "--overwrite on a folder that is not a run", _not_a_run, error="refusing to delete"),
    Case("fit", "--config file missing", lambda t: ["fit", "--config", str(t / "nope.yaml")], error="nope.yaml"),
    Case("fit", "--config with an unknown key", lambda t: _config(t, "data: DATA\nlearning_rate: 0.1\n"), error="unknown key(s) learning_rate"),
    Case("fit", "--config that is not YAML", lambda t: _config(t, "data: [DATA\n: :\n"), error="c.yaml"),
    Case("fit", "--resume with a malicious checkpoint", _resume_evil, error="refused to load this checkpoint: it needs arbitrary unpickling"),
    Case("fit", "diverging loss (--lr 1e12)", lambda t: ["fit", str(write_text_table(t / "x.csv", per_class=12)), "--model", "scratch:bow",
                                                        "--strategy", "scratch", "--lr", "1e12", "--epochs", "3"],
         error="lower the learning rate"),
    # ---- evaluate / predict ----------------------------------------------------------------
    Case("evaluate", "not a run directory", lambda t: ["evaluate", str(t), "demo-text"], error="not a headstart run directory"),
    Case("evaluate", "run with a corrupted model file",
         lambda t: _damaged_run(t, "model.safetensors", b"junk", ["evaluate", str(t / "texts.csv")]), error="model.safetensors: unreadable"),
    Case("evaluate", "data with a class the run does not know", lambda t: [
        "evaluate", str(_run(t)), str(_table(t, "text,label\n" + _good_rows().replace("food", "music"), "other.csv"))], error="music"),
    Case("predict", "input file does not exist", lambda t: ["predict", str(_run(t)), str(t / "missing.csv")], error="missing.csv: no such file"),
    Case("predict", "image file that is not an image", lambda t: (t / "x.jpg").write_text("text") and [
        "predict", str(_image_run(t)), str(t / "x.jpg"), "--trust-code"], error="x.jpg"),
    Case("predict", "empty stdin", lambda t: ["predict", str(_run(t))], stdin="", error="no inputs given"),
    Case("predict", "run with a tampered model.json",
         lambda t: _damaged_run(t, "model.json", b"{not json", ["predict", "some text"]), error="model.json: unreadable"),
    Case("predict", "run with labels.json missing its classes",
         lambda t: _damaged_run(t, "labels.json", b'{"task": "binary"}', ["predict", "some text"]), error="labels.json: missing classes"),
    # ---- rank / distance ---------------------------------------------------------------------
    Case("rank", "misspelled --metric", lambda t: ["rank", str(images(t)), "--models", TINY, "--metric", "loggme"], error="unknown loggme"),
    Case("rank", "candidate weights missing", lambda t: ["rank", str(images(t)), "--models", f"{TINY}@{t / 'w.pt'}"], error="does not exist"),
    Case("rank", "text model on images", lambda t: ["rank", str(images(t)), "--models", "scratch:bow"], error="is a text model"),
    Case("fit", "option of another strategy", lambda t: ["fit", str(images(t)), *FAST_IMG, "--lora-r", "4"],
         error="--lora-r belongs to strategy lora, not linear"),
    Case("fit", "lora target that is not in the network",
         lambda t: ["fit", str(images(t)), "--model", TINY, "--strategy", "lora", "--lora-targets", "q_proj"],
         error="--lora-targets: no module named 'q_proj'"),
    Case("fit", "joint without source data", lambda t: ["fit", str(images(t)), "--model", TINY, "--strategy", "joint"],
         error="needs --source-data"),
    Case("fit", "joint source of another modality",
         lambda t: ["fit", str(images(t)), "--model", TINY, "--strategy", "joint", "--source-data", "demo-text"],
         error="holds texts but the target"),
    Case("fit", "cache of frozen layers with augmentation",
         lambda t: ["fit", str(images(t)), "--model", TINY, "--freeze", "1", "--cache-frozen", "yes", "--augment", "light"],
         error="training images are augmented"),
    Case("compare", "misspelled strategy", lambda t: ["compare", str(images(t)), "--strategies", "linear,lorra"],
         error="'lorra' is unknown"),
    Case("compare", "bad budget", lambda t: ["compare", str(images(t)), "--budgets", "5,zero"], error="'zero' is not a number"),
    Case("compare", "unknown fit option", lambda t: ["compare", str(images(t)), "--epoch", "3"], error="unknown option --epoch"),
    Case("distance", "image vs text data", lambda t: ["distance", str(images(t)), "demo-text", "--model", TINY], error="compare like with like"),
    Case("distance", "misspelled model", lambda t: ["distance", str(images(t)), "--model", "tim:resnet18"], error="no known prefix"),
]


# ---- distill / export (issue 5) ------------------------------------------------------------
def _image_teacher(tmp: Path) -> list[str]:
    return [str(_image_run(tmp)), str(tmp / "imgs")]


def _moved_data_run(tmp: Path) -> list[str]:
    run = _run(tmp)
    (tmp / "texts.csv").rename(tmp / "moved.csv")
    return ["export", str(run)]


CASES += [
    Case("distill", "teacher is not a run", lambda t: ["distill", str(t), str(images(t)), "--student", TINY],
         error="is not a headstart run directory"),
    Case("distill", "teacher with other classes", lambda t: ["distill", "--trust-code", str(_image_run(t)),
                                                             str(write_image_folder(t / "three", per_class=6, classes=3)),
                                                             "--student", TINY], error="are not the data's"),
    Case("distill", "text teacher on images", lambda t: ["distill", str(_run(t)), str(images(t)), "--student", TINY],
         error="is a model of texts"),
    Case("distill", "--alpha out of range", lambda t: ["distill", *_image_teacher(t), "--student", TINY, "--alpha", "1.5"],
         error="option --alpha"),
    Case("distill", "--unlabeled folder missing", lambda t: ["distill", *_image_teacher(t), "--student", TINY,
                                                             "--unlabeled", str(t / "nope")], error="does not exist"),
    Case("distill", "--unlabeled folder for a text teacher", lambda t: ["distill", str(_run(t)), str(t / "texts.csv"),
                                                                        "--student", "scratch:bow", "--unlabeled", str(images(t))],
         error="must be a table of texts"),
    Case("distill", "--model given besides --student", lambda t: ["distill", *_image_teacher(t), "--student", TINY, "--model", TINY],
         error="--model is set by the command itself"),
    Case("fit", "distill without --teacher", lambda t: ["fit", str(images(t)), "--model", TINY, "--strategy", "distill"],
         error="needs --teacher"),
    Case("export", "unknown --format", lambda t: ["export", str(_image_run(t)), "--format", "tflite", "--trust-code"], error="option --format"),
    Case("export", "--quantize int4", lambda t: ["export", str(_image_run(t)), "--quantize", "int4", "--trust-code"], error="option --quantize"),
    Case("export", "--prune 1.5", lambda t: ["export", str(_image_run(t)), "--prune", "1.5", "--trust-code"], error="option --prune"),
    Case("export", "accuracy lost beyond --max-drop", lambda t: ["export", str(_image_run(t)), "--prune", "0.99", "--trust-code"],
         error="> --max-drop 1"),
    Case("export", "the run's data has moved", _moved_data_run, error="pass --data"),
    Case("predict", "--engine onnx before any export", lambda t: ["predict", str(_run(t)), "--engine", "onnx"], stdin="goal\n",
         error="no ONNX export yet"),
    Case("predict", "unknown --engine", lambda t: ["predict", str(_run(t)), "--engine", "tensorrt"], stdin="goal\n",
         error="option --engine"),
]
