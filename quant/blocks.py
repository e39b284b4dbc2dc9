"""Reduction vectors and blocks: how a weight tensor is laid out for the hardware.

A weight tensor ``[K, C/g, *kernel]`` (or ``[K, C]``) becomes K reduction vectors with
the input channel innermost, i.e. read in (*kernel, C) order. Each vector is cut into
blocks of B consecutive lanes; the tail block is zero-padded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_reduction", "from_reduction", "to_blocks", "from_blocks", "block_count"]


def to_reduction(weights: np.ndarray) -> np.ndarray:
    """``[K, C, *kernel]`` to ``[K, N]`` with the input channel innermost."""
    if weights.ndim < 2:
        raise ValueError(
            f"a weight tensor needs at least 2 axes (output channels on axis 0), "
            f"not shape {tuple(weights.shape)}")
    return np.moveaxis(weights, 1, -1).reshape(weights.shape[0], -1)


def from_reduction(vectors: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`to_reduction` for a tensor of the given shape."""
    shape = tuple(shape)
    moved = (shape[0],) + shape[2:] + (shape[1],)
    return np.moveaxis(vectors.reshape(moved), -1, 1)


def block_count(length: int, block_size: int) -> int:
    return -(-length // block_size)


def to_blocks(vectors: np.ndarray, block_size: int) -> np.ndarray:
    """``[K, N]`` to ``[K, ceil(N/B), B]``, padding the tail with zeros."""
    channels, length = vectors.shape
    padded = block_count(length, block_size) * block_size
    if padded != length:
        vectors = np.concatenate(
            [vectors, np.zeros((channels, padded - length), dtype=vectors.dtype)], axis=1)
    return vectors.reshape(channels, -1, block_size)


def from_blocks(blocks: np.ndarray, length: int) -> np.ndarray:
    """``[K, nb, B]`` to ``[K, N]``, dropping the padding."""
    return blocks.reshape(blocks.shape[0], -1)[:, :length]
