"""A run folder is data (issue 26): the code it names runs only when trusted, and only the code recorded at fit."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import headstart
from headstart.cli import app
from headstart.errors import UntrustedCode

from .tampered_cases import CASES, FACTORY_SOURCE, Project, Tampered, build_project, predicted
from .test_reliability import verdict


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("project")
    mp = pytest.MonkeyPatch()
    mp.setenv("HEADSTART_CACHE_DIR", str(root / "cache"))
    mp.chdir(root)
    try:
        return build_project(root)
    finally:
        mp.undo()


def run_tampered(case: Tampered, project: Project) -> tuple[list[str], int, str]:
    """(command line, exit code, output) of the case's command, run through the CLI."""
    args = case.build(project)
    res = CliRunner().invoke(app, args, input=case.stdin)
    return args, res.exit_code, res.output


def judge(case: Tampered, project: Project, code: int, output: str) -> None:
    """As for the bad-input matrix (one clear error line, or success as checked), and the planted code did not run."""
    verdict(case, code, output, project)
    assert project.marker.exists() == case.runs_code, "code named by the run folder ran" if not case.runs_code else \
        "--trust-code=any did not run the changed file"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tampered_run_folder(case: Tampered, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)  # a module named by the run would be importable from here
    project.marker.unlink(missing_ok=True)
    try:
        _, code, output = run_tampered(case, project)
        judge(case, project, code, output)
    finally:
        project.marker.unlink(missing_ok=True)


def test_fit_records_the_factory_module_file_and_hash(project: Project) -> None:
    code = json.loads((project.image_run / "model.json").read_text())["backbone"]["code"]
    factory = project.root / "fac.py"
    assert code["module"] == str(factory) and code["factory"] == "tiny"
    assert code["file"] == str(factory.resolve())
    assert code["sha256"] == hashlib.sha256(factory.read_bytes()).hexdigest()
    assert code["relative"] == "../../fac.py"  # from the run folder: found again when both move


def test_untrusted_run_refuses_in_one_line_naming_the_file_hash_and_flag(project: Project) -> None:
    run = project.copy(project.image_run, "untrusted")
    shutil.rmtree(run / "export")
    with pytest.raises(UntrustedCode) as e:
        headstart.load(run)
    line = str(e.value)
    digest = hashlib.sha256((project.root / "fac.py").read_bytes()).hexdigest()
    assert "\n" not in line and str((project.root / "fac.py").resolve()) in line
    assert digest[:16] in line and "--trust-code" in line and "trust_code=True" in line


