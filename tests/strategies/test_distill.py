"""`distill`: the loss, the class mapping, and real students taught by real teacher runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.errors import ConfigError
from headstart.training.strategies.distill import soft_loss, teacher_columns
from tests.conftest import write_image_folder


@pytest.mark.parametrize("task,width", [("multiclass", 4), ("binary", 1)])
def test_soft_loss_is_stationary_where_the_student_matches_the_teacher(task: str, width: int) -> None:
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(8, width, generator=g) * 3
    student = teacher.clone().requires_grad_(True)
    soft_loss(student, teacher, 4.0, task).backward()
    assert student.grad.abs().max() < 1e-6
    other = torch.randn(8, width, generator=g).requires_grad_(True)
    loss = soft_loss(other, teacher, 4.0, task)
    loss.backward()
    assert other.grad.abs().max() > 1e-4
    # moving the student towards the teacher lowers the loss
    closer = (other + 0.5 * (teacher - other)).detach()
    assert soft_loss(closer, teacher, 4.0, task) < loss


def test_binary_soft_loss_is_the_two_class_distillation() -> None:
    """One logit z stands for the two-class logits [0, z]: the binary soft term must push the student exactly as
    the multiclass KL term does on those two columns (they differ by the teacher's entropy, a constant)."""
    g = torch.Generator().manual_seed(2)
    teacher, student0 = torch.randn(16, 1, generator=g) * 3, torch.randn(16, 1, generator=g) * 3
    grads = []
    for task, widen in (("binary", lambda z: z), ("multiclass", lambda z: torch.cat([torch.zeros_like(z), z], 1))):
        s = student0.clone().requires_grad_(True)
        soft_loss(widen(s), widen(teacher), 3.0, task).backward()
        grads.append(s.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_temperature_squared_keeps_the_gradient_scale() -> None:
    g = torch.Generator().manual_seed(1)
    teacher, student0 = torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g)
    norms = []
    for t in (2.0, 8.0):
        s = student0.clone().requires_grad_(True)
        soft_loss(s, teacher, t, "multiclass").backward()
        norms.append(s.grad.norm().item())  # without the T^2 factor the gradient would shrink ~1/T^2
    assert 0.5 < norms[0] / norms[1] < 2.0


def test_teacher_columns_follow_the_students_class_order() -> None:
    cols, sign = teacher_columns(["a", "b", "c"], ["c", "a", "b"], "multiclass")
    assert cols.tolist() == [2, 0, 1] and sign == 1.0
    cols, sign = teacher_columns(["neg", "pos"], ["neg", "pos"], "binary")
    assert cols.tolist() == [0] and sign == 1.0
    assert teacher_columns(["neg", "pos"], ["pos", "neg"], "binary")[1] == -1.0
    with pytest.raises(ConfigError, match="are not the data's"):
        teacher_columns(["a", "b"], ["a", "c"], "binary")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("teacher")
    data = write_image_folder(root / "imgs", per_class=24, classes=3, seed=4)
    run = headstart.fit(data, model="scratch:cnn@32", strategy="scratch", epochs=15, out=str(root / "run"),
                        cache_dir=str(root / "cache"))
    return run.path, data


def test_distilled_student_is_an_ordinary_run_with_a_teacher_comparison(teacher: tuple[Path, Path], tmp_path: Path) -> None:
    teacher_dir, data = teacher
    student = headstart.fit(data, model="scratch:cnn-w8@32", strategy="distill", teacher=str(teacher_dir), epochs=25,
                            out="runs/student")
    assert student.metrics["test"]["accuracy"] >= 0.75
    rec = student.metrics["distill"]
    assert rec["teacher"]["parameters"] > 4 * rec["student"]["parameters"] and rec["size_ratio"] > 4
    assert rec["teacher"]["file_mb"] > rec["student"]["file_mb"] > 0
    assert rec["teacher"]["score"] == pytest.approx(headstart.load(teacher_dir).metrics["test"]["accuracy"])
    assert rec["teacher"]["score_name"] == "accuracy"
    assert rec["teacher"]["latency_ms"] > 0 and "same data" in rec["teacher_split"]
    assert "Teacher vs student" in (student.path / "report.html").read_text()
    assert student.metrics["fit"]["teacher_logits_cached"] is False
    again = headstart.load(student.path)  # loads without the teacher: an ordinary run
    assert again.predict(str(data / "top"))[0]["label"] in ("left", "right", "top")
    # a second student reuses the teacher's cached logits
    other = headstart.fit(data, model="scratch:cnn-w8@32", strategy="distill", teacher=str(teacher_dir), epochs=1,
                          out="runs/student2")
    assert other.metrics["fit"]["teacher_logits_cached"] is True


def test_the_soft_targets_are_the_teachers_logits(teacher: tuple[Path, Path]) -> None:
    """What the student is trained towards is exactly the teacher's output on each training example."""
    from headstart.backbones import build_backbone
    from headstart.config import FitConfig
    from headstart.data import load_data
    from headstart.heads import make_head
    from headstart.training.strategies import FitContext, get_strategy

    teacher_dir, data = teacher
    t = headstart.load(teacher_dir)
    cfg = FitConfig(data=str(data), model="scratch:cnn-w8@32", strategy="distill", epochs=1,
                    options={"teacher": str(teacher_dir), "unlabeled": str(data / "top")}).resolved("image", 10)
    ds = load_data(str(data), seed=cfg.seed)
    bb = build_backbone(cfg.model)
    ctx = FitContext(cfg=cfg, data=ds, backbone=bb, head=make_head(ds.task, bb.num_features, ds.num_classes),
                     run_dir=Path("runs/x"), cache_dir=Path("cache"))
    s = get_strategy("distill")(cfg)
    s.prepare(ctx)
    n_train = len(ds.train_idx)
    assert len(s.items) == n_train + 24 and not s.labeled[n_train:].any() and s.labeled[:n_train].all()  # unlabeled: soft term only
    want = t.head(t.backbone.forward_features(t.backbone.preprocess(train=False)(s.items[:6]))).detach()
    np.testing.assert_allclose(s.soft_targets[:6].numpy(), want.numpy(), atol=1e-4)
    assert ctx.info["unlabeled_examples"] == 24


def test_a_binary_teachers_one_logit_is_the_soft_target(tmp_path: Path) -> None:
    """A binary teacher has one output: the student is trained towards that logit, unscaled, on every example."""
    from headstart.backbones import build_backbone
    from headstart.config import FitConfig
    from headstart.data import load_data
    from headstart.heads import make_head
    from headstart.training.strategies import FitContext, get_strategy

    data = write_image_folder(tmp_path / "imgs", per_class=12, classes=2, seed=6)
    t = headstart.fit(data, model="scratch:cnn-w8@32", strategy="scratch", epochs=3, out=str(tmp_path / "teacher"))
    assert t.task == "binary"
    cfg = FitConfig(data=str(data), model="scratch:cnn-w8@32", strategy="distill", epochs=1,
                    options={"teacher": str(t.path)}).resolved("image", 10)
    ds = load_data(str(data), seed=cfg.seed)
    bb = build_backbone(cfg.model)
    ctx = FitContext(cfg=cfg, data=ds, backbone=bb, head=make_head(ds.task, bb.num_features, ds.num_classes),
                     run_dir=tmp_path / "x", cache_dir=tmp_path / "cache")
    s = get_strategy("distill")(cfg)
    s.prepare(ctx)
    assert tuple(s.soft_targets.shape) == (len(ds.train_idx), 1)
    want = t.head(t.backbone.forward_features(t.backbone.preprocess(train=False)(s.items))).detach()
    np.testing.assert_allclose(s.soft_targets.numpy(), want.numpy(), atol=1e-4)
    assert float(want.std()) > 0.01  # the teacher's logits differ between examples: a scale would show


def test_the_teacher_is_what_the_student_learns_from(teacher: tuple[Path, Path], tmp_path: Path) -> None:
    """With one label per class and unlabeled images, the teacher knows far more than the labels: a distilled
    student ends close to the teacher's probabilities and at least as accurate as the same fit on labels only
    (``alpha=0``: same data, seed and schedule). A loss that dropped the teacher term makes the two the same."""
    teacher_dir, data = teacher
    unlabeled = write_image_folder(tmp_path / "unlabeled", per_class=20, classes=3, seed=9)
    t = headstart.load(teacher_dir)
    ds = t.reload_data()
    items = [ds.items[i] for i in ds.test_idx]
    p_teacher = t.predict_proba(items)
    results = {}
    for alpha in (0.9, 0.0):
        s = headstart.fit(data, model="scratch:cnn-w8@32", strategy="distill", teacher=str(teacher_dir), alpha=alpha,
                          unlabeled=str(unlabeled), labels_per_class=1, epochs=25, out=f"runs/alpha{alpha}")
        p = s.predict_proba(items)
        kl = float(np.mean(np.sum(p_teacher * (np.log(p_teacher + 1e-9) - np.log(p + 1e-9)), 1)))
        results[alpha] = (s.metrics["test"]["accuracy"], kl)
    (acc_d, kl_d), (acc_l, kl_l) = results[0.9], results[0.0]
    assert kl_d * 4 < kl_l, results  # measured: 0.02 against 0.12-0.33 over three seeds
    assert acc_d >= max(acc_l, 0.9), results
