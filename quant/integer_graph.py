"""Integer inference in onnxruntime: every MAC layer rewritten into exact integer arithmetic.

onnxruntime runs the whole model; only the quantized layers (Conv, ConvTranspose, Gemm,
MatMul with a constant weight, BatchNormalization folded in) are replaced by a small
subgraph that computes exactly what the hardware computes:

1. **activation** (:mod:`.activation`): ``Cast`` to double, divide by the tensor's scale,
   round (``haz``: ``Sign(q) * Floor(Abs(q) + 0.5)``; ``rne``: ``Round``), clip to
   -128..127: the same IEEE double operations as :func:`.activation.quantize_activations`,
   so the same int8 values;
2. **accumulation**: the original operator with the integer weights as float32 and the
   int8 activations as float32. Every product and every partial sum is an integer of
   magnitude at most ``128 * sum|w_k|`` (per output channel); below 2**24 float32 holds
   it exactly, so the sum is exact whatever order the kernel adds in. A layer beyond
   that bound is cut into input-channel slices that each stay below it, and the slices'
   sums are added in double (a single channel too long for that: the weights are split by
   value, ``hi * 2**m + lo``; Gemm and MatMul run in double directly, exact below 2**53);
   the sum is wrapped to ``acc_width`` bits when it could exceed it;
3. **dequantization**: ``acc * s_act * s_w[k] (* alpha) + bias`` in double, then float32
   for the following operators.

Why onnxruntime and not onnx's ReferenceEvaluator with the MAC operators overridden:
both are exact (the MAC arithmetic is ours in either), but the reference evaluator runs
its other operators in Python (pooling, resize, ...) and was 30-300x slower on the
models of ``docs/accuracy.md`` (measured there).
"""

from __future__ import annotations


import numpy as np

from .onnx_io import Layer, conv_as_conv_transpose

__all__ = ["FLOAT32_EXACT", "rewrite", "accumulator_bound"]

FLOAT32_EXACT = 2 ** 24
FLOAT64_EXACT = 2 ** 53
_ACT_MAGNITUDE = 128


def accumulator_bound(w_int: np.ndarray) -> np.ndarray:
    """Per output channel, the largest ``|acc|`` any int8 input can give: ``128 * sum|w_k|``."""
    w = np.abs(np.asarray(w_int, dtype=np.int64))
    return _ACT_MAGNITUDE * w.reshape(len(w), -1).sum(axis=1)


def _channel_shape(layer: Layer) -> tuple[int, ...]:
    """Shape that broadcasts a per-output-channel vector against the layer's output."""
    if layer.op in ("Conv", "ConvTranspose"):
        return (-1,) + (1,) * (layer.weight.ndim - 2)
    if layer.op == "MatMul" and layer.attrs["weight_operand"] == 0:
        return (-1, 1)
    return (-1,)


def _stored_weight(layer: Layer, weight: np.ndarray) -> np.ndarray:
    """A weight in Layer orientation back in the node's own layout."""
    if layer.op == "ConvTranspose":
        return conv_as_conv_transpose(weight, layer.attrs["group"])
    if layer.op == "Gemm":
        return weight if layer.attrs["transB"] else weight.T
    if layer.op == "MatMul":
        return weight.T if layer.attrs["weight_operand"] == 1 else weight
    return weight


class _Builder:
    """Collects new nodes and initializers under unique names."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.nodes = []
        self.initializers = []
        self._count = 0

    def name(self, what: str) -> str:
        self._count += 1
        return f"{self.prefix}/{what}{self._count}"

    def const(self, array, what: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(what)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs, what: str = "", outputs=None, **attrs) -> str:
        from onnx import helper

        outputs = outputs or [self.name(what or op.lower())]
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs),
                                           name=self.name(op), **attrs))
        return outputs[0]


def _quantize_input(b: _Builder, x: str, scale: float, rounding: str) -> str:
    """int8 activations as double, by the rule of :mod:`.activation`."""
    from onnx import TensorProto

    q = b.node("Div", [b.node("Cast", [x], to=TensorProto.DOUBLE), b.const(np.float64(scale))])
    if rounding == "haz":
        half = b.node("Add", [b.node("Abs", [q]), b.const(np.float64(0.5))])
        r = b.node("Mul", [b.node("Sign", [q]), b.node("Floor", [half])])
    else:
        r = b.node("Round", [q])
    # Max/Min rather than Clip: they take double at every opset.
    return b.node("Min", [b.node("Max", [r, b.const(np.float64(-128))]), b.const(np.float64(127))])


def _slices(w_int: np.ndarray) -> list[tuple[int, int]] | None:
    """Input-channel ranges whose partial sums each stay exact in float32, or None when
    a single input channel's sum can already go beyond."""
    w = np.abs(np.asarray(w_int, dtype=np.int64))
    # [K, C/g, *kernel] -> per (output channel, input channel) sum over the kernel
    per_channel = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2) * _ACT_MAGNITUDE
    if np.any(per_channel >= FLOAT32_EXACT):
        return None
    ranges, start, running = [], 0, np.zeros(len(w), np.int64)
    for c in range(w.shape[1]):
        if np.any(running + per_channel[:, c] >= FLOAT32_EXACT):
            ranges.append((start, c))
            start, running = c, np.zeros(len(w), np.int64)
        running += per_channel[:, c]
    ranges.append((start, w.shape[1]))
    return ranges


