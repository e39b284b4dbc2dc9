"""Output-aware StruM quantization: GPTQ/OBQ-style choices from calibration data.

The plain quantizer (:mod:`.quantize`) picks each block's high lanes by ``|q8|`` and
rounds every weight on its own, minimising the *weight* error. Given calibration
activations ``X`` of a layer (rows in the reduction order of :func:`.blocks.to_reduction`,
as :func:`.reference.conv_patches` lays them out), this module instead minimises the
layer's *output* error ``||X (W - W_q)^T||^2`` over what the format leaves free:

- the high lanes of every block (or selection group),
- the DLIQ block shift ``e`` (any of 0..4, not only the rule of method 4a),
- the value of every lane (rounding direction of each code),

and compensates the error of each quantized weight on the weights not yet quantized,
in the manner of GPTQ (Frantar et al., 2022): one pass over the reduction axis, block
by block, using the upper Cholesky factor ``U`` of the damped inverse Hessian
``(X^T X + lambda I)^-1``. Lane choices in a block use the OBS saliency
``(w - q)^2 / U_ii^2`` of each lane's two candidate values (high or low), the
SparseGPT criterion generalised from pruning to StruM's two levels. Every loop runs over
reduction columns; each step is vectorised over output channels (and groups).

The result is an ordinary :class:`.quantize.QuantizedTensor`: the blocks are encoded with
:mod:`.strum`'s codes and packed by :mod:`.image`, and ``w_int`` is *decoded from those
fields*, so the golden model, the memory image and the hardware see one set of weights.

Bias correction (:func:`bias_correction`) subtracts the expected output error
``E[x] (W_q - W)`` from each output channel's bias, for any scheme.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from .blocks import block_count, from_blocks, from_reduction, to_reduction
from .config import ConfigError, StrumConfig
from .image import compact, decode_blocks, pack_blocks, write_image
from .int8 import INT8_MAX, channel_scale
from .quantize import QuantizedTensor, _stored_bits, validate_weights
from .rounding import round_float
from .strum import DLIQ_LOW_MAX, DLIQ_LOW_MIN, dliq_encode, mip2q_encode

__all__ = ["OUTPUT_AWARE_SCHEMES", "DEFAULT_DAMPING", "quantize_output_aware",
           "bias_correction", "inverse_hessian_factor"]

#: Schemes the output-aware quantizer handles (int8 is StruM with H = B).
OUTPUT_AWARE_SCHEMES = ("dliq", "mip2q", "zero", "int8")
#: Damping, as a fraction of the mean Hessian diagonal (GPTQ's default).
DEFAULT_DAMPING = 0.01
#: Columns whose error is propagated lazily, in one matrix product (GPTQ's block of 128).
LAZY_COLUMNS = 128
_SHIFTS = np.arange(5)                          # DLIQ e = 0..4
_MIP2Q_VALUES = np.array([0.0] + [2.0 ** p for p in range(7)])


def inverse_hessian_factor(hessian: np.ndarray, damping: float = DEFAULT_DAMPING) -> np.ndarray:
    """Upper Cholesky factor ``U`` of ``(H + lambda I)^-1``, batched ``[G, N, N]``.

    Inputs never seen (zero diagonal) get a unit diagonal: their weights are rounded
    on their own and compensate nothing. ``lambda = damping * mean(diag H)``.
    """
    hessian = np.array(hessian, dtype=np.float64)
    diagonal = np.diagonal(hessian, axis1=-2, axis2=-1).copy()
    dead = diagonal <= 0
    index = np.arange(hessian.shape[-1])
    hessian[..., index, index] = np.where(dead, 1.0, diagonal)
    live = np.maximum((~dead).sum(axis=-1), 1)
    level = np.where(dead.all(axis=-1), 1.0, np.where(dead, 0.0, diagonal).sum(axis=-1) / live)
    hessian[..., index, index] += damping * np.asarray(level)[..., None]
    # With P the reversal permutation and P H P = L L^T, U = P L^-1 P is upper
    # triangular and U^T U = H^-1: one Cholesky and one triangular inverse (2n^3/3 flops)
    # instead of inverting H and factoring the inverse (2n^3).
    lower = np.linalg.cholesky(hessian[..., ::-1, ::-1])
    factor = np.empty_like(lower)
    for index, part in enumerate(lower.reshape((-1,) + lower.shape[-2:])):
        inverse, info = lapack.dtrtri(part, lower=1)
        if info:
            raise np.linalg.LinAlgError(f"triangular inverse failed (info {info})")
        factor.reshape((-1,) + lower.shape[-2:])[index] = inverse
    return np.ascontiguousarray(factor[..., ::-1, ::-1])


def _top_lanes(gain: np.ndarray, config: StrumConfig) -> np.ndarray:
    """Mask ``[..., B]``: the ``H*G/B`` lanes of largest gain per selection group
    (ties to the lower lane, as :func:`.strum.select_high`)."""
    block, group = config.block_size, config.group_size
    per_group = config.high_per_group
    if per_group == 0:
        return np.zeros(gain.shape, dtype=bool)
    if per_group == group:
        return np.ones(gain.shape, dtype=bool)
    shaped = gain.reshape(gain.shape[:-1] + (block // group, group))
    # Stable descending order: sort -gain; argsort(kind="stable") keeps lower lanes first.
    order = np.argsort(-shaped, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(group), axis=-1)
    return (rank < per_group).reshape(gain.shape)


def _high_value(w: np.ndarray, rounding: str) -> np.ndarray:
    return np.clip(round_float(w, rounding), -INT8_MAX, INT8_MAX).astype(np.float64)


def _dliq_values(w: np.ndarray, shift, rounding: str) -> np.ndarray:
    step = np.float64(2.0) ** shift
    return np.clip(round_float(w / step, rounding), DLIQ_LOW_MIN, DLIQ_LOW_MAX) * step


def _mip2q_value(w: np.ndarray) -> np.ndarray:
    """Nearest of 0, ±1, ±2, .., ±64 to a real value (ties to the larger magnitude)."""
    distance = np.abs(np.abs(w)[..., None] - _MIP2Q_VALUES)
    # Reversed argmin: on a tie the larger magnitude (later candidate) wins.
    nearest = len(_MIP2Q_VALUES) - 1 - np.argmin(distance[..., ::-1], axis=-1)
    return np.sign(w) * _MIP2Q_VALUES[nearest]


def _choose_block(w: np.ndarray, weight: np.ndarray, config: StrumConfig):
    """Mask and DLIQ shift of one block of every channel, by OBS saliency.

    ``w [G, Kg, B]`` are the (compensated) weights in int8 units, ``weight [G, 1, B]``
    ``1 / U_ii^2``. Returns (mask ``[G, Kg, B]``, shift ``[G, Kg]``).
    """
    high_error = (w - _high_value(w, config.rounding)) ** 2 * weight
    shift = np.zeros(w.shape[:-1], dtype=np.int64)
    if config.scheme == "dliq":
        low = _dliq_values(w[None], _SHIFTS[:, None, None, None], config.rounding)
        low_error = (w[None] - low) ** 2 * weight[None]                  # [5, G, Kg, B]
        masks = _top_lanes(low_error - high_error[None], config)
        cost = np.where(masks, high_error[None], low_error).sum(axis=-1)  # [5, G, Kg]
        shift = np.argmin(cost, axis=0)                                   # lowest e on a tie
        mask = np.take_along_axis(masks, shift[None, ..., None], axis=0)[0]
        return mask, shift
    if config.scheme == "mip2q":
        low_error = (w - _mip2q_value(w)) ** 2 * weight
    else:                                   # zero: low lanes are pruned (SparseGPT)
        low_error = w ** 2 * weight
    return _top_lanes(low_error - high_error, config), shift


def _lane_values(w: np.ndarray, mask: np.ndarray, shift: np.ndarray, config: StrumConfig):
    """Quantized value of lanes ``w [G, Kg]`` given their state (the column step)."""
    high = _high_value(w, config.rounding)
    if config.scheme == "dliq":
        low = _dliq_values(w, shift, config.rounding)
    elif config.scheme == "mip2q":
        low = _mip2q_value(w)
    else:
        low = np.zeros_like(w)
    return np.where(mask, high, low)


def quantize_output_aware(weights, config: StrumConfig, hessian, *, groups: int = 1,
                          damping: float = DEFAULT_DAMPING,
                          name: str = "weights") -> QuantizedTensor:
    """Quantize a weight tensor to minimise its output error on calibration data.

    Parameters
    ----------
    weights : array_like
        ``[K, C/g, *kernel]`` or ``[K, C]``, as :func:`.quantize.quantize` takes.
    config : StrumConfig
        Scheme ``dliq``, ``mip2q``, ``zero`` or ``int8``.
    hessian : array_like
        ``[groups, N, N]`` (or ``[N, N]``): ``X^T X`` of each group's calibration rows,
        in the reduction order (N = weights per output channel). Any positive scale.
    groups : int
        Conv groups: output channel k reads group ``k // (K / groups)``.
    damping : float
        Added to the diagonal, as a fraction of its mean.

    Returns
    -------
    QuantizedTensor
        Same per-channel scales as the plain quantizer, same memory image format.

    Raises
    ------
    ConfigError
        A scheme it does not handle, or a reduction too long for the accumulator.
    ValueError
        Bad weights, or a Hessian of the wrong shape.
    """
    if config.scheme not in OUTPUT_AWARE_SCHEMES:
        raise ConfigError(f"output-aware quantization handles schemes "
                          f"{', '.join(OUTPUT_AWARE_SCHEMES)}, not {config.scheme!r}")
    # Masks shared between channels (issue 12's mask_share, if present) would need one
    # choice per sharing set: not done here, so such configs are refused, not ignored.
    if getattr(config, "mask_share", None) not in (None, 0, 1, False):
        raise ConfigError(f"output-aware quantization does not support "
                          f"mask_share={config.mask_share!r} yet")
    weights = validate_weights(weights, name)
    vectors = to_reduction(weights)
    channels, length = vectors.shape
    config.check_reduction_length(length, what=f"the reduction length of {name}")
    hessian = np.asarray(hessian, dtype=np.float64)
    if hessian.ndim == 2:
        hessian = hessian[None]
    if (hessian.shape != (groups, length, length) or channels % groups
            or not np.isfinite(hessian).all()):
        raise ValueError(f"hessian of {name} must be finite [{groups}, {length}, {length}] for "
                         f"{channels} output channels in {groups} group(s), not "
                         f"{list(hessian.shape)}")
    if not 0 <= damping < np.inf:
        raise ValueError(f"damping must be a non-negative number, not {damping!r}")

    rule = config if config.scheme != "int8" else config.replace(
        scheme="dliq", high_lanes=config.block_size, group_size=None)
    block = config.block_size
    scale = channel_scale(vectors, INT8_MAX)
    padded = block_count(length, block) * block
    work = np.zeros((channels, padded))
    work[:, :length] = vectors / scale[:, None]
    work = work.reshape(groups, channels // groups, padded)
    # Padding lanes see no input: identity rows keep them independent (and zero).
    full = np.zeros((groups, padded, padded))
    full[:, :length, :length] = hessian
    factor = inverse_hessian_factor(full, damping)                   # U [G, N, N]
    diagonal = np.diagonal(factor, axis1=-2, axis2=-1)               # [G, N]

    values = np.zeros_like(work)
    masks = np.zeros(work.shape, dtype=bool)
    shifts = np.zeros((groups, channels // groups, padded // block), dtype=np.int64)
    for lazy_start in range(0, padded, LAZY_COLUMNS):
        lazy_end = min(padded, lazy_start + LAZY_COLUMNS)
        errors = np.zeros(work.shape[:2] + (lazy_end - lazy_start,))
        for start in range(lazy_start, lazy_end, block):
            end = start + block
            d = diagonal[:, start:end]
            mask, shift = _choose_block(work[:, :, start:end], (1.0 / d ** 2)[:, None, :], rule)
            masks[:, :, start:end] = mask
            shifts[:, :, start // block] = shift
            for column in range(start, end):
                w = work[:, :, column]
                q = _lane_values(w, mask[:, :, column - start], shift, rule)
                values[:, :, column] = q
                error = (w - q) / d[:, None, column - start]
                errors[:, :, column - lazy_start] = error
                # Compensate the rest of this lazy window now, the remainder in one product.
                work[:, :, column + 1:lazy_end] -= (error[:, :, None]
                                                    * factor[:, None, column, column + 1:lazy_end])
        if lazy_end < padded:
            work[:, :, lazy_end:] -= errors @ factor[:, lazy_start:lazy_end, lazy_end:]

    values = values.reshape(channels, -1, block)
    masks = masks.reshape(channels, -1, block)
    shifts = shifts.reshape(channels, -1)
    return _assemble(config, rule, weights.shape, values, masks, shifts, scale)


def _assemble(config, rule, shape, values, masks, shifts, scale) -> QuantizedTensor:
    """Encode the chosen values with :mod:`.strum`'s codes, pack them, decode ``w_int``."""
    channels = shape[0]
    length = int(np.prod(shape[1:]))
    values = values.astype(np.int64)
    if rule.scheme == "dliq":
        codes = dliq_encode(values >> shifts[..., None])               # exact: q4 * 2**e
    elif rule.scheme == "mip2q":
        codes = mip2q_encode(values)
    else:
        codes = np.zeros(values.shape, dtype=np.uint8)
    fields = compact(rule, masks, values, codes, shifts)
    w_blocks = decode_blocks(rule, fields)
    if not np.array_equal(w_blocks, values):
        raise AssertionError("output-aware values do not survive their own encoding")
    packed = None
    if config.is_strum:
        packed = np.frombuffer(write_image(config, shape, pack_blocks(config, fields)), np.uint8)
    w_vec = from_blocks(w_blocks, length)
    mask_vec = from_blocks(masks, length)
    return QuantizedTensor(
        config=config,
        w_int=from_reduction(w_vec, shape).astype(np.int16),
        scale=scale.astype(np.float32),
        mask=from_reduction(mask_vec, shape),
        packed=packed,
        bits_per_weight=_stored_bits(config, channels, length) / (channels * length),
    )


def bias_correction(weights, quantized: QuantizedTensor, mean, bias=None, *,
                    groups: int = 1, gain: float = 1.0) -> np.ndarray:
    """The bias that cancels the expected output error of quantized weights.

    ``bias' = bias - E[x] . (W_q - W) / gain`` per output channel, ``W_q`` the
    dequantized weight, ``E[x]`` ``mean [groups, N]`` (real units, reduction order).
    ``gain`` is what multiplies the bias relative to the product (Gemm: beta / alpha).
    A layer without a bias gets one. Returns float64 ``[K]``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    error = to_reduction(quantized.dequantize() - weights)               # [K, N]
    channels = len(error)
    mean = np.asarray(mean, dtype=np.float64).reshape(groups, 1, -1)
    shift = (error.reshape(groups, channels // groups, -1) * mean).sum(axis=-1).reshape(-1)
    base = np.zeros(channels) if bias is None else np.asarray(bias, dtype=np.float64)
    return base - shift / gain
