"""Integer reference: int8 activations times integer weights, accumulated at a width.

This is the golden model the RTL is compared with. Sums are exact in int64 and then
wrapped to the accumulator width; since two's-complement wrap is a ring homomorphism,
the result equals a hardware accumulator that wraps after every addition, whatever
order the hardware adds in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .config import ACT_WIDTH
from .rounding import wrap_signed

__all__ = ["check_activations", "dot", "linear", "conv", "conv_output_shape", "conv_patches",
           "conv_transpose", "conv_transpose_input"]

ACT_MIN, ACT_MAX = -(1 << (ACT_WIDTH - 1)), (1 << (ACT_WIDTH - 1)) - 1


def check_activations(x: np.ndarray, name: str = "activations") -> np.ndarray:
    """int64 copy of int8-range activations, or a ValueError naming the problem."""
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, not dtype {x.dtype}")
    if x.size and (x.min() < ACT_MIN or x.max() > ACT_MAX):
        raise ValueError(f"{name} must lie in {ACT_MIN}..{ACT_MAX}, found {x.min()}..{x.max()}")
    return x.astype(np.int64)


def dot(activations: np.ndarray, weights: np.ndarray, acc_width: int) -> np.ndarray:
    """Dot products over the last axis, wrapped to ``acc_width`` bits."""
    a = check_activations(activations)
    return wrap_signed(np.sum(a * np.asarray(weights, dtype=np.int64), axis=-1), acc_width)


def linear(x: np.ndarray, w_int: np.ndarray, acc_width: int) -> np.ndarray:
    """``x [..., C] @ w_int[K, C].T`` as integers: ``[..., K]``."""
    x = check_activations(x)
    w = np.asarray(w_int, dtype=np.int64)
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: activations have {x.shape[-1]} features, weights expect {w.shape[1]}")
    return wrap_signed(x @ w.T, acc_width)


def _per_dim(value, dims: int, name: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * dims
    value = tuple(int(v) for v in value)
    if len(value) != dims:
        raise ValueError(f"conv: {name} needs {dims} values, not {len(value)}")
    return value


def _pads(padding, dims: int) -> tuple[tuple[int, int], ...]:
    """Padding as ((begin, end), ...) from an int, per-dim ints, or ONNX (begins..., ends...)."""
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * dims
    padding = [int(p) for p in padding]
    if len(padding) == dims:
        return tuple((p, p) for p in padding)
    if len(padding) == 2 * dims:
        return tuple(zip(padding[:dims], padding[dims:]))
    raise ValueError(f"conv: padding needs {dims} or {2 * dims} values, not {len(padding)}")


def conv_output_shape(spatial: Sequence[int], kernel: Sequence[int], stride=1, padding=0,
                      dilation=1) -> tuple[int, ...]:
    dims = len(spatial)
    stride, dilation = _per_dim(stride, dims, "stride"), _per_dim(dilation, dims, "dilation")
    pads = _pads(padding, dims)
    return tuple((n + b + e - d * (k - 1) - 1) // s + 1
                 for n, k, s, (b, e), d in zip(spatial, kernel, stride, pads, dilation))


def _windows(x, kernel, stride, padding, dilation):
    """Padded input windows ``[N, C, *out, *kernel]`` (a view where possible) and ``out``."""
    dims = x.ndim - 2
    stride, dilation = _per_dim(stride, dims, "stride"), _per_dim(dilation, dims, "dilation")
    x = np.pad(x, ((0, 0), (0, 0)) + _pads(padding, dims))
    out = conv_output_shape(x.shape[2:], kernel, stride, 0, dilation)
    if min(out) < 1:
        raise ValueError(f"conv: kernel {tuple(kernel)} with dilation {dilation} does not fit "
                         f"input {x.shape[2:]}")
    # Dilated kernel extent, then every stride-th start and every dilation-th tap.
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    windows = sliding_window_view(x, extent, axis=tuple(range(2, 2 + dims)))
    windows = windows[(slice(None), slice(None))
                      + tuple(slice(None, None, s) for s in stride)
                      + tuple(slice(None, None, d) for d in dilation)]
    return windows[(slice(None), slice(None)) + tuple(slice(0, o) for o in out)], out


def conv_patches(x: np.ndarray, kernel_shape, *, stride=1, padding=0, dilation=1,
                 groups: int = 1) -> tuple[np.ndarray, tuple[int, ...]]:
    """Each output position's input patch as a reduction vector: ``[N, groups, P, L]``.

    ``L = C/groups * prod(kernel)`` in the order of :func:`strum.quant.blocks.to_reduction`
    (kernel position outer, input channel innermost), so that patch ``p`` of group ``g``
    dotted with ``to_reduction(w_int)[k]`` (k in group g) is output ``[k, p]`` of
    :func:`conv`. ``P`` runs over the output positions in row-major order; returns the
    patches and the output spatial shape.
    """
    x = check_activations(x)
    dims = x.ndim - 2
    batch, channels = x.shape[:2]
    if dims < 1 or channels % groups:
        raise ValueError(f"conv: input {x.shape} does not fit groups={groups}")
    windows, out = _windows(x, tuple(kernel_shape), stride, padding, dilation)
    windows = windows.reshape((batch, groups, channels // groups) + out + tuple(kernel_shape))
    # [N, g, c, *out, *kernel] -> [N, g, *out, *kernel, c] -> [N, g, P, L]
    order = (0, 1) + tuple(range(3, 3 + 2 * dims)) + (2,)
    positions = int(np.prod(out))
    return windows.transpose(order).reshape(batch, groups, positions, -1), out


def conv(x: np.ndarray, w_int: np.ndarray, acc_width: int, *, stride=1, padding=0,
         dilation=1, groups: int = 1) -> np.ndarray:
    """N-d integer convolution (cross-correlation, as ONNX Conv) with zero padding.

    ``x`` is ``[N, C, *spatial]`` int8-range, ``w_int`` is ``[K, C/groups, *kernel]``;
    the result is ``[N, K, *out]`` wrapped to ``acc_width`` bits. ``padding`` is an int,
    one int per spatial axis, or ONNX pads ``(begin..., end...)``.
    """
    x = check_activations(x)
    w = np.asarray(w_int, dtype=np.int64)
    if x.ndim != w.ndim or x.ndim < 3:
        raise ValueError(f"conv: activations {x.shape} and weights {w.shape} must both be "
                         f"[N, C, *spatial] and [K, C/groups, *kernel]")
    dims = x.ndim - 2
    batch, channels = x.shape[:2]
    out_channels, group_channels = w.shape[:2]
    kernel = w.shape[2:]
    if groups < 1 or channels % groups or out_channels % groups or channels // groups != group_channels:
        raise ValueError(f"conv: {channels} input channels, {out_channels} output channels and "
                         f"weights {w.shape} do not fit groups={groups}")
    windows, out = _windows(x, kernel, stride, padding, dilation)
    # Grouped matmul: [N, g, C/g, *out, *kernel] x [g, K/g, C/g, *kernel].
    windows = windows.reshape((batch, groups, group_channels) + out + kernel)
    w = w.reshape((groups, out_channels // groups, group_channels) + kernel)
    letters = "abcdefghij"[:dims]
    kern = "pqrstuvwxy"[:dims]
    spec = f"ngc{letters}{kern},gkc{kern}->ngk{letters}"
    result = np.einsum(spec, windows, w, optimize=True)
    return wrap_signed(result.reshape((batch, out_channels) + out), acc_width)


def conv_transpose_input(x: np.ndarray, kernel_shape, *, stride=1, padding=0, dilation=1,
                         output_padding=0) -> np.ndarray:
    """The input of the convolution that computes a ConvTranspose (ONNX semantics).

    ``x [N, C, *spatial]`` upsampled by ``stride`` (``stride - 1`` zeros between
    samples), then padded by ``d * (k - 1) - pad_begin`` in front and
    ``d * (k - 1) - pad_end + output_padding`` behind (a negative amount crops). A
    stride-1 :func:`conv` of the result with the equivalent weight
    (:func:`strum.quant.onnx_io.conv_transpose_as_conv`) is the ConvTranspose.
    """
    x = check_activations(x)
    dims = x.ndim - 2
    kernel = tuple(int(k) for k in kernel_shape)
    stride, dilation = _per_dim(stride, dims, "stride"), _per_dim(dilation, dims, "dilation")
    extra = _per_dim(output_padding, dims, "output_padding")
    pads = _pads(padding, dims)
    up = np.zeros(x.shape[:2] + tuple((n - 1) * s + 1 for n, s in zip(x.shape[2:], stride)),
                  dtype=np.int64)
    up[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)] = x
    widths, crops = [], []
    for k, d, (b, e), o, n in zip(kernel, dilation, pads, extra, up.shape[2:]):
        begin, end = d * (k - 1) - b, d * (k - 1) - e + o
        widths.append((max(begin, 0), max(end, 0)))
        crops.append(slice(max(-begin, 0), n - max(-end, 0)))
    up = up[(slice(None), slice(None)) + tuple(crops)]
    return np.pad(up, ((0, 0), (0, 0)) + tuple(widths))


def conv_transpose(x: np.ndarray, w_conv: np.ndarray, acc_width: int, *, stride=1, padding=0,
                   dilation=1, output_padding=0, groups: int = 1) -> np.ndarray:
    """Integer ONNX ConvTranspose, ``w_conv`` in equivalent-Conv form ``[K, C/g, *kernel]``.

    Computed as :func:`conv` (stride 1) of :func:`conv_transpose_input`, so the
    accumulators and their reduction order are those of a convolution.
    """
    w = np.asarray(w_conv)
    up = conv_transpose_input(x, w.shape[2:], stride=stride, padding=padding,
                              dilation=dilation, output_padding=output_padding)
    return conv(up, w, acc_width, stride=1, padding=0, dilation=dilation, groups=groups)
