"""Rounding, clipping and accumulator wrap: every such rule of the project, once.

All functions are vectorised over NumPy arrays. Integers are int64 throughout.
"""

from __future__ import annotations

import numpy as np

__all__ = ["round_float", "round_shift", "clip", "bit_length", "wrap_signed"]


def round_float(x: np.ndarray, rounding: str) -> np.ndarray:
    """RND of a real array to int64: ``haz`` rounds half away from zero, ``rne`` to even."""
    x = np.asarray(x, dtype=np.float64)
    if rounding == "haz":
        rounded = np.sign(x) * np.floor(np.abs(x) + 0.5)
    elif rounding == "rne":
        rounded = np.rint(x)
    else:
        raise ValueError(f"rounding must be 'haz' or 'rne', not {rounding!r}")
    return rounded.astype(np.int64)


def round_shift(x: np.ndarray, shift: np.ndarray, rounding: str) -> np.ndarray:
    """RND(x / 2**shift) computed on integers (shift >= 0, broadcast against x).

    Works in x's integer dtype (int64 for other inputs): the caller picks a dtype wide
    enough for ``|x| + 2**(shift-1)``.
    """
    x = np.asarray(x)
    if x.dtype.kind != "i":
        x = x.astype(np.int64)
    shift = np.asarray(shift, dtype=x.dtype)
    half = (x.dtype.type(1) << shift) >> 1     # 0 when shift == 0: nothing to round
    if rounding == "haz":
        return np.sign(x) * ((np.abs(x) + half) >> shift)
    if rounding == "rne":
        floor = x >> shift                      # arithmetic shift: floor division
        rest = x - (floor << shift)
        up = (rest > half) | ((rest == half) & (half > 0) & ((floor & 1) == 1))
        return floor + up
    raise ValueError(f"rounding must be 'haz' or 'rne', not {rounding!r}")


def clip(x: np.ndarray, low: int, high: int, dtype=np.int64) -> np.ndarray:
    """Saturate to [low, high], as ``dtype``."""
    return np.clip(x, low, high).astype(dtype)


def bit_length(m: np.ndarray) -> np.ndarray:
    """Bit length of non-negative integers (bitlen(0) = 0), vectorised."""
    m = np.asarray(m, dtype=np.int64)
    # frexp gives m = f * 2**exp with 0.5 <= f < 1, so exp is the bit length (exact below 2**53).
    return np.frexp(m.astype(np.float64))[1].astype(np.int64)


def wrap_signed(x: np.ndarray, width: int) -> np.ndarray:
    """Two's-complement wrap of integers to ``width`` bits, as a hardware register does."""
    x = np.asarray(x, dtype=np.int64)
    if width >= 64:
        return x
    offset = np.int64(1) << (width - 1)
    return ((x + offset) & ((np.int64(1) << width) - 1)) - offset
