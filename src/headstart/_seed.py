"""Seeding: one seed reproduces a fit, and a resumed fit replays the same epochs."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_step(seed: int, *where: int) -> None:
    """Re-seed every RNG from (seed, epoch, position) before random work in training.

    The engine calls it when a training batch is built (augmentation) and before each
    training step (dropout): randomness then depends only on the seed and on where in
    the schedule it happens, not on what ran before in this process. A fit resumed from
    the checkpoint of epoch k sees the same epoch k+1 as an uninterrupted one, whatever
    Lightning prefetched or which hooks it skipped on restart.
    """
    seed_everything(int(np.random.SeedSequence([seed % 2**32, *where]).generate_state(1)[0]))
