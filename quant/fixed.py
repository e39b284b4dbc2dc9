"""Fixed high lanes: a per-layer input-channel permutation instead of a per-block mask.

A PE with fixed high lanes (lanes ``0..h-1`` of every selection group of G lanes are
high, in every block of every layer) needs neither mask nor router. A layer makes
use of it by permuting its input channels offline: the permutation is applied to this
layer's input-channel axis and to the previous layer's output channels (and whatever
lies between them per channel: bias, batch norm, activation), so the network computes
the same function. The quantizer chooses the permutation to put the most weight
energy on the high lanes.

When the input channels of a group (C/g) are a multiple of B, block j of a reduction
vector holds input channels jB..jB+B-1 at one kernel position (method section 2), so a
lane is always the same input channel: the ``H*C/B`` channels with the most energy
(sum of w^2 over output channels and kernel positions) are placed on high lanes, the
rest on low lanes, each in order of their original index. Otherwise (the first layer
of a network, depthwise convs, C < B) no channel permutation makes lanes into
channels; the layer keeps the fixed lanes in natural order (no permutation), which is
what the router-less PE runs; :func:`plan_fixed` says which layers these are.
Everything else (int8 base, DLIQ/MIP2Q low lanes) is the quantizer's own rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import from_blocks, from_reduction, to_blocks, to_reduction
from .config import ConfigError, StrumConfig
from .int8 import quantize_int8
from .quantize import QuantizedTensor, validate_weights
from .strum import strum_weights

__all__ = ["FixedPlan", "fixed_lane_mask", "plan_fixed", "quantize_fixed"]


@dataclass(frozen=True)
class FixedPlan:
    """The input-channel permutation of one layer.

    Attributes
    ----------
    order : int64 ``[C/g]``: new channel i is old channel ``order[i]`` (identity when
        ``permuted`` is False).
    permuted : bool: a permutation could be used (C/g a multiple of B).
    high_energy : float: share of the layer's weight energy on high lanes.
    """

    order: np.ndarray
    permuted: bool
    high_energy: float


def fixed_lane_mask(config: StrumConfig) -> np.ndarray:
    """bool ``[B]``: the first ``high_per_group`` lanes of every selection group are high."""
    lane = np.arange(config.block_size)
    return (lane % config.group_size) < config.high_per_group


def _channel_energy(weights: np.ndarray) -> np.ndarray:
    """Energy per input channel of ``[K, C/g, *kernel]`` (or ``[K, C]``)."""
    w = np.asarray(weights, dtype=np.float64)
    return (w * w).sum(axis=tuple(i for i in range(w.ndim) if i != 1))


def plan_fixed(weights, config: StrumConfig) -> FixedPlan:
    """The permutation of a layer's input channels that keeps the most energy high."""
    if not config.is_strum:
        raise ConfigError(f"fixed high lanes need a StruM scheme, not {config.scheme!r}")
    weights = validate_weights(weights)
    channels = weights.shape[1]
    energy = _channel_energy(weights)
    lane_mask = fixed_lane_mask(config)
    if channels % config.block_size:
        order, permuted = np.arange(channels), False
        high = np.resize(lane_mask, channels)             # lane of channel c, 1-D/2-D layers
        if weights.ndim > 2:                               # lanes cycle through (kernel, C)
            vectors = to_reduction(np.asarray(weights, np.float64))
            lanes = np.resize(lane_mask, vectors.shape[1])
            total = (vectors ** 2).sum()
            return FixedPlan(order, False, float((vectors[:, lanes] ** 2).sum() / total) if total else 1.0)
    else:
        # Slots: lane-mask pattern repeated over the channels; strongest channels to high slots.
        slots_high = np.resize(lane_mask, channels)
        ranked = np.argsort(-energy, kind="stable")
        strong = np.sort(ranked[:slots_high.sum()])
        weak = np.sort(ranked[slots_high.sum():])
        order = np.empty(channels, dtype=np.int64)
        order[slots_high] = strong
        order[~slots_high] = weak
        permuted, high = True, slots_high
    total = energy.sum()
    share = float(energy[order][high].sum() / total) if total else 1.0
    return FixedPlan(order.astype(np.int64), permuted, share)


def quantize_fixed(weights, config: StrumConfig, plan: FixedPlan | None = None,
                   name: str = "weights") -> QuantizedTensor:
    """Quantize with fixed high lanes after the layer's permutation.

    The result is in the layer's *original* channel order (the permuted network computes
    the same function), so it drops into :meth:`Network.run_integer` and weight SQNR as
    any other :class:`QuantizedTensor`. ``packed`` is None: no mask is stored.
    """
    weights = validate_weights(weights, name)
    plan = plan or plan_fixed(weights, config)
    permuted = np.take(weights, plan.order, axis=1)
    vectors = to_reduction(permuted)
    channels, length = vectors.shape
    config.check_reduction_length(length, what=f"the reduction length of {name}")
    q8, scale = quantize_int8(vectors, config.rounding)
    q8_blocks = to_blocks(q8, config.block_size)
    mask = np.broadcast_to(fixed_lane_mask(config), q8_blocks.shape)
    w_blocks, _, _ = strum_weights(q8_blocks, mask, config.scheme, config.rounding)
    w_int = from_reduction(from_blocks(w_blocks, length), permuted.shape)
    mask_t = from_reduction(from_blocks(np.ascontiguousarray(mask), length), permuted.shape)
    inverse = np.argsort(plan.order)
    block_bits = config.high_lanes * 8 + config.low_lanes * (4 if config.scheme != "zero" else 0) \
        + (8 if config.scheme == "dliq" else 0)
    blocks = -(-length // config.block_size)
    return QuantizedTensor(
        config=config,
        w_int=np.take(w_int, inverse, axis=1).astype(np.int16),
        scale=scale.astype(np.float32),
        mask=np.take(mask_t, inverse, axis=1),
        packed=None,
        bits_per_weight=channels * blocks * block_bits / weights.size,
    )
