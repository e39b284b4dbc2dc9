"""Activation quantization: the one rule that turns a float tensor into the PE's int8 input.

Symmetric, one scale per tensor, no zero point (so the zero padding of a convolution is
the integer 0):

- scale ``s = m / 127``, where m is the largest ``|x|`` seen on the calibration set
  (or its ``percentile``-th percentile); ``s = 1`` when m is 0;
- ``x_int8 = clip(RND(x / s), -128, 127)`` with the config's RND (``haz`` or ``rne``).

The calibrated range maps onto -127..127; the clip uses the full int8 range the PE
accepts, so a value just beyond the calibrated range (seen at test time only) may
become -128. That only matters for the accumulator bound, which already assumes -128.
"""

from __future__ import annotations

import numpy as np

from .reference import ACT_MAX, ACT_MIN
from .rounding import clip, round_float

__all__ = ["ACT_LEVELS", "activation_scale", "quantize_activations"]

#: The calibrated maximum |x| maps to this integer.
ACT_LEVELS = ACT_MAX


def activation_scale(samples, percentile: float | None = None) -> float:
    """Per-tensor scale ``max|x| / 127`` (or the ``percentile``-th percentile of ``|x|``).

    Parameters
    ----------
    samples : array_like
        Every value the tensor took on the calibration set.
    percentile : float or None
        None: the maximum of ``|x|``; else a percentile in (0, 100] of ``|x|``.

    Raises
    ------
    ValueError
        For an empty or non-finite sample, or a percentile outside (0, 100].
    """
    samples = np.abs(np.asarray(samples, dtype=np.float64)).ravel()
    if samples.size == 0:
        raise ValueError("activation_scale: no calibration values")
    if not np.isfinite(samples).all():
        raise ValueError("activation_scale: calibration values contain NaN or Inf")
    if percentile is None:
        peak = float(samples.max())
    else:
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], not {percentile!r}")
        peak = float(np.percentile(samples, percentile))
    return peak / ACT_LEVELS if peak > 0 else 1.0


def quantize_activations(x, scale: float, rounding: str) -> np.ndarray:
    """``clip(RND(x / scale), -128, 127)`` as int8, with RND ``haz`` or ``rne``."""
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"activation scale must be a positive finite number, not {scale!r}")
    return clip(round_float(np.asarray(x, dtype=np.float64) / scale, rounding),
                ACT_MIN, ACT_MAX, np.int8)
