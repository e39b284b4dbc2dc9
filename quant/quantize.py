"""Quantize one weight tensor with any scheme: the golden quantizer's entry point."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import block_count, from_blocks, from_reduction, to_blocks, to_reduction
from .config import (INT4_G16_GROUP, INT4_G16_SCALE_BITS, MIP2Q_MAX_EXP, SCHEMES, ConfigError,
                     StrumConfig)
from .image import compact, pack_blocks, write_image
from .int8 import channel_scale, quantize_int8
from .rounding import clip, round_float
from .strum import mip2q_magnitude, select_high, strum_weights

__all__ = ["QuantizedTensor", "quantize", "sqnr_db", "validate_weights", "SHORT_POLICIES",
           "short_config"]

INT4_MAX = 7
POT_MAX = 2 ** MIP2Q_MAX_EXP
TWO_FOUR_METADATA_BITS = 2    # 2:4 stores a 2-bit lane index per kept value
CHUNK_WEIGHTS = 1 << 20
#: Short reductions, for StruM schemes: a layer whose memory image would cost more bits
#: per weight than int8 (a reduction shorter than the block, like a depthwise 3x3 at
#: B = 16, or just past a multiple of B) is kept int8 under ``int8`` (stored without
#: block padding, counted at 8 bits per weight; it needs int8-capable lanes: the int8 or
#: the dynamic StruM PE), or quantized like any layer under ``pad`` (zero-padded blocks,
#: all counted). ``docs/method.md`` says why ``int8`` is the default.
SHORT_POLICIES = ("int8", "pad")


@dataclass(frozen=True)
class QuantizedTensor:
    """One quantized weight tensor.

    Attributes
    ----------
    config : StrumConfig
    w_int : int16, the tensor's shape: the integer weight the hardware multiplies by.
    scale : float32 ``[K]``: weight ~= w_int * scale per output channel.
    mask : bool, the tensor's shape: True where the lane is high precision (int8).
    packed : uint8 or None: the memory image file (StruM schemes only).
    bits_per_weight : stored bits per weight, counting every per-block field (mask,
        shift, group scale) and padding, leaving out per-output-channel scales.
    bias : float64 ``[K]`` or None: a corrected bias that replaces the layer's own
        (bias correction from calibration, :mod:`.calibrate`); None keeps the layer's.
    notes : tuple of str
        What was degenerate about the tensor and how it was treated (all-zero weights,
        channels too small for a float32 scale); empty for an ordinary tensor.
    """

    config: StrumConfig
    w_int: np.ndarray
    scale: np.ndarray
    mask: np.ndarray
    packed: np.ndarray | None
    bits_per_weight: float
    bias: np.ndarray | None = None
    notes: tuple = ()

    def dequantize(self) -> np.ndarray:
        shape = (-1,) + (1,) * (self.w_int.ndim - 1)
        return self.w_int.astype(np.float64) * self.scale.astype(np.float64).reshape(shape)


def validate_weights(weights, name: str = "weights") -> np.ndarray:
    """Float64 copy of a weight tensor, or a ValueError naming what is wrong with it."""
    weights = np.asarray(weights)
    if weights.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, not dtype {weights.dtype}")
    if weights.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(weights.shape)})")
    if weights.ndim < 2:
        raise ValueError(f"{name} needs at least 2 axes (output channels on axis 0), "
                         f"not shape {tuple(weights.shape)}")
    weights = weights.astype(np.float64)
    if not np.isfinite(weights).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return weights


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    reference = np.asarray(reference, dtype=np.float64)
    approximation = np.asarray(approximation, dtype=np.float64)
    peak = float(np.abs(reference).max()) if reference.size else 0.0
    if peak > 0:
        # Scale by a power of two (exact) so tiny or huge weights neither underflow nor
        # overflow when squared: denormal weights flushed to zero are 0 dB, not "exact".
        exponent = -int(np.frexp(peak)[1])
        reference, approximation = np.ldexp(reference, exponent), np.ldexp(approximation, exponent)
    noise = np.sum((reference - approximation) ** 2)
    signal = np.sum(reference ** 2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def quantize(weights, config: StrumConfig, name: str = "weights") -> QuantizedTensor:
    """Quantize a weight tensor ``[K, C/g, *kernel]`` or ``[K, C]`` with ``config``.

    Raises
    ------
    ValueError
        For an empty tensor, NaN/Inf, fewer than 2 axes, or a reduction vector too long
        for the accumulator (:class:`ConfigError`).
    """
    weights = validate_weights(weights, name)
    vectors = to_reduction(weights)
    channels, length = vectors.shape
    vectors, notes = _degenerate(vectors)
    try:
        config.check_reduction_length(length, what=f"the reduction length of {name}")
    except ConfigError as error:
        raise ConfigError(str(error)) from None
    quantizer = _SCHEMES[config.scheme]
    # Output channels are independent: working on chunks of about CHUNK_WEIGHTS keeps
    # the temporaries small enough to be reused instead of page-faulted in afresh.
    rows = max(1, CHUNK_WEIGHTS // length)
    rows = -(-rows // config.mask_share) * config.mask_share     # a mask group stays whole
    parts = [quantizer(vectors[start:start + rows], config)
             for start in range(0, channels, rows)]
    w_vec, mask_vec, scale, image_blocks = (
        None if part[0] is None else np.concatenate(part) for part in zip(*parts))
    packed = None
    if image_blocks is not None:
        packed = np.frombuffer(write_image(config, weights.shape, image_blocks), dtype=np.uint8)
    return QuantizedTensor(
        config=config,
        w_int=from_reduction(w_vec, weights.shape).astype(np.int16),
        scale=scale.astype(np.float32),
        mask=from_reduction(mask_vec, weights.shape),
        packed=packed,
        bits_per_weight=_stored_bits(config, channels, length) / weights.size,
        notes=notes,
    )


#: A channel whose largest |w| is below this has no float32 scale for every scheme
#: (the smallest scale is max|w| / 1785, int4-g16's); float32.tiny ~ 1.2e-38.
SMALLEST_CHANNEL_PEAK = float(np.finfo(np.float32).tiny) * 2048


def _degenerate(vectors: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Flush channels too small for a float32 scale to zero; say what was degenerate."""
    peak = np.abs(vectors).max(axis=1)
    tiny = (peak > 0) & (peak < SMALLEST_CHANNEL_PEAK)
    notes = []
    if tiny.any():
        vectors = np.where(tiny[:, None], 0.0, vectors)
        notes.append(f"{int(tiny.sum())} of {len(peak)} output channels have weights too small "
                     f"for a float32 scale (largest |w| {peak[tiny].max():.3g}, below "
                     f"{SMALLEST_CHANNEL_PEAK:.3g}): quantized as zero")
    if not (peak > 0).any():
        notes.append("all weights are zero: quantized exactly as zero")
    elif not tiny.any() and not (peak > 0).all():
        notes.append(f"{int((peak == 0).sum())} of {len(peak)} output channels are all zero")
    return vectors, tuple(notes)


