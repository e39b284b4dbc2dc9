"""Calibration statistics of every layer, and the calibrated quantization of a network.

:func:`layer_statistics` runs integer inference (int8 weights, int8 activations, as the
hardware computes) on calibration images and collects, for every Conv, Gemm and MatMul,
its real int8 input laid out as reduction rows (:func:`.reference.conv_patches`, the
quantizer's order): the Hessian ``X^T X`` per group, the mean row ``E[x]``, and the
output positions per image (for cycle counts).

:func:`quantize_network` then quantizes every layer with its own config (a per-layer
policy, :mod:`.policy`) in one of three methods:

- ``plain``: :func:`.quantize.quantize`, the rule of the method notes;
- ``bc``: plain weights and bias correction (:func:`.output_aware.bias_correction`);
- ``oa``: output-aware weights (:func:`.output_aware.quantize_output_aware`) and bias
  correction; schemes it does not handle (int4, pot, 2:4, ...) get ``bc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from .config import StrumConfig
from .output_aware import (DEFAULT_DAMPING, OUTPUT_AWARE_SCHEMES, bias_correction,
                           quantize_output_aware)
from .quantize import QuantizedTensor, quantize
from .blocks import to_reduction
from .reference import conv_patches

__all__ = ["METHODS", "LayerStatistics", "layer_rows", "layer_statistics", "quantize_network",
           "quantize_layer", "quantize_model", "layer_output_sqnr", "calibration_images"]

#: Quantization methods: plain rule, bias correction only, output-aware + bias correction.
METHODS = ("plain", "bc", "oa")
#: Calibration rows per layer and batch beyond which every stride-th row is kept.
MAX_ROWS = 65_536
SAMPLE_SEED = 11


@dataclass(frozen=True)
class LayerStatistics:
    """Calibration statistics of one layer's int8 input, in the reduction order.

    Attributes
    ----------
    hessian : float64 ``[groups, N, N]``: ``sum x x^T`` over calibration rows (int8 units).
    mean : float64 ``[groups, N]``: ``E[x]`` in real units (``x_int8 * act_scale``).
    rows : int: rows seen per group.
    positions : int: output positions per image (1 for Gemm).
    act_scale : float
    """

    hessian: np.ndarray
    mean: np.ndarray
    rows: int
    positions: int
    act_scale: float

    @property
    def groups(self) -> int:
        return self.hessian.shape[0]


def layer_rows(layer, x_int8: np.ndarray) -> np.ndarray:
    """A layer's int8 input as reduction rows ``[groups, rows, N]`` (int64)."""
    if layer.op == "Conv":
        attrs = layer.attrs
        patches, _ = conv_patches(x_int8, layer.weight.shape[2:], stride=attrs["strides"],
                                  padding=attrs["pads"], dilation=attrs["dilations"],
                                  groups=attrs["group"])                 # [N, g, P, L]
        return np.moveaxis(patches, 1, 0).reshape(patches.shape[1], -1, patches.shape[-1])
    x = np.asarray(x_int8, dtype=np.int64)
    if layer.op == "Gemm":
        x = x.T if layer.attrs["transA"] else x
    elif layer.attrs.get("weight_operand", 1) == 0:
        x = np.swapaxes(x, -1, -2)
    return x.reshape(1, -1, x.shape[-1])