def _exact_conv(b: _Builder, layer: Layer, op: str, x32: str, w_int: np.ndarray,
                attrs: dict) -> str:
    """``op`` (Conv or ConvTranspose) of int8 values and integer weights, exact, as double.

    Below the float32 bound one float32 operator does it; above, the input channels are
    cut into slices that each stay below it (ungrouped layers), or else the weights are
    split by value, ``w = hi * 2**m + lo`` with ``0 <= lo < 2**m``, each part exact on its
    own and recombined in double (exact below 2**53).
    """
    from onnx import TensorProto

    if int(accumulator_bound(w_int).max()) < FLOAT32_EXACT:
        w = b.const(_stored_weight(layer, w_int.astype(np.float32)), "w")
        return b.node("Cast", [b.node(op, [x32, w], **attrs)], to=TensorProto.DOUBLE)
    ranges = _slices(w_int) if layer.attrs["group"] == 1 and w_int.shape[1] > 1 else None
    if ranges is not None and len(ranges) > 1:
        parts = []
        for start, stop in ranges:
            x_part = b.node("Slice", [x32, b.const(np.array([start], np.int64)),
                                      b.const(np.array([stop], np.int64)),
                                      b.const(np.array([1], np.int64))])
            parts.append(_exact_conv(b, layer, op, x_part, w_int[:, start:stop], attrs))
        return b.node("Sum", parts)
    peak = int(np.abs(w_int).max())
    if peak <= 1:
        raise ValueError(f"layer {layer.name!r}: a reduction this long cannot be computed "
                         f"exactly in float32 ({int(accumulator_bound(w_int).max())} >= 2**24)")
    m = max(1, peak.bit_length() // 2)
    lo = np.bitwise_and(w_int, (1 << m) - 1)
    hi = np.right_shift(w_int, m)
    return b.node("Add", [b.node("Mul", [_exact_conv(b, layer, op, x32, hi, attrs),
                                          b.const(np.float64(1 << m))]),
                          _exact_conv(b, layer, op, x32, lo, attrs)])


def _accumulate(b: _Builder, layer: Layer, x_int: str, w_int: np.ndarray, node) -> tuple[str, int]:
    """The layer's accumulators as a double tensor (exact integers), and their bound."""
    from onnx import TensorProto, helper

    bound = int(accumulator_bound(w_int).max())
    if bound >= FLOAT64_EXACT:
        raise ValueError(f"layer {layer.name!r}: accumulators can reach {bound}, beyond "
                         f"exact float64 (2**53)")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if layer.op in ("Gemm", "MatMul"):
        w = b.const(_stored_weight(layer, w_int.astype(np.float64)), "w")
        if layer.op == "Gemm":
            return b.node("Gemm", [x_int, w], transA=attrs.get("transA", 0),
                          transB=attrs.get("transB", 0)), bound
        inputs = [x_int, w] if layer.attrs["weight_operand"] == 1 else [w, x_int]
        return b.node("MatMul", inputs), bound
    x32 = b.node("Cast", [x_int], to=TensorProto.FLOAT)
    conv_attrs = {k: v for k, v in attrs.items() if k not in ("auto_pad",)}
    if layer.op == "Conv":
        conv_attrs["pads"] = list(layer.attrs["pads"])
    return _exact_conv(b, layer, node.op_type, x32, np.asarray(w_int, np.int64), conv_attrs), bound


def _wrap(b: _Builder, acc: str, width: int) -> str:
    """Two's-complement wrap to ``width`` bits, through int64."""
    from onnx import TensorProto

    offset = np.int64(1) << np.int64(width - 1)
    shifted = b.node("Add", [b.node("Cast", [acc], to=TensorProto.INT64), b.const(offset)])
    wrapped = b.node("Sub", [b.node("Mod", [shifted, b.const(offset * 2)], fmod=0),
                             b.const(offset)])
    return b.node("Cast", [wrapped], to=TensorProto.DOUBLE)


def _integer_layer(b: _Builder, layer: Layer, node, quantized, act_scale: float, config,
                   output: str, traced: list) -> None:
    from onnx import TensorProto

    x_int = _quantize_input(b, layer.input, act_scale, config.rounding)
    acc, bound = _accumulate(b, layer, x_int, np.asarray(quantized.w_int), node)
    if bound >= 2 ** (config.acc_width - 1):
        acc = _wrap(b, acc, config.acc_width)
    traced.append((layer.name, x_int, acc))
    scale = act_scale * quantized.scale.astype(np.float64)
    if layer.op == "Gemm":
        scale = scale * layer.attrs["alpha"]
    y = b.node("Mul", [acc, b.const(scale.reshape(_channel_shape(layer)))])
    # A bias corrected from calibration (QuantizedTensor.bias) replaces the layer's own.
    bias = layer.bias if getattr(quantized, "bias", None) is None else quantized.bias
    if bias is not None:
        beta = layer.attrs["beta"] if layer.op == "Gemm" else 1.0
        y = b.node("Add", [y, b.const((beta * np.asarray(bias, np.float64)).reshape(_channel_shape(layer)))])
    b.node("Cast", [y], outputs=[output], to=TensorProto.FLOAT)


def _float_layer(b: _Builder, layer: Layer, node, weight: np.ndarray, output: str) -> None:
    """The layer with another float weight (BatchNormalization folded): weights-only runs."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inputs = list(node.input[:2])
    slot = 1 if layer.op != "MatMul" else layer.attrs["weight_operand"]
    inputs[slot] = b.const(_stored_weight(layer, np.asarray(weight, np.float32)), "w")
    if layer.op == "MatMul":
        y = b.node("MatMul", inputs)
        if layer.bias is not None:
            y = b.node("Add", [y, b.const(layer.bias.astype(np.float32))])
        b.node("Identity", [y], outputs=[output])
        return
    if layer.op == "Conv":
        attrs = {k: v for k, v in attrs.items() if k != "auto_pad"}
        attrs["pads"] = list(layer.attrs["pads"])
    if layer.bias is not None:
        inputs.append(b.const(layer.bias.astype(np.float32), "bias"))
    b.node(node.op_type, inputs, outputs=[output], **attrs)


def rewrite(model, layers: list[Layer], placement: dict, *, quantized=None, act_scales=None,
            config=None, weights=None, trace: bool = False):
    """A copy of ``model`` whose layers run as integers (or with replaced float weights).

    Parameters
    ----------
    model : onnx.ModelProto
    layers : list of Layer
        The layers to replace, BatchNormalization already folded in.
    placement : dict
        Layer name to ``(node index, indices of nodes it absorbs)`` in ``model.graph.node``.
    quantized, act_scales, config
        Integer mode: the :class:`.quantize.QuantizedTensor` per layer name, the
        activation scale per layer input name and the config (rounding, acc_width).
    weights : dict or None
        Weights-only mode instead: float weights per layer name, Layer orientation.
    trace : bool
        Integer mode: also output every layer's int8 input and accumulators (as double),
        named in the returned list.

    Returns
    -------
    (onnx.ModelProto, list of (layer name, x_int8 output name, acc output name))
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    if weights is not None:
        layers = [layer for layer in layers if layer.name in weights]
    by_index = {placement[layer.name][0]: layer for layer in layers}
    absorbed = {i for layer in layers for i in placement[layer.name][1]}
    old_nodes = list(graph.node)
    del graph.node[:]
    b = _Builder("strum")
    traced: list = []
    for index, node in enumerate(old_nodes):
        if index in absorbed:
            continue
        layer = by_index.get(index)
        if layer is None:
            graph.node.append(node)
            continue
        b.nodes = []
        if weights is not None:
            _float_layer(b, layer, node, weights[layer.name], layer.output)
        else:
            _integer_layer(b, layer, node, quantized[layer.name], act_scales[layer.input],
                           config, layer.output, traced)
        graph.node.extend(b.nodes)
    graph.initializer.extend(b.initializers)
    if trace:
        names = [name for _, x, acc in traced for name in (x, acc)]
        graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    return out, traced
