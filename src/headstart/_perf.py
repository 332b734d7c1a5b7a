"""Throughput and model FLOP utilisation (MFU): what a fit achieved against what this machine can do.

``matmul_peak(dtype)`` measures the machine's dense matmul rate (GFLOP/s) once
per process; it is the yardstick of every MFU figure, so that "30% MFU" means
30% of a large fp32 (or bf16) matmul on *this* machine, not of a datasheet.
``FlopCount`` counts the FLOPs of one real training step (forward + backward,
with the strategy's freezing) with ``torch.utils.flop_counter``.
"""

from __future__ import annotations

import time
from typing import Any

import torch

_PEAKS: dict[str, float] = {}


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 0.5) -> float:
    """GFLOP/s of an ``n x n`` matmul in ``dtype`` on the CPU with the current thread count (best of the runs)."""
    key = f"{dtype}|{n}|{torch.get_num_threads()}"
    if key not in _PEAKS:
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        torch.mm(a, b)  # warm-up: allocations, oneDNN kernel choice
        best, end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
        _PEAKS[key] = 2.0 * n**3 / best / 1e9
    return _PEAKS[key]


class FlopCount:
    """FLOPs counted between ``start()`` and ``stop()`` (the engine counts one training forward). Operations
    the counter does not know (e.g. embedding lookups) count as 0, so MFU is a lower bound."""

    def __init__(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self.mode = FlopCounterMode(display=False)
        self.active = False
        self.flops = 0

    def start(self) -> None:
        self.mode.__enter__()
        self.active = True

    def stop(self) -> None:
        if self.active:
            self.mode.__exit__(None, None, None)
            self.active = False
            self.flops = int(self.mode.get_total_flops())


def utilisation(flops_per_example: float, examples_per_second: float, bf16: bool) -> dict[str, Any]:
    """Achieved GFLOP/s and MFU against this machine's matmul peak in the training precision."""
    achieved = flops_per_example * examples_per_second / 1e9
    peak = matmul_peak(torch.bfloat16 if bf16 else torch.float32)
    return {"gflop_per_example": round(flops_per_example / 1e9, 4), "achieved_gflops": round(achieved, 2),
            "peak_gflops": round(peak, 1), "peak_dtype": "bf16" if bf16 else "fp32", "mfu": round(achieved / peak, 4)}


def bf16_supported() -> bool:
    """Whether the CPU runs bf16 natively (AVX-512 BF16 or AMX), or a CUDA device supports it."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
