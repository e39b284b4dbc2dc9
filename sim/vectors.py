"""Test vectors for a PE: from the golden quantizer to the fields of the block stream.

Weights go through :func:`strum.quant.quantize.quantize` and, for the StruM schemes,
through the memory image (:func:`strum.quant.image.unpack_blocks`), so the PE is fed
exactly what a real image holds. The expected results are the golden dot products of
the quantizer's integer weights, wrapped to the accumulator width like the register.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strum.quant.blocks import to_blocks
from strum.quant.config import StrumConfig
from strum.quant.image import decode_blocks, lane_order, read_image, unpack_blocks
from strum.quant.quantize import quantize
from strum.quant.reference import ACT_MAX, ACT_MIN
from strum.quant.rounding import wrap_signed

__all__ = ["BlockVectors", "random_blocks", "blocks_from_image", "golden_results",
           "layout_fields", "weight_fields", "shared_fields", "random_activations", "random_boundaries"]

#: Blocks per output channel of the generated weight tensors.
BLOCKS_PER_CHANNEL = 8


@dataclass(frozen=True)
class BlockVectors:
    """A run of blocks for a PE, with its golden results.

    Attributes
    ----------
    config : StrumConfig
    act : int64 ``[n, B]`` activations, lane order.
    weights : int64 ``[n, B]`` the integer weight of every lane (the golden w_int).
    mask : bool ``[n, B]`` high lanes (all True for int8).
    high : int64 ``[n, H]`` high values, ascending lane order.
    low : uint8 ``[n, L]`` low codes, ascending lane order (zeros for the zero scheme).
    shift : int64 ``[n]`` DLIQ block shift (0 for other schemes).
    first, last : bool ``[n]`` reduction boundaries.
    expected : int64 ``[r]`` the accumulator after every block with ``last`` set.
    """

    config: StrumConfig
    act: np.ndarray
    weights: np.ndarray
    mask: np.ndarray
    high: np.ndarray
    low: np.ndarray
    shift: np.ndarray
    first: np.ndarray
    last: np.ndarray
    expected: np.ndarray

    def __len__(self) -> int:
        return self.act.shape[0]


def golden_results(config: StrumConfig, act, weights, first, last) -> np.ndarray:
    """Accumulator value after each block with ``last`` set, wrapped to ``acc_width``.

    A reduction runs from a block with ``first`` set (or from the start, where the
    accumulator is 0) to the block itself; a ``last`` without a following ``first``
    keeps accumulating, as the hardware does.
    """
    act = np.asarray(act, dtype=np.int64)
    dots = (act * np.asarray(weights, dtype=np.int64)).sum(axis=-1)
    first = np.asarray(first, dtype=bool)
    index = np.arange(dots.size)
    start = np.maximum.accumulate(np.where(first, index, 0))
    running = np.cumsum(dots)
    before_start = running[start] - dots[start]
    values = running - before_start
    return wrap_signed(values[np.asarray(last, dtype=bool)], config.acc_width)


def random_boundaries(n: int, rng: np.random.Generator, mean_blocks: float = 4.0):
    """Random reduction boundaries ``(first, last)`` over ``n`` blocks."""
    first = rng.random(n) < 1.0 / mean_blocks
    first[0] = True
    last = np.append(first[1:], True)
    return first, last


def random_activations(n: int, block_size: int, rng: np.random.Generator) -> np.ndarray:
    """int8 activations ``[n, B]``: uniform, with all -128, all 127, zero and ReLU-like blocks."""
    act = rng.integers(ACT_MIN, ACT_MAX + 1, size=(n, block_size))
    kind = rng.random(n)
    act[kind < 0.03] = ACT_MIN
    act[(kind >= 0.03) & (kind < 0.05)] = ACT_MAX
    act[(kind >= 0.05) & (kind < 0.06)] = 0
    relu = (kind >= 0.06) & (kind < 0.25)
    act[relu] = np.maximum(act[relu], 0)
    sparse_min = (kind >= 0.25) & (kind < 0.35)                 # -128 mixed in
    act[sparse_min] = np.where(rng.random((int(sparse_min.sum()), block_size)) < 0.5,
                               ACT_MIN, act[sparse_min])
    return act


def _random_weights(config: StrumConfig, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Float weights ``[channels, BLOCKS_PER_CHANNEL * B]`` that look like a trained layer's."""
    length = BLOCKS_PER_CHANNEL * config.block_size
    df = rng.choice([2.0, 3.0, 5.0, 10.0], size=(channels, 1))
    weights = rng.standard_t(df, size=(channels, length))
    laplace = rng.random(channels) < 0.3
    weights[laplace] = rng.laplace(size=(int(laplace.sum()), length))
    weights *= rng.lognormal(-3.0, 1.0, size=(channels, 1))    # per-channel spread
    kind = rng.random(channels)
    weights[kind < 0.02] = 0.0                                    # all-zero channel
    blocks = weights.reshape(channels, BLOCKS_PER_CHANNEL, config.block_size)
    peak = np.abs(weights).max(axis=1)
    corner = rng.random((channels, BLOCKS_PER_CHANNEL)) < 0.03    # all-max block: ties everywhere
    blocks[corner] = np.where(rng.random((int(corner.sum()), config.block_size)) < 0.5, -1, 1) \
        * np.repeat(peak, BLOCKS_PER_CHANNEL)[corner.ravel()][:, None]
    zero_block = rng.random((channels, BLOCKS_PER_CHANNEL)) < 0.03
    blocks[zero_block] = 0.0
    return blocks.reshape(channels, length)


