"""Base int8 quantization per output channel (method section 1)."""

from __future__ import annotations

import numpy as np

from .rounding import clip, round_float

__all__ = ["channel_scale", "quantize_int8", "INT8_MAX"]

INT8_MAX = 127  # symmetric: -128 is never produced for weights


def channel_scale(vectors: np.ndarray, levels: int) -> np.ndarray:
    """``max|W_k| / levels`` per output channel (1 for an all-zero channel), float64 ``[K]``."""
    peak = np.abs(vectors).max(axis=1).astype(np.float64)
    return np.where(peak > 0, peak / levels, 1.0)


def quantize_int8(vectors: np.ndarray, rounding: str) -> tuple[np.ndarray, np.ndarray]:
    """``[K, N]`` floats to (q8 ``[K, N]`` int16 in -127..127, scale ``[K]`` float64)."""
    scale = channel_scale(vectors, INT8_MAX)
    # int16 rather than int8 leaves room for the rounding arithmetic of the low lanes.
    q8 = clip(round_float(vectors / scale[:, None], rounding), -INT8_MAX, INT8_MAX, np.int16)
    return q8, scale
