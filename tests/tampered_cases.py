"""Tampered run folders (issue 26): what a run folder received from someone else could try, and what must happen.

A `Project` holds two real runs fitted once: an image run of a user's ``py:`` factory (exported to ONNX) and a
MiniLM text run, plus planted code that writes ``MARKER`` when it is imported. Each `Tampered` case alters a
copy of one run and returns the command a user would then type. It expects either one ``error:`` line holding
``error`` or success (checked by ``check``); in every case the marker never appears, except in the one case
that passes ``--trust-code=any`` on purpose (``runs_code``).

``tests/test_trust.py`` asserts these outcomes; ``benchmarks/tampered_runs.py`` runs the same cases through
the CLI and writes what each produced to docs/tampered-runs.md.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .conftest import write_image_folder, write_text_table

FACTORY_SOURCE = (Path(__file__).parent / "backbones" / "tiny_factory.py").read_text(encoding="utf-8")


@dataclass
class Project:
    """A user's folder: fac.py (the factory), images/, texts.csv, runs/image (exported) and runs/text."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / "MARKER"

    @property
    def image_run(self) -> Path:
        return self.root / "runs" / "image"

    @property
    def text_run(self) -> Path:
        return self.root / "runs" / "text"

    def evil_source(self) -> str:
        """Source of a working factory that also leaves the marker: proof that it was imported."""
        return f"from pathlib import Path\nPath({str(self.marker)!r}).write_text('code named by a run folder ran')\n" + FACTORY_SOURCE

    def copy(self, base: Path, name: str) -> Path:
        dest = self.root / "runs" / name
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(base, dest, symlinks=True)
        return dest


def build_project(root: Path) -> Project:
    """Fit the two base runs (seconds: a 5k-parameter CNN and a MiniLM linear probe) and plant the code."""
    import headstart

    p = Project(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "fac.py").write_text(FACTORY_SOURCE, encoding="utf-8")
    (root / "evil.py").write_text(p.evil_source(), encoding="utf-8")
    (root / "evilmod.py").write_text(p.evil_source(), encoding="utf-8")  # importable by name from this folder
    images = write_image_folder(root / "images", per_class=8)
    texts = write_text_table(root / "texts.csv", per_class=10)
    headstart.fit(images, model=f"py:{root / 'fac.py'}:tiny", strategy="linear", cv_folds=2, out=str(p.image_run))
    headstart.load(p.image_run, trust_code=True).export()
    headstart.fit(texts, model="minilm", strategy="linear", cv_folds=2, out=str(p.text_run))
    return p


# -- the alterations -----------------------------------------------------------------------------------
def _edit_model(run: Path, change: Callable[[dict], None]) -> None:
    model = json.loads((run / "model.json").read_text())
    change(model)
    (run / "model.json").write_text(json.dumps(model, indent=2))