def test_trusted_run_with_matching_hash_loads_and_predicts_as_at_fit(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    images = sorted((project.root / "images").rglob("*.png"))[:6]
    fitted = headstart.load(project.image_run, trust_code=True)
    expected = fitted.predict_proba(images)
    assert fitted.default_engine == "torch"
    monkeypatch.chdir(project.root.parent)  # another folder than the fit's
    res = CliRunner().invoke(app, ["predict", str(project.image_run), *map(str, images), "--trust-code"])
    assert res.exit_code == 0, res.output
    got = np.array([[r["probabilities"][c] for c in fitted.classes] for r in predicted(res.output)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(UntrustedCode):  # the trust was for that call only
        headstart.load(project.image_run).backbone


def test_a_project_moved_with_its_runs_still_loads(project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(project.root / "fac.py", moved / "fac.py")
    shutil.copytree(project.image_run, moved / "runs" / "image")
    hidden = project.root / "fac.py.away"
    (project.root / "fac.py").rename(hidden)  # the recorded absolute path is gone: only the run-relative one works
    try:
        monkeypatch.chdir(tmp_path)
        run = headstart.load(moved / "runs" / "image", trust_code=True)
        assert run.predict([str(next((project.root / "images").rglob("*.png")))])[0]["label"] in run.classes
        assert json.loads((moved / "runs" / "image" / "model.json").read_text())["backbone"]["code"]["relative"] == "../../fac.py"
    finally:
        hidden.rename(project.root / "fac.py")


def test_untrusted_exported_run_predicts_through_onnx_as_pytorch_does(project: Project) -> None:
    images = sorted((project.root / "images").rglob("*.png"))
    trusted = headstart.load(project.image_run, trust_code=True)
    plain = headstart.load(project.image_run)
    assert plain.default_engine == "onnx"
    with pytest.raises(UntrustedCode, match="refused to import"):
        plain.backbone
    with pytest.raises(UntrustedCode, match="refused to import"):
        plain.predict(images[:2], engine="torch")
    np.testing.assert_allclose(plain.predict_proba(images), trusted.predict_proba(images), atol=1e-5)
    assert plain.evaluate(project.root / "images")["accuracy"] == trusted.evaluate(project.root / "images")["accuracy"]


def test_a_module_factory_is_checked_and_imported_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from .conftest import write_image_folder

    (tmp_path / "mymodels.py").write_text(FACTORY_SOURCE)
    images = write_image_folder(tmp_path / "imgs", per_class=6)
    run = headstart.fit(images, model="py:mymodels:tiny", strategy="linear", cv_folds=2, out="runs/mod")
    code = json.loads((run.path / "model.json").read_text())["backbone"]["code"]
    assert code["module"] == "mymodels" and code["file"] == str((tmp_path / "mymodels.py").resolve())
    assert headstart.load(run.path, trust_code=True).predict([str(next(images.rglob("*.png")))])
    (tmp_path / "mymodels.py").write_text(FACTORY_SOURCE + "\n# edited\n")
    with pytest.raises(UntrustedCode, match="NOT the"):
        headstart.load(run.path, trust_code=True)
    assert headstart.load(run.path, trust_code="any").classes == run.classes


def test_trust_flag_spellings(project: Project) -> None:
    run, image = str(project.image_run), str(next((project.root / "images").rglob("*.png")))
    for args in (["--trust-code", run, image], [run, "--trust-code", image], [run, image, "--trust-code"],
                 [run, image, "--trust-code=yes"], [run, image, "--trust-code", "any"]):
        res = CliRunner().invoke(app, ["predict", *args])
        assert res.exit_code == 0 and predicted(res.output), (args, res.output)
    res = CliRunner().invoke(app, ["predict", run, image, "--trust-code=maybe"])
    assert res.exit_code == 2 and "option --trust-code" in res.output


def test_rebuilding_a_recorded_factory_directly_is_refused_too(project: Project) -> None:
    """The backbone registry refuses by itself, not only `load_run`: any caller that rebuilds a saved spec."""
    from headstart._trust import trusting
    from headstart.backbones import rebuild_backbone

    spec = json.loads((project.root / "runs" / "image" / "model.json").read_text())["backbone"]
    spec = {**spec, "code": {**spec["code"], "file": str(project.root / "evil.py"), "relative": "../../evil.py",
                             "sha256": hashlib.sha256((project.root / "evil.py").read_bytes()).hexdigest()}}
    project.marker.unlink(missing_ok=True)
    with pytest.raises(UntrustedCode, match="refused to import"):
        rebuild_backbone(spec, project.image_run / "backbone")
    assert not project.marker.exists()
    with trusting("yes"):
        assert rebuild_backbone(spec, project.image_run / "backbone").num_features > 0
    assert project.marker.exists()  # trusted: the recorded file (here the planted one) did run
    project.marker.unlink()


def test_a_run_transferred_from_a_factory_run_carries_its_code_record(project: Project, tmp_path: Path) -> None:
    """``fit --model run:DIR`` of a py: run needs trust, and the new run records the same factory (its own relative path)."""
    images = project.root / "images"
    with pytest.raises(UntrustedCode, match="refused to import"):
        headstart.fit(images, model=f"run:{project.image_run}", strategy="linear", cv_folds=2, out=str(tmp_path / "a" / "b" / "c"))
    child = headstart.fit(images, model=f"run:{project.image_run}", strategy="linear", cv_folds=2,
                          out=str(tmp_path / "a" / "b" / "c"), overwrite=True, trust_code=True)
    parent = json.loads((project.image_run / "model.json").read_text())["backbone"]["code"]
    code = json.loads((child.path / "model.json").read_text())["backbone"]["code"]
    assert (code["module"], code["factory"], code["file"], code["sha256"]) == \
        (parent["module"], parent["factory"], parent["file"], parent["sha256"])
    assert (child.path / code["relative"]).resolve() == (project.root / "fac.py").resolve()
    assert code["relative"] != parent["relative"]  # computed from the new run's own folder
    with pytest.raises(UntrustedCode):
        headstart.load(child.path)
    assert headstart.load(child.path, trust_code=True).classes == child.classes


def test_serving_a_run_that_names_planted_code_never_runs_it(project: Project) -> None:
    import base64

    from fastapi.testclient import TestClient

    from headstart.run import load_run
    from headstart.tasks.serve import create_app, serve

    from .tampered_cases import evil_named

    image = next((project.root / "images" / "left").glob("*.png"))
    exported = evil_named(project, exported=True)
    with TestClient(create_app(load_run(exported))) as client:  # untrusted: through the ONNX export
        res = client.post("/predict", json={"images": [base64.b64encode(image.read_bytes()).decode()]})
        meta = client.get("/metadata").json()
    assert res.status_code == 200 and meta["engine"] == "onnx"
    with pytest.raises(UntrustedCode, match=r"refused to import .*evil\.py"):  # refused before the port opens
        serve(evil_named(project, exported=False), port=1)
    assert not project.marker.exists()
