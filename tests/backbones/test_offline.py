"""Offline first: hub weights come from the local cache without the network, or fail at once saying what to do.

Each case runs in a fresh interpreter with the hub pointed at a closed local port (``HF_ENDPOINT``) and an
empty or hand-filled cache (``HF_HUB_CACHE``): the same as a machine without internet, on any machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


def run_offline(code: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": CLOSED, "HF_HUB_CACHE": str(cache), "HEADSTART_QUIET": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def fake_hub_cache(cache: Path, repo: str, files: dict[str, bytes]) -> None:
    """The Hugging Face cache layout: models--org--name/refs/main -> snapshots/<commit>/<files>."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def test_uncached_timm_weights_fail_at_once_naming_the_fix(tmp_path: Path) -> None:
    res = run_offline("from headstart.backbones import build_backbone\nbuild_backbone('timm:test_resnet')", tmp_path / "hub")
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "timm:test_resnet: the pretrained weights (timm/test_resnet) are not in the local cache" in last
    assert str(tmp_path / "hub") in last and "--weights FILE" in last and "--no-pretrained" in last
    assert "Retrying" not in res.stderr  # the hub library never got to retry


def test_an_offline_fit_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    code = ("import sys\nfrom headstart.cli import app\nsys.argv = ['headstart', 'fit', 'demo-text', '--model', "
            f"'timm:resnet18', '--out', {str(tmp_path / 'run')!r}]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    print('exit', e.code, 'torch' in sys.modules)")
    res = run_offline(code, tmp_path / "hub")
    assert res.stdout.split()[-3:] == ["exit", "2", "False"], res.stdout + res.stderr[-1500:]
    assert "timm:resnet18: the pretrained weights (timm/resnet18) are not in the local cache" in res.stderr
    assert not (tmp_path / "run").exists()  # the refused fit leaves no folder behind


def test_cached_timm_weights_load_without_the_network(tmp_path: Path) -> None:
    import timm
    import torch
    from safetensors.torch import save

    net = timm.create_model("test_resnet")
    torch.nn.init.constant_(net.conv1[0].weight if isinstance(net.conv1, torch.nn.Sequential) else net.conv1.weight, 0.125)
    fake_hub_cache(tmp_path / "hub", "timm/test_resnet.r160_in1k", {"model.safetensors": save(net.state_dict())})
    res = run_offline("from headstart.backbones import build_backbone\nb = build_backbone('timm:test_resnet')\n"
                      "w = b.net.conv1[0].weight if hasattr(b.net.conv1, '__getitem__') else b.net.conv1.weight\n"
                      "print(float(w.min()), float(w.max()))", tmp_path / "hub")
    assert res.returncode == 0, res.stderr[-1500:]
    assert res.stdout.split() == ["0.125", "0.125"]  # the cached file's weights, not timm's random init
    assert "Retrying" not in res.stderr + res.stdout


def test_uncached_hf_model_fails_at_once_and_a_cached_one_loads(tmp_path: Path) -> None:
    res = run_offline("from headstart.backbones import build_backbone\nbuild_backbone('hf:someone/tiny-bert')", tmp_path / "hub")
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode != 0 and "hf:someone/tiny-bert: the pretrained weights (someone/tiny-bert) are not in the local cache" in last
    assert "local model folder" in last and "Retrying" not in res.stderr

    from transformers import BertConfig, BertModel, BertTokenizerFast

    saved = tmp_path / "saved"
    vocab = saved / "vocab.txt"
    saved.mkdir()
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "goal", "match", "oven", "bread"]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(saved)
    BertModel(BertConfig(vocab_size=9, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(saved)
    fake_hub_cache(tmp_path / "hub", "someone/tiny-bert", {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file()})
    res = run_offline("from headstart.backbones import build_backbone\nb = build_backbone('hf:someone/tiny-bert')\n"
                      "print(b.num_features)", tmp_path / "hub")
    assert res.returncode == 0 and res.stdout.split()[-1] == "16", res.stderr[-1500:]
    assert "Retrying" not in res.stderr + res.stdout  # loaded from the snapshot folder: no request was tried
