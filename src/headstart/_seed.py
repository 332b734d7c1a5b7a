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


def seed_epoch(seed: int, epoch: int) -> None:
    """Re-seed every RNG from (seed, epoch) at the start of a training epoch.

    Augmentation, dropout and shuffling of epoch k then depend only on the seed and k,
    not on what ran before: a fit resumed from the checkpoint of epoch k-1 sees the
    same epoch k as an uninterrupted one, and ends with the same weights.
    """
    seed_everything(int(np.random.SeedSequence([seed % 2**32, epoch]).generate_state(1)[0]))
