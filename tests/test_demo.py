"""The embedded demo's claim holds: pretrained MiniLM beats the from-scratch baseline with few labels."""

from __future__ import annotations

from headstart.tasks.demo import run_demo


def test_demo_smallest_budget_transfer_beats_scratch() -> None:
    results = run_demo("runs/demo", budgets=(2,))
    acc = {r.strategy: r.accuracy for r in results}
    assert results[0].n_labeled == 12  # 2 labels x 6 topics, no selection split
    assert acc["linear"] > acc["scratch"] + 0.3
    assert acc["finetune"] > acc["scratch"] + 0.3