def _stored_bits(config: StrumConfig, channels: int, length: int) -> int:
    """Bits the tensor occupies in memory, every per-block field and padding included."""
    if config.is_strum:
        blocks, shared = block_count(length, config.block_size), -(-channels // config.mask_share)
        return (channels * blocks * config.block_bytes
                - (channels - shared) * blocks * config.mask_bytes) * 8
    if config.scheme == "int4-g16":
        groups = channels * block_count(length, INT4_G16_GROUP)
        return channels * length * 4 + groups * INT4_G16_SCALE_BITS
    if config.scheme == "2:4":
        return channels * block_count(length, 4) * 2 * (8 + TWO_FOUR_METADATA_BITS)
    return channels * length * {"int8": 8, "int4": 4, "pot": 4}[config.scheme]


# -- one function a scheme, on a chunk of output channels; each returns
#    (w_int [K, N], mask [K, N], scale [K], image blocks [K, nb, block_bytes] or None) ----

def _strum(vectors, config):
    length = vectors.shape[1]
    q8, scale = quantize_int8(vectors, config.rounding)
    q8_blocks = to_blocks(q8, config.block_size)
    mask = select_high(q8_blocks, config.high_lanes, config.group_size, config.mask_share)
    w_blocks, codes, shift = strum_weights(q8_blocks, mask, config.scheme, config.rounding)
    image_blocks = pack_blocks(config, compact(config, mask, w_blocks, codes, shift))
    return from_blocks(w_blocks, length), from_blocks(mask, length), scale, image_blocks


def _int8(vectors, config):
    q8, scale = quantize_int8(vectors, config.rounding)
    return q8, np.ones(q8.shape, bool), scale, None


def _int4(vectors, config):
    scale = channel_scale(vectors, INT4_MAX)
    q4 = clip(round_float(vectors / scale[:, None], config.rounding), -INT4_MAX, INT4_MAX)
    return q4, np.zeros(q4.shape, bool), scale, None


def _int4_g16(vectors, config):
    # Group scales are integer multiples (1..255) of one channel scale, so that the
    # weight is an integer times the channel scale like every other scheme.
    channels, length = vectors.shape
    groups = to_blocks(vectors, INT4_G16_GROUP)                        # [K, ng, 16]
    group_scale = np.abs(groups).max(axis=-1) / INT4_MAX               # [K, ng]
    max_multiplier = 2 ** INT4_G16_SCALE_BITS - 1
    peak = group_scale.max(axis=1)
    scale = np.where(peak > 0, peak / max_multiplier, 1.0)
    multiplier = clip(round_float(group_scale / scale[:, None], config.rounding), 1, max_multiplier)
    step = multiplier * scale[:, None]
    q4 = clip(round_float(groups / step[..., None], config.rounding), -INT4_MAX, INT4_MAX)
    w_int = from_blocks(q4 * multiplier[..., None], length)
    return w_int, np.zeros(w_int.shape, bool), scale, None


def _pot(vectors, config):
    scale = channel_scale(vectors, POT_MAX)
    q = clip(round_float(vectors / scale[:, None], config.rounding), -POT_MAX, POT_MAX)
    w_int = np.sign(q) * mip2q_magnitude(np.abs(q))
    return w_int, np.zeros(w_int.shape, bool), scale, None


def _two_four(vectors, config):
    length = vectors.shape[1]
    q8, scale = quantize_int8(vectors, config.rounding)
    blocks = to_blocks(q8, 4)
    keep = select_high(blocks, 2, 4)
    w_int = from_blocks(np.where(keep, blocks, 0), length)
    return w_int, from_blocks(keep, length), scale, None


_SCHEMES = {
    "dliq": _strum, "mip2q": _strum, "zero": _strum,
    "int8": _int8, "int4": _int4, "int4-g16": _int4_g16, "pot": _pot, "2:4": _two_four,
}
assert set(_SCHEMES) == set(SCHEMES), "every scheme of the config has a quantizer"


def short_config(config: StrumConfig, weight: np.ndarray, short: str = "int8") -> StrumConfig:
    """The config a layer of this weight shape gets under a short-reduction policy
    (:data:`SHORT_POLICIES`): ``config`` itself, or int8 where StruM's blocks would cost
    more than 8 bits per weight."""
    if short not in SHORT_POLICIES:
        raise ValueError(f"short must be one of {', '.join(SHORT_POLICIES)}, not {short!r}")
    length = int(np.prod(np.shape(weight)[1:]))
    if short == "int8" and config.is_strum and \
            block_count(length, config.block_size) * config.block_bytes > length:
        return config.replace(scheme="int8")
    return config
