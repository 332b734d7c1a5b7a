"""Seeding: one seed reproduces a fit, and a resumed fit replays the same epochs."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch RNGs (every device's, including accelerators not started yet)."""
    _seed_started(seed)
    torch.manual_seed(seed)  # also queues the seed for accelerators that start later


def _seed_started(seed: int) -> None:
    """Python, NumPy, torch's CPU RNG and the RNGs of the accelerators already in use.

    ``torch.manual_seed`` also queues a seed for every accelerator that is not initialised yet, and each
    queued seed formats the whole stack trace: called twice per training step on a CPU-only machine, that
    cost ~8 ms per step inside Lightning's deep stack (2% of a MobileNet x0.25 step here). An accelerator
    started later is seeded by the next call after it starts.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    if torch.backends.mps.is_available():
        torch.mps.manual_seed(seed)
    if hasattr(torch, "xpu") and torch.xpu.is_initialized():
        torch.xpu.manual_seed_all(seed)


def seed_step(seed: int, *where: int) -> None:
    """Re-seed every RNG in use from (seed, epoch, position) before random work in training.

    The engine calls it when a training batch is built (augmentation) and before each
    training step (dropout): randomness then depends only on the seed and on where in
    the schedule it happens, not on what ran before in this process. A fit resumed from
    the checkpoint of epoch k sees the same epoch k+1 as an uninterrupted one, whatever
    Lightning prefetched or which hooks it skipped on restart.
    """
    _seed_started(int(np.random.SeedSequence([seed % 2**32, *where]).generate_state(1)[0]))