def layer_statistics(network, calibration, act_scales: Mapping[str, float] | None = None, *,
                     base: StrumConfig | None = None) -> dict[str, LayerStatistics]:
    """Statistics of every layer's input on the calibration images.

    Parameters
    ----------
    network : :class:`.inference.Network`
    calibration : numpy.ndarray
        Calibration images.
    act_scales : mapping or None
        Activation scales (:meth:`.inference.Network.calibrate`); computed when None.
    base : StrumConfig or None
        Rounding and accumulator width of the int8 pass.
    """
    base = base or StrumConfig()
    if act_scales is None:
        act_scales = network.calibrate(calibration)
    int8 = base.replace(scheme="int8", high_lanes=base.block_size, group_size=None)
    sums: dict[str, list] = {}

    def record(layer, x_int8, act_scale, acc):
        # Outputs per image and output channel: Conv positions, MatMul rows, Gemm 1.
        positions = acc.size // (acc.shape[0] * layer.weight.shape[0])
        entry = sums.setdefault(layer.name, [0.0, 0.0, 0, positions, act_scale])
        # Bounded memory and time on large feature maps: a few images at a time, and a
        # 1/stride sample of the rows (seeded, so deterministic; a regular stride would
        # alias with the image width) when a batch has more than MAX_ROWS.
        stride = -(-(acc.size // layer.weight.shape[0]) // MAX_ROWS)     # rows of the batch
        chunk = max(1, MAX_ROWS // positions) if layer.op == "Conv" else len(x_int8)
        for start in range(0, len(x_int8), chunk):
            rows = layer_rows(layer, x_int8[start:start + chunk])
            if stride > 1:
                count = rows.shape[1]
                keep = np.random.default_rng([SAMPLE_SEED, entry[2], count]).choice(
                    count, -(-count // stride), replace=False)
                rows = rows[:, np.sort(keep)]
            rows = rows.astype(np.float64)
            entry[0] = entry[0] + np.swapaxes(rows, 1, 2) @ rows
            entry[1] = entry[1] + rows.sum(axis=1)
            entry[2] += rows.shape[1]

    network.run_integer(calibration, network.quantize(int8), act_scales, int8, trace=record)
    return {name: LayerStatistics(hessian=h, mean=total / max(count, 1) * scale, rows=count,
                                  positions=positions, act_scale=scale)
            for name, (h, total, count, positions, scale) in sums.items()}


def _bias_gain(layer) -> float | None:
    """What multiplies the bias relative to the product (None: the bias cannot move it)."""
    if layer.op != "Gemm":
        return 1.0
    alpha, beta = layer.attrs["alpha"], layer.attrs["beta"]
    return None if beta == 0 or alpha == 0 else beta / alpha


def quantize_layer(layer, config: StrumConfig, statistics: LayerStatistics | None,
                   method: str = "oa", *, damping: float = DEFAULT_DAMPING) -> QuantizedTensor:
    """One layer with one config and method (see the module doc)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "plain" or statistics is None:
        if method != "plain":
            raise ValueError(f"method {method!r} of layer {layer.name!r} needs calibration statistics")
        return quantize(layer.weight, config, name=layer.name)
    if method == "oa" and config.scheme in OUTPUT_AWARE_SCHEMES:
        quantized = quantize_output_aware(layer.weight, config, statistics.hessian,
                                          groups=statistics.groups, damping=damping,
                                          name=layer.name)
    else:
        quantized = quantize(layer.weight, config, name=layer.name)
    gain = _bias_gain(layer)
    if gain is None:
        return quantized
    bias = bias_correction(layer.weight, quantized, statistics.mean, layer.bias,
                           groups=statistics.groups, gain=gain)
    return replace(quantized, bias=bias)


def quantize_network(network, configs, method: str = "oa",
                     statistics: Mapping[str, LayerStatistics] | None = None, *,
                     damping: float = DEFAULT_DAMPING,
                     short: str = "int8") -> dict[str, QuantizedTensor]:
    """Every layer of ``network`` quantized: ``{layer name: QuantizedTensor}``.

    ``configs`` is one :class:`StrumConfig` or a mapping layer name -> config; with one
    config, the short-reduction policy ``short`` (:func:`.quantize.short_config`) applies
    as in the plain quantizer.
    """
    from .quantize import short_config

    result = {}
    for layer in network.layers:
        config = short_config(configs, layer.weight, short) if isinstance(configs, StrumConfig) \
            else configs[layer.name]
        stats = None if statistics is None else statistics.get(layer.name)
        result[layer.name] = quantize_layer(layer, config, stats, method, damping=damping)
    return result


def layer_output_sqnr(layer, quantized: QuantizedTensor, statistics: LayerStatistics) -> float:
    """The layer's own output SQNR on the calibration rows, in dB, from its statistics.

    Signal ``E[(x . W_k)^2]``, noise ``E[(x . dW_k + db_k)^2]`` summed over channels, with
    ``dW`` the weight error and ``db`` the bias change of bias correction (Gemm alpha and
    beta ignored).
    """
    groups = statistics.groups
    weight = to_reduction(np.asarray(layer.weight, dtype=np.float64))
    error = to_reduction(quantized.dequantize()) - weight
    second = statistics.hessian / max(statistics.rows, 1) * statistics.act_scale ** 2
    shape = (groups, len(weight) // groups, -1)
    w, d = weight.reshape(shape), error.reshape(shape)
    signal = np.einsum("gkn,gnm,gkm->", w, second, w)
    noise = np.einsum("gkn,gnm,gkm->", d, second, d)
    if quantized.bias is not None:
        base = np.zeros(len(weight)) if layer.bias is None else layer.bias
        change = (quantized.bias - base).reshape(groups, -1)
        noise += 2 * np.einsum("gk,gkn,gn->", change, d, statistics.mean) + np.sum(change ** 2)
    if noise <= 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def calibration_images(spec) -> np.ndarray:
    """Calibration images of ``digits``, ``mnist`` or an ``.npz``.

    An ``.npz`` needs no labels here: its ``calibration`` array, else its ``images``.

    Raises
    ------
    InputError
        Unknown name, unreadable file, or no usable float array.
    """
    from pathlib import Path

    from .errors import InputError
    from .evaluate import load_data

    spec = str(spec)
    if spec in ("digits", "mnist"):
        return load_data(spec).calibration
    path = Path(spec)
    if path.suffix.lower() != ".npz" or not path.is_file():
        raise InputError(f"--calibration must be 'digits', 'mnist' or an existing .npz, "
                         f"not {spec!r}")
    from .npz import read_npz

    # The bounded reader: a damaged or crafted archive is one InputError, not a traceback.
    arrays = read_npz(path, keys=("calibration", "images"))
    key = next((k for k in ("calibration", "images") if k in arrays), None)
    images = None if key is None else arrays[key]
    if images is None or images.dtype.kind != "f" or images.ndim < 2 or len(images) == 0:
        raise InputError(f"{path}: expected a non-empty float array 'calibration' or "
                         f"'images' [N, ...]")
    return np.ascontiguousarray(images, dtype=np.float32)


def quantize_model(model, config: StrumConfig, calibration, *, method: str = "oa",
                   policy=None, base: StrumConfig | None = None):
    """``strum quantize --calibration``: every layer of an ONNX model, calibrated.

    Returns (list of :class:`.model.QuantizedLayer` in :func:`.onnx_io.load_layers`
    order, a report: each layer's own output SQNR on the calibration data and the
    policy's report or None). Layers inside subgraphs, which integer inference does not
    run, are quantized with the plain rule.
    """
    from .inference import Network
    from .model import QuantizedLayer
    from .onnx_io import load_layers

    network = model if isinstance(model, Network) else Network(model)
    calibration = network.check_images(calibration, "calibration images")
    act_scales = network.calibrate(calibration)
    statistics = layer_statistics(network, calibration, act_scales, base=base or config)
    chosen = None
    if policy is not None:
        chosen = policy.choose(network, config, method, statistics, calibration, act_scales)
        quantized = chosen.quantized
    else:
        quantized = quantize_network(network, config, method, statistics)
    layers = []
    for layer in load_layers(network.path):
        q = quantized.get(layer.name) if not layer.graph_path else None
        layers.append(QuantizedLayer(layer.name, layer.weight, q if q is not None
                                     else quantize(layer.weight, config, name=layer.name)))
    layer_sqnr = {layer.name: layer_output_sqnr(layer, quantized[layer.name], statistics[layer.name])
                  for layer in network.layers if layer.name in statistics}
    return layers, {"layer_output_sqnr_db": {name: (value if np.isfinite(value) else None)
                                             for name, value in layer_sqnr.items()},
                    "policy": None if chosen is None else chosen.report}