def random_blocks(config: StrumConfig, n: int, seed: int, *, mean_blocks: float = 4.0) -> BlockVectors:
    """``n`` random blocks of quantized weights and activations, with golden results.

    The weights (Student-t and Laplace channels of random spread, with all-zero
    channels, all-zero blocks and all-max blocks) are quantized with ``config`` by the
    golden quantizer; StruM weights are then read back from the memory image. The
    reduction lengths are random (mean ``mean_blocks`` blocks) and are not limited by
    ``config``'s reduction limit, so a narrow accumulator wraps.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, not {n!r}")
    rng = np.random.default_rng(seed)
    channels = -(-n // BLOCKS_PER_CHANNEL)
    weights = _random_weights(config, channels, rng)
    # The accumulator width does not change the quantized weights; a narrow one would
    # only make quantize() refuse the tensor.
    quantized = quantize(weights, config.replace(acc_width=48, max_reduction_length=None))
    act = random_activations(n, config.block_size, rng)
    first, last = random_boundaries(n, rng, mean_blocks)
    if config.is_strum:
        _, _, image_blocks = read_image(quantized.packed)
        vectors = blocks_from_image(config, image_blocks.reshape(-1, config.block_bytes)[:n],
                                    act, first, last)
        w_int = to_blocks(quantized.w_int.astype(np.int64), config.block_size).reshape(-1, config.block_size)[:n]
        assert np.array_equal(vectors.weights, w_int), "the image decodes to the quantizer's w_int"
        return vectors
    w_int = to_blocks(quantized.w_int.astype(np.int64), config.block_size).reshape(-1, config.block_size)[:n]
    B = config.block_size
    return BlockVectors(
        config=config, act=act, weights=w_int, mask=np.ones((n, B), bool),
        high=w_int, low=np.zeros((n, 0), np.uint8), shift=np.zeros(n, np.int64),
        first=first, last=last, expected=golden_results(config, act, w_int, first, last))


def blocks_from_image(config: StrumConfig, image_blocks, act, first, last) -> BlockVectors:
    """Vectors from memory-image blocks ``uint8 [n, block_bytes]`` and activations ``[n, B]``."""
    fields = unpack_blocks(config, np.asarray(image_blocks, dtype=np.uint8))
    weights = decode_blocks(config, fields)
    act = np.asarray(act, dtype=np.int64)
    if act.shape != weights.shape:
        raise ValueError(f"act must have shape {weights.shape} (blocks x block_size), not {act.shape}")
    first, last = np.asarray(first, bool), np.asarray(last, bool)
    return BlockVectors(
        config=config, act=act, weights=weights, mask=fields.mask, high=fields.high,
        low=fields.low_codes, shift=fields.shift, first=first, last=last,
        expected=golden_results(config, act, weights, first, last))


def weight_fields(config: StrumConfig, variant: str, mask, high, low, shift) -> dict[str, np.ndarray]:
    """The weight fields of ``pe_block_layout(config, variant)`` from compacted block fields.

    ``mask`` bool ``[n, B]``, ``high`` ``[n, H]``, ``low`` ``[n, L]`` (ascending lane
    order, as in the memory image), ``shift`` ``[n]``; for the int8 variant ``high``
    holds all B weights. Array fields come out ``[n, count]``, the mask as an integer
    with lane 0 in bit 0; fields the layout leaves out (zero width) are left out.
    """
    B, H, L = config.block_size, config.high_lanes, config.low_lanes
    mask = np.asarray(mask, dtype=bool)
    mask_word = (mask.astype(np.int64) << np.arange(B, dtype=np.int64)).sum(axis=-1)
    fields = {}
    if variant == "int8":
        fields["weights"] = np.asarray(high, dtype=np.int64)
    elif variant == "static":
        fields["mask"] = mask_word
        if H:
            fields["high"] = np.asarray(high, dtype=np.int64)
        if L and config.scheme in ("dliq", "mip2q"):
            fields["low"] = np.asarray(low).astype(np.int64)
    elif variant == "dynamic":
        slots = np.zeros(mask.shape, dtype=np.int64)
        order = lane_order(mask)
        np.put_along_axis(slots, order[:, :H], np.asarray(high, dtype=np.int64), axis=-1)
        np.put_along_axis(slots, order[:, H:], np.asarray(low).astype(np.int64), axis=-1)
        fields["mask"] = mask_word
        fields["weights"] = slots
    else:
        raise ValueError(f"variant must be int8, static or dynamic, not {variant!r}")
    if config.scheme == "dliq":
        fields["shift"] = np.asarray(shift, dtype=np.int64)
    return fields


def layout_fields(vectors: BlockVectors, variant: str, shared: str = "none") -> dict[str, np.ndarray]:
    """Per-block arrays keyed by the field names of ``pe_block_layout(config, variant,
    shared)`` (see :func:`weight_fields`), activations and reduction boundaries included."""
    high = vectors.weights if variant == "int8" else vectors.high
    fields = {"act": vectors.act}
    fields.update(weight_fields(vectors.config, variant, vectors.mask, high, vectors.low,
                                vectors.shift))
    if shared != "none":
        fields.update(shared_fields(vectors.config, vectors.mask, vectors.act, shared))
        if shared == "route":
            del fields["act"]
        del fields["mask"]
    fields["first"] = vectors.first.astype(np.int64)
    fields["last"] = vectors.last.astype(np.int64)
    return fields


def shared_fields(config: StrumConfig, mask, act, shared: str) -> dict[str, np.ndarray]:
    """What a DPU row (``decode``) or the array edge (``route``) hands a static PE in place
    of its mask: per selection group, high lane r takes the r-th set bit's lane p and low
    lane r the r-th clear bit's, so the one-hot select is ``1 << (p - r)`` and the routed
    activation ``act[p]`` (see :mod:`strum.hw.mask_decoder`)."""
    G, h = config.group_size, config.high_per_group
    n = len(mask)
    groups = np.asarray(mask, bool).reshape(n, -1, G)
    order = lane_order(groups)                         # set bits, then clear bits, ascending
    offset = order - np.concatenate([np.arange(h), np.arange(G - h)])
    has_low = config.scheme in ("dliq", "mip2q") and config.low_lanes > 0
    if shared == "decode":
        select = np.int64(1) << offset
        fields = {"high_select": select[..., :h].reshape(n, -1)}
        if has_low:
            fields["low_select"] = select[..., h:].reshape(n, -1)
    elif shared == "route":
        routed = np.take_along_axis(np.asarray(act, np.int64).reshape(n, -1, G), order, axis=-1)
        fields = {"high_act": routed[..., :h].reshape(n, -1)}
        if has_low:
            fields["low_act"] = routed[..., h:].reshape(n, -1)
    else:
        raise ValueError(f"shared must be decode or route, not {shared!r}")
    return {name: value for name, value in fields.items() if value.shape[-1]}