def _point_at(run: Path, module: str, file: Path | None, factory: str = "tiny", sha256: str | None = "real") -> None:
    import hashlib

    def change(model: dict) -> None:
        code = {"module": module, "factory": factory}
        if file is not None:
            code["file"] = str(file)
            code["relative"] = str(Path("..") / ".." / file.name) if file.parent == run.parent.parent else str(file)
            code["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest() if sha256 == "real" else sha256
        model["backbone"] = {"kind": "py", "name": f"{module}:{factory}", "code": code}

    _edit_model(run, change)


def _image(p: Project, name: str, exported: bool = True) -> Path:
    run = p.copy(p.image_run, name)
    if not exported:
        shutil.rmtree(run / "export")
    return run


def _one_image(p: Project) -> str:
    return str(next((p.root / "images" / "left").glob("*.png")))


def evil_named(p: Project, exported: bool) -> Path:
    """The report in the issue: model.json now names evil.py, a working factory beside the real one."""
    run = _image(p, "evil-" + ("exported" if exported else "plain"), exported)
    _point_at(run, "evil.py", p.root / "evil.py")
    return run


def _changed_factory(p: Project) -> Path:
    """The factory edited after the fit (here: a copy that also leaves the marker), hash as recorded at fit."""
    run = _image(p, "changed", exported=False)
    changed = p.root / "changed" / "fac.py"
    changed.parent.mkdir(exist_ok=True)
    changed.write_text(p.evil_source())
    model = json.loads((run / "model.json").read_text())
    code = model["backbone"]["code"]
    code.update(file=str(changed), relative="../../changed/fac.py")
    (run / "model.json").write_text(json.dumps(model, indent=2))
    return run


def _stdlib(p: Project, with_record: bool) -> Path:
    run = _image(p, "os-system" + ("-record" if with_record else ""), exported=False)
    if with_record:
        _point_at(run, "os", Path(__import__("os").__file__), factory="system")
    else:
        _edit_model(run, lambda m: m.update(backbone={"kind": "py", "name": "os:system"}))
    return run


def _stdlib_file(p: Project) -> Path:
    run = _image(p, "os-file", exported=False)
    _point_at(run, "os.py", Path(__import__("os").__file__), factory="system")
    return run


def _sys_path_module(p: Project) -> Path:
    run = _image(p, "evilmod", exported=False)
    _point_at(run, "evilmod", p.root / "evilmod.py")
    return run


def _run_pointer(p: Project) -> Path:
    run = _image(p, "pointer", exported=False)
    _edit_model(run, lambda m: m.update(backbone={"kind": "run", "name": str(p.root / "runs" / "evil-plain")}))
    return run


def _yaml_tag(p: Project) -> Path:
    run = p.copy(p.text_run, "yaml-tag")
    (run / "config.yaml").write_text(f"model: minilm\ndata: !!python/object/apply:os.system ['touch {p.marker}']\n")
    return run


def _auto_map(p: Project, known_class: bool) -> Path:
    """transformers' remote code: configs that name a module of the run's own backbone/ folder."""
    run = p.copy(p.text_run, "auto-map" + ("" if known_class else "-unknown"))
    assets = run / "backbone"
    (assets / "evil_tok.py").write_text(f"from pathlib import Path\nPath({str(p.marker)!r}).write_text('x')\n"
                                        "from transformers import BertTokenizer as EvilTokenizer, BertConfig as EvilConfig\n")
    tok = json.loads((assets / "tokenizer_config.json").read_text())
    tok["auto_map"] = {"AutoTokenizer": ["evil_tok.EvilTokenizer", None]}
    cfg = json.loads((assets / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil_tok.EvilConfig", "AutoModel": "evil_tok.EvilConfig"}
    if not known_class:
        tok.pop("tokenizer_class", None)
        cfg["model_type"] = "evil_bert"
    (assets / "tokenizer_config.json").write_text(json.dumps(tok))
    (assets / "config.json").write_text(json.dumps(cfg))
    return run


def _export_default(p: Project, name: str, default: str) -> Path:
    run = _image(p, name)
    record = json.loads((run / "export" / "export.json").read_text())
    record["default"] = default
    (run / "export" / "export.json").write_text(json.dumps(record))
    return run


def _outside_onnx(p: Project) -> Path:
    target = p.root / "outside.onnx"
    shutil.copy(p.image_run / "export" / "model.onnx", target)
    return target


def _linked_onnx(p: Project) -> Path:
    run = _image(p, "onnx-link")
    (run / "export" / "model.onnx").unlink()
    (run / "export" / "model.onnx").symlink_to(_outside_onnx(p))
    return run


def _external_data(p: Project) -> Path:
    """An ONNX graph whose weight is read from ../../secret.bin, outside the run."""
    from onnx import TensorProto, helper, numpy_helper

    (p.root / "secret.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    run = _image(p, "onnx-external")
    weight = numpy_helper.from_array(np.zeros((4, 4), np.float32), "W")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    for k, v in {"location": "../../../secret.bin", "offset": "0", "length": "64"}.items():
        entry = weight.external_data.add()
        entry.key, entry.value = k, v
    graph = helper.make_graph([helper.make_node("MatMul", ["pixels", "W"], ["probabilities"])], "g",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 4])], [weight])
    (run / "export" / "model.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    return run


def _linked_asset(p: Project) -> Path:
    run = p.copy(p.text_run, "asset-link")
    (run / "backbone" / "tokenizer.json").unlink()
    (run / "backbone" / "tokenizer.json").symlink_to(p.root / "texts.csv")
    return run


class _Touch:
    """Unpickling this creates the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickled_weights(p: Project) -> Path:
    run = p.copy(p.text_run, "pickle")
    (run / "model.safetensors").write_bytes(pickle.dumps({"head.weight": _Touch(p.marker)}, protocol=2))
    return run


# -- checks of the cases that succeed -----------------------------------------------------------------
def predicted(output: str) -> list[dict]:
    rows = [json.loads(ln) for ln in output.splitlines() if ln.startswith("{")]
    assert rows and all("label" in r for r in rows), output[-600:]
    return rows


def _predicted(p: Project, output: str) -> None:
    predicted(output)


@dataclass
class Tampered:
    name: str
    build: Callable[[Project], list[str]]  # alters a copy of a run, returns the command's argv
    error: str | None = None  # text of the expected one-line error; None = it succeeds
    check: Callable[[Project, str], None] | None = None
    stdin: str | None = None
    runs_code: bool = False  # the one case that trusts any code on purpose: the marker must appear


CASES: list[Tampered] = [
    Tampered("model.json names evil.py (the report), no export: predict",
             lambda p: ["predict", str(evil_named(p, False)), _one_image(p)], error="refused to import"),
    Tampered("model.json names evil.py, with an ONNX export: predict",
             lambda p: ["predict", str(evil_named(p, True)), _one_image(p)], check=_predicted),
    Tampered("model.json names evil.py: evaluate",
             lambda p: ["evaluate", str(evil_named(p, False)), str(p.root / "images")], error="refused to import"),
    Tampered("model.json names evil.py: export",
             lambda p: ["export", str(evil_named(p, True))], error="refused to import"),
    Tampered("model.json names evil.py: evaluate --engine torch, with an export",
             lambda p: ["evaluate", str(evil_named(p, True)), str(p.root / "images"), "--engine", "torch"],
             error="refused to import"),
    Tampered("model.json names evil.py: fit --model run:",
             lambda p: ["fit", str(p.root / "images"), "--model", f"run:{evil_named(p, False)}", "--strategy", "linear",
                        "--cv-folds", "2", "--out", str(p.root / "runs" / "from-evil")], error="refused to import"),
    Tampered("model.json names evil.py: distill from it as the teacher",
             lambda p: ["distill", str(evil_named(p, True)), str(p.root / "images"), "--student",
                        f"py:{p.root / 'fac.py'}:tiny", "--out", str(p.root / "runs" / "student")], error="refused to import"),
    Tampered("model.json names evil.py: rank it as a candidate",
             lambda p: ["rank", str(p.root / "images"), "--models", f"run:{evil_named(p, False)}", "--metric", "logme",
                        "--out", str(p.root / "rank")], error="refused to import"),
    Tampered("factory file changed since the fit: predict --trust-code",
             lambda p: ["predict", str(_changed_factory(p)), _one_image(p), "--trust-code"], error="NOT the"),
    Tampered("factory file changed since the fit: predict --trust-code=any",
             lambda p: ["predict", str(_changed_factory(p)), _one_image(p), "--trust-code=any"],
             check=_predicted, runs_code=True),
    Tampered("model.json names os:system with a matching hash: predict --trust-code",
             lambda p: ["predict", str(_stdlib(p, True)), _one_image(p), "--trust-code"], error="standard library"),
    Tampered("model.json names the file os.py of the standard library, hash matching: predict --trust-code",
             lambda p: ["predict", str(_stdlib_file(p)), _one_image(p), "--trust-code"], error="standard library"),
    Tampered("model.json names os:system, no record: predict",
             lambda p: ["predict", str(_stdlib(p, False)), _one_image(p)], error="standard library"),
    Tampered("model.json names a module on sys.path (evilmod:tiny): predict",
             lambda p: ["predict", str(_sys_path_module(p)), _one_image(p)], error="refused to import"),
    Tampered("model.json backbone of kind run: points at another run folder",
             lambda p: ["predict", str(_run_pointer(p)), _one_image(p)], error="names another run folder"),
    Tampered("config.yaml with a !!python/object/apply tag",
             lambda p: ["predict", str(_yaml_tag(p))], stdin="the goal of the match\n", error="config.yaml: unreadable"),
    Tampered("tokenizer and model configs with auto_map (class transformers has): predict",
             lambda p: ["predict", str(_auto_map(p, True))], stdin="the goal of the match\n",
             check=_predicted),
    Tampered("auto_map with a model type transformers does not have: predict",
             lambda p: ["predict", str(_auto_map(p, False))], stdin="yes\nthe goal of the match\n", error="needs its own code"),
    Tampered("export.json default ../../../outside.onnx",
             lambda p: (_outside_onnx(p), ["predict", str(_export_default(p, "default-up", "../../../outside.onnx")),
                                           _one_image(p)])[1], error="leads outside the run folder"),
    Tampered("export.json default is an absolute path",
             lambda p: ["predict", str(_export_default(p, "default-abs", str(_outside_onnx(p)))), _one_image(p)],
             error="leads outside the run folder"),
    Tampered("export/model.onnx is a link to a file outside the run",
             lambda p: ["predict", str(_linked_onnx(p)), _one_image(p)], error="leads outside the run folder"),
    Tampered("ONNX weight stored as external data ../../../secret.bin",
             lambda p: ["predict", str(_external_data(p)), _one_image(p)], error="onnxruntime cannot load it"),
    Tampered("backbone/tokenizer.json is a link to a file outside the run",
             lambda p: ["predict", str(_linked_asset(p))], stdin="the goal\n", error="leads outside the run folder"),
    Tampered("model.safetensors replaced by a pickle",
             lambda p: ["predict", str(_pickled_weights(p))], stdin="the goal\n", error="model.safetensors: unreadable"),
]
