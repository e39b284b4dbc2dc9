"""StruM: top-H selection per block and the low-lane forms DLIQ, MIP2Q and zero.

Method sections 3, 4a, 4b and 4c of ``shared/strum-method.md``. Everything here works
on the base int8 weights arranged in blocks ``[K, nb, B]`` (int64) and is vectorised.
"""

from __future__ import annotations

import numpy as np

from .config import LOW_WIDTH, MIP2Q_MAX_EXP
from .rounding import bit_length, clip, round_shift

__all__ = [
    "select_high", "dliq_shift", "dliq_low", "mip2q_magnitude", "mip2q_encode",
    "mip2q_decode", "dliq_encode", "dliq_decode", "strum_weights", "DLIQ_LOW_MIN", "DLIQ_LOW_MAX",
]

DLIQ_LOW_MIN = -(1 << (LOW_WIDTH - 1))        # -8
DLIQ_LOW_MAX = (1 << (LOW_WIDTH - 1)) - 1     # 7
_DLIQ_KEEP_BITS = LOW_WIDTH - 1                # e = max(0, bitlen(m) - 3)


def select_high(q8_blocks: np.ndarray, high_lanes: int, group_size: int,
                mask_share: int = 1) -> np.ndarray:
    """Mask ``[K, nb, B]``: True on the lanes that stay int8.

    In each group of ``group_size`` consecutive lanes, the ``high_lanes*G/B`` lanes of
    largest ``|q8|`` are high; ties go to the lower lane. With ``mask_share`` = k > 1,
    output channels 0..k-1, k..2k-1, ... share one mask, chosen by the sum of their
    ``|q8|`` (the last group may hold fewer channels).
    """
    if mask_share > 1:
        channels = q8_blocks.shape[0]
        shared = -(-channels // mask_share)
        pad = shared * mask_share - channels
        magnitude = np.abs(q8_blocks).astype(np.int64)
        if pad:
            magnitude = np.concatenate([magnitude, np.zeros((pad,) + magnitude.shape[1:], np.int64)])
        summed = magnitude.reshape((shared, mask_share) + magnitude.shape[1:]).sum(axis=1)
        mask = _select(summed, high_lanes, group_size, np.int64)
        return np.repeat(mask, mask_share, axis=0)[:channels]
    return _select(np.abs(q8_blocks), high_lanes, group_size)


def _select(magnitude: np.ndarray, high_lanes: int, group_size: int, dtype=np.int16) -> np.ndarray:
    """:func:`select_high` on non-negative magnitudes ``[K, nb, B]`` (``dtype``: of the
    sort key; a sum of k channels' magnitudes needs more than int16)."""
    channels, blocks, block_size = magnitude.shape
    per_group = high_lanes * group_size // block_size
    shape = (channels, blocks, block_size // group_size, group_size)
    if per_group == 0:
        return np.zeros(magnitude.shape, dtype=bool)
    # A key unique within the group that orders by magnitude, then by lower lane first:
    # |q8| * 32 + (31 - lane) fits int16, and sorting it is much faster than argsort.
    lane = np.arange(group_size, dtype=np.int16)
    key = magnitude.astype(dtype).reshape(shape) * 32 + (31 - lane).astype(dtype)
    threshold = np.sort(key, axis=-1)[..., group_size - per_group, None]
    return (key >= threshold).reshape(magnitude.shape)


# -- DLIQ: 4-bit integer and one shift per block -----------------------------------------

def dliq_shift(q8_blocks: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-block shift ``e = max(0, bitlen(m) - 3)``, m the largest low-lane ``|q8|``."""
    low_peak = np.where(mask, 0, np.abs(q8_blocks)).max(axis=-1)
    return np.maximum(0, bit_length(low_peak) - _DLIQ_KEEP_BITS).astype(q8_blocks.dtype)


def dliq_low(q8_blocks: np.ndarray, shift: np.ndarray, rounding: str) -> np.ndarray:
    """4-bit low values ``q4 = clip(RND(q8 / 2**e), -8, 7)`` for every lane."""
    return clip(round_shift(q8_blocks, shift[..., None], rounding), DLIQ_LOW_MIN, DLIQ_LOW_MAX,
                q8_blocks.dtype)


def dliq_encode(q4: np.ndarray) -> np.ndarray:
    """4-bit two's-complement code of a DLIQ low value."""
    return (np.asarray(q4, dtype=np.int64) & 0xF).astype(np.uint8)


def dliq_decode(code: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Integer weight ``q4 * 2**e`` of a DLIQ code (shift broadcast against code)."""
    code = np.asarray(code, dtype=np.int64) & 0xF
    q4 = code - ((code & 0x8) << 1)
    return q4 << np.asarray(shift, dtype=np.int64)


# -- MIP2Q: a signed power of two ---------------------------------------------------------

def mip2q_magnitude(magnitude: np.ndarray) -> np.ndarray:
    """Nearest of 0, 1, 2, 4, .., 64 to an integer magnitude; ties to the larger."""
    magnitude = np.asarray(magnitude, dtype=np.int64)
    exponent = bit_length(magnitude) - 1                      # 2**p <= m < 2**(p+1)
    exponent = exponent + (2 * magnitude >= 3 * (np.int64(1) << np.maximum(exponent, 0)))
    exponent = np.minimum(exponent, MIP2Q_MAX_EXP)            # saturate at 64
    return np.where(magnitude > 0, np.int64(1) << np.maximum(exponent, 0), 0)


def mip2q_encode(value: np.ndarray) -> np.ndarray:
    """4-bit code (sign << 3 | c) of 0 or ±2**p: c = 0 is zero, else p = c - 1."""
    value = np.asarray(value, dtype=np.int64)
    c = np.where(value != 0, bit_length(np.abs(value)), 0)   # bitlen(2**p) = p + 1
    return (((value < 0).astype(np.int64) << 3) | c).astype(np.uint8)


def mip2q_decode(code: np.ndarray) -> np.ndarray:
    code = np.asarray(code, dtype=np.int64)
    c = code & 0x7
    magnitude = np.where(c > 0, np.int64(1) << np.maximum(c - 1, 0), 0)
    return np.where(code & 0x8, -magnitude, magnitude)


# -- the whole block ----------------------------------------------------------------------

def strum_weights(q8_blocks: np.ndarray, mask: np.ndarray, scheme: str, rounding: str):
    """Integer weights ``[K, nb, B]``, 4-bit low codes ``[K, nb, B]`` and shifts ``[K, nb]``.

    High lanes keep q8; low lanes become DLIQ, MIP2Q or zero. Codes are only meaningful
    on low lanes; the shift is all zero except for DLIQ.
    """
    shift = np.zeros(q8_blocks.shape[:-1], dtype=np.int64)
    if scheme == "dliq":
        shift = dliq_shift(q8_blocks, mask)
        q4 = dliq_low(q8_blocks, shift, rounding)
        low_value, codes = q4 << shift[..., None], dliq_encode(q4)
    elif scheme == "mip2q":
        low_value = np.sign(q8_blocks) * mip2q_magnitude(np.abs(q8_blocks)).astype(q8_blocks.dtype)
        codes = mip2q_encode(low_value)
    elif scheme == "zero":
        low_value = np.zeros_like(q8_blocks)
        codes = np.zeros(q8_blocks.shape, dtype=np.uint8)
    else:
        raise ValueError(f"scheme must be dliq, mip2q or zero, not {scheme!r}")
    return np.where(mask, q8_blocks, low_value).astype(q8_blocks.dtype), codes, shift
