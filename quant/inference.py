"""Inference of ONNX CNNs: float, integer (as the hardware computes) and weights-only.

A :class:`Network` executes the main graph of an ONNX model in NumPy, node by node, in
three modes:

- **float**: float64 NumPy, the reference used for calibration (it matches onnxruntime
  to float rounding; tested);
- **integer**: the input of every ``Conv``, ``Gemm`` and ``MatMul`` with a constant
  weight is quantized to int8 (:mod:`.activation`, one scale per tensor, calibrated on
  float activations), multiplied with the integer weights of :func:`.quantize.quantize`
  and accumulated at ``config.acc_width`` bits with the semantics of
  :mod:`.reference`; the accumulator is then dequantized in float,
  ``acc * s_act * s_w[k] + bias``, and every other operator runs in float64;
- **weights-only** (:meth:`Network.run_onnxruntime`): the float model in onnxruntime
  with its weights replaced by the dequantized ones.

Exactness of the integer mode. ``accumulate="reference"`` calls :func:`.reference.conv`
and :func:`.reference.linear` (int64). The default ``"fast"`` computes the same sums with
BLAS in floating point, which is exact here: every product ``a * w`` and every partial
sum, in whatever order BLAS adds, is an integer of magnitude at most
``128 * max_k sum|w_k|``; below 2**24 (float32) or 2**53 (float64) no rounding can
occur. A layer beyond both bounds falls back to the reference. The sums are then
wrapped to ``acc_width`` bits like the reference's. Both paths give the same logits bit
for bit (tested).

BatchNormalization directly after a Conv (its only consumer) is folded into the Conv's
weight and bias before quantization, as an accelerator would run it. Operators outside
:data:`SUPPORTED_OPS` are refused with an error naming them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .activation import activation_scale, quantize_activations
from .config import StrumConfig
from .errors import InputError
from .onnx_io import LAYER_OPS, Layer, load_layers
from .quantize import QuantizedTensor, quantize
from .reference import conv as reference_conv
from .reference import conv_output_shape
from .reference import linear as reference_linear
from .rounding import wrap_signed

__all__ = ["SUPPORTED_OPS", "Network", "LayerTrace", "trace_layers", "layer_reference"]

#: Operators the engine executes. Conv, Gemm and MatMul need a constant weight.
SUPPORTED_OPS = (
    "Conv", "Gemm", "MatMul", "BatchNormalization",
    "Relu", "LeakyRelu", "Clip", "Sigmoid",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Add", "Sub", "Mul", "Div",
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Shape", "Gather",
    "Identity", "Dropout", "Softmax", "LogSoftmax", "Constant",
)
_ONNX_DOMAINS = ("", "ai.onnx")
#: Images per chunk: small enough that a layer's activations stay in the CPU cache
#: (MNIST on a 32 MB L3: 2.3 s at 64 images, 5.4 s at 256).
BATCH_SIZE = 64
_FLOAT32_EXACT = 2 ** 24
_FLOAT64_EXACT = 2 ** 53
_ACT_MAGNITUDE = 128
_SHORT_REDUCTION = 32
ACCUMULATE = ("fast", "reference")


@dataclass(frozen=True)
class _Node:
    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict


@dataclass(frozen=True)
class LayerTrace:
    """One quantized layer of one batch, as the integer inference ran it.

    The layer simulation takes ``x_int8``, ``w_int`` (or ``quantized.packed``) and
    ``attrs`` and must reproduce ``acc`` bit for bit; :func:`layer_reference` is the
    golden call.

    Attributes
    ----------
    name : str
        The layer name, as :func:`.onnx_io.load_layers` and ``strum quantize`` give it.
    op : str
        ``"Conv"``, ``"Gemm"`` or ``"MatMul"``.
    config : StrumConfig
    x_int8 : numpy.ndarray
        int8, the layer's raw input tensor (Conv: ``[N, C, *spatial]``, *before*
        padding; Gemm/MatMul: as the node receives it, before any transpose).
    act_scale : float
        ``x ~= x_int8 * act_scale``.
    quantized : QuantizedTensor
        The weight: ``w_int``, ``scale``, ``mask`` and, for StruM schemes, the memory image.
    attrs : dict
        The layer's attributes (:class:`.onnx_io.Layer`); Conv: ``group``, ``strides``,
        ``pads`` (ONNX ``begin..., end...``), ``dilations``, ``kernel_shape``.
    acc : numpy.ndarray
        int64 accumulator outputs wrapped to ``config.acc_width`` bits: Conv
        ``[N, K, *out]``, Gemm ``[N, K]``, MatMul as the node's output.
    bias : numpy.ndarray or None
        Float bias added after dequantization (not part of the integer result).
    """

    name: str
    op: str
    config: StrumConfig
    x_int8: np.ndarray
    act_scale: float
    quantized: QuantizedTensor
    attrs: dict
    acc: np.ndarray
    bias: np.ndarray | None

    @property
    def w_int(self) -> np.ndarray:
        return self.quantized.w_int

    @property
    def w_scale(self) -> np.ndarray:
        return self.quantized.scale


def layer_reference(op: str, attrs: Mapping, x_int8: np.ndarray, w_int: np.ndarray,
                    acc_width: int) -> np.ndarray:
    """The golden accumulators of one layer, through :mod:`.reference`.

    Conv: ``reference.conv(x, w_int, acc_width, stride=strides, padding=pads,
    dilation=dilations, groups=group)``. Gemm: ``reference.linear(x, w_int)`` (on
    ``x.T`` when ``transA``). MatMul: ``reference.linear`` when the weight is the right
    operand; on the transposed last two axes when it is the left one.
    """
    if op == "Conv":
        return reference_conv(x_int8, w_int, acc_width, stride=attrs["strides"],
                              padding=attrs["pads"], dilation=attrs["dilations"],
                              groups=attrs["group"])
    if op == "Gemm":
        return reference_linear(x_int8.T if attrs["transA"] else x_int8, w_int, acc_width)
    if op == "MatMul":
        if attrs["weight_operand"] == 1:
            return reference_linear(x_int8, w_int, acc_width)
        return np.swapaxes(reference_linear(np.swapaxes(x_int8, -1, -2), w_int, acc_width), -1, -2)
    raise ValueError(f"layer_reference: op must be Conv, Gemm or MatMul, not {op!r}")


class Network:
    """An ONNX CNN ready for float, integer and weights-only inference.

    Parameters
    ----------
    path : str or os.PathLike
        ``.onnx`` model with one float input ``[N, ...]`` and the logits as its first
        output. Only the main graph runs; every node must be in :data:`SUPPORTED_OPS`.

    Attributes
    ----------
    path : Path
    layers : list of Layer
        The quantized layers in graph order (BatchNormalization folded in).
    input_name : str
    input_shape : tuple
        The model's input dims, None where dynamic (the batch).
    output_name : str

    Raises
    ------
    InputError
        The file is not a valid model, uses an unsupported operator, has a Conv, Gemm or
        MatMul without a constant weight, or not exactly one float input.
    """

    def __init__(self, path):
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        self.path = Path(path)
        if self.path.suffix.lower() != ".onnx":
            raise InputError(f"{self.path}: expected an .onnx model")
        loaded = [layer for layer in load_layers(self.path) if not layer.graph_path]
        self._proto = onnx.load(str(self.path))
        graph = self._proto.graph
        self.opset = next((o.version for o in self._proto.opset_import
                           if o.domain in _ONNX_DOMAINS), 1)

        initializers = {t.name: t for t in graph.initializer}
        inputs = [v for v in graph.input if v.name not in initializers]
        if len(inputs) != 1:
            raise InputError(f"{self.path}: the model has {len(inputs)} inputs "
                             f"({', '.join(v.name for v in inputs) or 'none'}); expected one "
                             f"image input")
        (model_input,) = inputs
        if model_input.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise InputError(f"{self.path}: input {model_input.name!r} is not float32")
        self.input_name = model_input.name
        self.input_shape = tuple(d.dim_value if d.HasField("dim_value") else None
                                 for d in model_input.type.tensor_type.shape.dim)
        if not graph.output:
            raise InputError(f"{self.path}: the model has no output")
        self.output_name = graph.output[0].name
        output_dims = graph.output[0].type.tensor_type.shape.dim
        self._classes = (output_dims[-1].dim_value
                         if output_dims and output_dims[-1].HasField("dim_value") else None)

        # Constants: initializers, Constant nodes and Identity of a constant.
        self._constants: dict[str, np.ndarray] = {
            name: _as_compute(numpy_helper.to_array(t)) for name, t in initializers.items()}
        nodes, unsupported = [], {}
        self._proto_index: dict[str, int] = {}   # layer output -> index in graph.node
        for index, node in enumerate(graph.node):
            attrs = {a.name: _attr(helper.get_attribute_value(a)) for a in node.attribute}
            op = node.op_type if node.domain in _ONNX_DOMAINS else f"{node.domain}.{node.op_type}"
            if op not in SUPPORTED_OPS:
                unsupported.setdefault(op, node.name or f"#{index}")
                continue
            if op == "Constant":
                self._constants[node.output[0]] = _as_compute(_constant_value(node, attrs, self.path))
                continue
            if op == "Identity" and node.input[0] in self._constants:
                self._constants[node.output[0]] = self._constants[node.input[0]]
                continue
            if op in LAYER_OPS:
                self._proto_index[node.output[0]] = index
            nodes.append(_Node(op, node.name or f"{op}_{index}", tuple(node.input),
                               tuple(node.output), attrs))
        if unsupported:
            listed = ", ".join(f"{op} (node {name!r})" for op, name in unsupported.items())
            raise InputError(f"{self.path}: unsupported operator(s) {listed}; strum's inference "
                             f"engine runs {', '.join(o for o in SUPPORTED_OPS if o != 'Constant')}")

        by_output = {layer.output: layer for layer in loaded}
        for node in nodes:
            if node.op in LAYER_OPS and node.outputs[0] not in by_output:
                raise InputError(f"{self.path}: {node.op} node {node.name!r} has no constant "
                                 f"weight; only layers with constant weights can be quantized")
            if node.op == "Gemm" and len(node.inputs) > 2 and node.inputs[2] \
                    and by_output[node.outputs[0]].bias is None:
                raise InputError(f"{self.path}: Gemm node {node.name!r} has a non-constant bias")
            if node.op in ("MaxPool", "Dropout") and len(node.outputs) > 1 and node.outputs[1]:
                raise InputError(f"{self.path}: {node.op} node {node.name!r} has a second "
                                 f"output, which is not supported")
        self._bn_factor: dict[str, np.ndarray] = {}
        nodes, by_output = self._fold_batch_norm(nodes, by_output)
        self._nodes = nodes
        self._layer_of = by_output
        self.layers: list[Layer] = [by_output[n.outputs[0]] for n in nodes if n.op in LAYER_OPS]
        self._last_use = self._last_uses()
        self._session = None

    # -- loading helpers ---------------------------------------------------------------

    def _fold_batch_norm(self, nodes, by_output):
        consumers: dict[str, int] = {}
        for node in nodes:
            for name in node.inputs:
                consumers[name] = consumers.get(name, 0) + 1
        graph_outputs = {o.name for o in self._proto.graph.output}
        kept, renamed = [], {}
        for node in nodes:
            source = by_output.get(node.inputs[0]) if node.inputs else None
            if (node.op == "BatchNormalization" and source is not None and source.op == "Conv"
                    and consumers.get(source.output) == 1 and source.output not in graph_outputs
                    and not node.attrs.get("training_mode", 0)
                    and all(n in self._constants for n in node.inputs[1:5])):
                gamma, beta, mean, var = (self._constants[n].astype(np.float64).reshape(-1)
                                          for n in node.inputs[1:5])
                factor = gamma / np.sqrt(var + node.attrs.get("epsilon", 1e-5))
                bias = source.bias if source.bias is not None else np.zeros(len(factor))
                weight = source.weight * factor.reshape((-1,) + (1,) * (source.weight.ndim - 1))
                folded = dataclasses.replace(source, weight=_read_only(weight),
                                             bias=_read_only((bias - mean) * factor + beta),
                                             output=node.outputs[0])
                self._bn_factor[source.name] = factor
                self._proto_index[node.outputs[0]] = self._proto_index.pop(source.output)
                renamed[source.output] = folded
                continue
            kept.append(node)
        for old, folded in renamed.items():
            del by_output[old]
            by_output[folded.output] = folded
            kept = [dataclasses.replace(n, outputs=(folded.output,)) if n.outputs[0] == old else n
                    for n in kept]
        return kept, by_output

    def _last_uses(self) -> dict[str, int]:
        last = {}
        for index, node in enumerate(self._nodes):
            for name in node.inputs:
                last[name] = index
        last[self.output_name] = len(self._nodes)
        return last

    # -- data checks -------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Length of the output's last axis (run once on a zero input when dynamic)."""
        if self._classes is None:
            shape = tuple(d if d is not None else 1 for d in self.input_shape)
            self._classes = int(self.run_onnxruntime(np.zeros(shape, np.float32)).shape[-1])
        return self._classes

    def check_images(self, images, what: str = "images") -> np.ndarray:
        """float32 images whose shape fits the model input, or an InputError saying why."""
        images = np.asarray(images)
        expected = "[" + ", ".join("N" if d is None else str(d) for d in self.input_shape) + "]"
        where = f"model {self.path.name} expects input {self.input_name!r} {expected}"
        if images.dtype.kind != "f":
            raise InputError(f"{what}: dtype {images.dtype}, expected floating-point images")
        if images.ndim != len(self.input_shape):
            raise InputError(f"{what}: shape {list(images.shape)} has {images.ndim} axes; {where}")
        if len(images) == 0:
            raise InputError(f"{what}: no images")
        for axis, (got, want) in enumerate(zip(images.shape[1:], self.input_shape[1:]), 1):
            if want is not None and got != want:
                label = "channels" if axis == 1 else f"size on axis {axis}"
                raise InputError(f"{what}: shape {list(images.shape)} has {got} {label} "
                                 f"instead of {want}; {where}")
        bad = np.count_nonzero(~np.isfinite(images))
        if bad:
            raise InputError(f"{what}: {bad} NaN or Inf value(s) in the images")
        return np.ascontiguousarray(images, dtype=np.float32)

    def check_labels(self, labels, count: int, what: str = "labels") -> np.ndarray:
        """int64 labels, one per image, within the model's classes, or an InputError."""
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise InputError(f"{what}: expected a 1-d integer array of class indices, "
                             f"not {labels.dtype} of shape {list(labels.shape)}")
        if len(labels) != count:
            raise InputError(f"{what}: {len(labels)} labels for {count} images")
        classes = self.num_classes
        if labels.min() < 0 or labels.max() >= classes:
            raise InputError(f"{what}: labels span {labels.min()}..{labels.max()} but model "
                             f"{self.path.name} has {classes} outputs (classes 0..{classes - 1})")
        return labels.astype(np.int64)

    # -- execution ---------------------------------------------------------------------

    def run(self, images, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Float64 inference in NumPy: the model's first output."""
        images = self.check_images(images)
        return _batched(images, batch_size,
                        lambda x: self._forward(x.astype(np.float64), _float_layer))

    def calibrate(self, images, percentile: float | None = None,
                  batch_size: int = BATCH_SIZE) -> dict[str, float]:
        """Activation scale of every layer input tensor, from float inference on ``images``.

        Returns ``{tensor name: scale}`` (:func:`.activation.activation_scale`).
        """
        images = self.check_images(images, "calibration images")
        seen: dict[str, list] = {}

        def observe(layer, x):
            magnitude = np.abs(x)
            seen.setdefault(layer.input, []).append(
                magnitude.max(keepdims=True) if percentile is None else magnitude.ravel())

        def layer_fn(layer, x):
            observe(layer, x)
            return _float_layer(layer, x)

        _batched(images, batch_size, lambda x: self._forward(x.astype(np.float64), layer_fn))
        return {name: activation_scale(np.concatenate(parts), percentile)
                for name, parts in seen.items()}

    def quantize(self, config: StrumConfig) -> dict[str, QuantizedTensor]:
        """Every layer's weight quantized with ``config``: ``{layer name: QuantizedTensor}``."""
        return {layer.name: quantize(layer.weight, config, name=layer.name) for layer in self.layers}

    def run_integer(self, images, quantized: Mapping[str, QuantizedTensor],
                    act_scales: Mapping[str, float], config: StrumConfig, *,
                    accumulate: str = "fast", batch_size: int = BATCH_SIZE,
                    trace: Callable | None = None) -> np.ndarray:
        """Integer inference: int8 activations, integer weights, ``acc_width`` accumulators.

        Parameters
        ----------
        quantized : mapping
            Layer name to its :class:`QuantizedTensor` (:meth:`quantize`).
        act_scales : mapping
            Layer input tensor name to its activation scale (:meth:`calibrate`).
        config : StrumConfig
            Gives the activation rounding and ``acc_width``.
        accumulate : str
            ``"fast"`` (exact BLAS) or ``"reference"`` (:mod:`.reference`); same results.
        trace : callable or None
            Called as ``trace(layer, x_int8, act_scale, acc)`` for every layer.
        """
        if accumulate not in ACCUMULATE:
            raise ValueError(f"accumulate must be one of {', '.join(ACCUMULATE)}, not {accumulate!r}")
        images = self.check_images(images)
        missing = [layer.name for layer in self.layers if layer.name not in quantized]
        if missing:
            raise ValueError(f"run_integer: no quantized weight for layer {missing[0]!r}")
        missing = [layer.input for layer in self.layers if layer.input not in act_scales]
        if missing:
            raise ValueError(f"run_integer: no activation scale for tensor {missing[0]!r}")

        def layer_fn(layer, x):
            q, scale = quantized[layer.name], act_scales[layer.input]
            x_int8 = quantize_activations(x, scale, config.rounding)
            if accumulate == "reference":
                acc = layer_reference(layer.op, layer.attrs, x_int8, q.w_int, config.acc_width)
            else:
                acc = _fast_accumulate(layer, x_int8, q.w_int, config.acc_width)
            if trace is not None:
                trace(layer, x_int8, scale, acc.astype(np.int64))
            return _dequantize(layer, acc, scale * q.scale.astype(np.float64), q.bias)

        return _batched(images, batch_size, lambda x: self._forward(x.astype(np.float64), layer_fn))

    def run_onnxruntime(self, images, weights: Mapping[str, np.ndarray] | None = None,
                        batch_size: int = BATCH_SIZE) -> np.ndarray:
        """The model in onnxruntime, optionally with the layers' weights replaced.

        ``weights`` maps layer names to float weights in :class:`Layer` orientation
        (``[K, C/g, *kernel]`` or ``[out, in]``, BatchNormalization folded in), e.g. the
        dequantized weights for weights-only quantization.
        """
        images = self.check_images(images)
        if weights is None:
            if self._session is None:
                self._session = _session(self._proto)
            session = self._session
        else:
            session = _session(self._with_weights(weights))
        return _batched(images, batch_size,
                        lambda x: session.run([self.output_name], {self.input_name: x})[0])

    def _with_weights(self, weights: Mapping[str, np.ndarray]):
        import onnx
        from onnx import numpy_helper

        model = onnx.ModelProto()
        model.CopyFrom(self._proto)
        for index, layer in enumerate(self.layers):
            if layer.name not in weights:
                continue
            weight = np.asarray(weights[layer.name], dtype=np.float64)
            if weight.shape != layer.weight.shape:
                raise ValueError(f"weight for layer {layer.name!r} has shape {weight.shape}, "
                                 f"expected {layer.weight.shape}")
            if layer.name in self._bn_factor:
                # The graph still applies the BatchNormalization: undo its factor.
                factor = self._bn_factor[layer.name]
                safe = np.where(factor == 0, 1.0, factor)
                weight = np.where((factor == 0).reshape((-1,) + (1,) * (weight.ndim - 1)), 0.0,
                                  weight / safe.reshape((-1,) + (1,) * (weight.ndim - 1)))
            node = model.graph.node[self._proto_index[layer.output]]
            if layer.op == "Conv":
                slot, stored = 1, weight
            elif layer.op == "Gemm":
                slot, stored = 1, weight if layer.attrs["transB"] else weight.T
            else:
                slot = layer.attrs["weight_operand"]
                stored = weight.T if slot == 1 else weight
            name = f"strum/weights_only/{index}"
            model.graph.initializer.append(
                numpy_helper.from_array(np.ascontiguousarray(stored, dtype=np.float32), name))
            node.input[slot] = name
        return model

    def _forward(self, x: np.ndarray, layer_fn) -> np.ndarray:
        values = {self.input_name: x}

        def get(name):
            if not name:
                return None
            return values[name] if name in values else self._constants[name]

        for index, node in enumerate(self._nodes):
            if node.op in LAYER_OPS:
                layer = self._layer_of[node.outputs[0]]
                outputs = (layer_fn(layer, get(layer.input)),)
            else:
                outputs = _OPS[node.op](self, node, [get(name) for name in node.inputs])
                if not isinstance(outputs, tuple):
                    outputs = (outputs,)
            for name, value in zip(node.outputs, outputs):
                if name:
                    values[name] = value
            for name in node.inputs:
                if self._last_use.get(name) == index and name != self.output_name:
                    values.pop(name, None)
        return values[self.output_name]


def trace_layers(model, config: StrumConfig, images, calibration, *,
                 percentile: float | None = None) -> list[LayerTrace]:
    """Run integer inference on one batch and record every quantized layer.

    Accumulators come from :mod:`.reference` (the golden model), so each
    :class:`LayerTrace` is a ready-made test vector for a layer simulation.

    Parameters
    ----------
    model : str, os.PathLike or Network
    config : StrumConfig
    images : numpy.ndarray
        The batch, ``[N, ...]`` as the model expects.
    calibration : numpy.ndarray
        Images for the activation scales.
    percentile : float or None
        Activation calibration (:func:`.activation.activation_scale`).
    """
    network = model if isinstance(model, Network) else Network(model)
    scales = network.calibrate(calibration, percentile)
    quantized = network.quantize(config)
    traces = []

    def record(layer, x_int8, act_scale, acc):
        traces.append(LayerTrace(layer.name, layer.op, config, x_int8, act_scale,
                                 quantized[layer.name], dict(layer.attrs), acc, layer.bias))

    network.run_integer(images, quantized, scales, config, accumulate="reference",
                        batch_size=max(1, len(images)), trace=record)
    return traces


# -- layers ----------------------------------------------------------------------------

def _product(layer: Layer, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The layer's linear map without bias, in the dtype of ``x`` and ``w``."""
    if layer.op == "Conv":
        return _conv(x, w, layer.attrs)
    if layer.op == "Gemm":
        return (x.T if layer.attrs["transA"] else x) @ w.T
    return x @ w.T if layer.attrs["weight_operand"] == 1 else w @ x


def _channel_shape(layer: Layer, ndim: int) -> tuple[int, ...]:
    """Shape that broadcasts a per-output-channel vector against the layer's output."""
    if layer.op == "Conv":
        return (-1,) + (1,) * (ndim - 2)
    if layer.op == "MatMul" and layer.attrs["weight_operand"] == 0:
        return (-1, 1)
    return (-1,)


def _float_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    y = _product(layer, x, layer.weight)
    if layer.op == "Gemm":
        y = y * layer.attrs["alpha"]
    if layer.bias is not None:
        beta = layer.attrs["beta"] if layer.op == "Gemm" else 1.0
        y = y + beta * layer.bias.reshape(_channel_shape(layer, y.ndim))
    return y


def _dequantize(layer: Layer, acc: np.ndarray, scale: np.ndarray,
                bias: np.ndarray | None = None) -> np.ndarray:
    """``acc * s_act * s_w[k] (* alpha) + bias`` in float64 (``bias``: a corrected one
    replacing the layer's, :attr:`.quantize.QuantizedTensor.bias`)."""
    if layer.op == "Gemm":
        scale = scale * layer.attrs["alpha"]
    # Integer-valued acc (int64 or exact float) times a float64 scale: float64.
    y = acc * scale.reshape(_channel_shape(layer, acc.ndim))
    bias = layer.bias if bias is None else bias
    if bias is not None:
        beta = layer.attrs["beta"] if layer.op == "Gemm" else 1.0
        y += beta * bias.reshape(_channel_shape(layer, y.ndim))
    return y


def _fast_accumulate(layer: Layer, x_int8: np.ndarray, w_int: np.ndarray,
                     acc_width: int) -> np.ndarray:
    """The reference's accumulators through BLAS, exact by the bound in the module doc.

    The values are integers, returned in a float dtype when no wrap can occur (the
    caller converts for free), else as int64 wrapped to ``acc_width`` bits.
    """
    w = np.asarray(w_int, dtype=np.int64)
    bound = _ACT_MAGNITUDE * int(np.abs(w).reshape(len(w), -1).sum(axis=1).max())
    if bound < _FLOAT32_EXACT:
        dtype = np.float32
    elif bound < _FLOAT64_EXACT:
        dtype = np.float64
    else:
        return layer_reference(layer.op, layer.attrs, x_int8, w_int, acc_width)
    acc = _product(layer, x_int8.astype(dtype), w.astype(dtype))
    if bound < 2 ** (acc_width - 1):
        return acc      # |acc| <= bound: the wrap is the identity
    return wrap_signed(acc.astype(np.int64), acc_width)


# -- convolution and pooling -------------------------------------------------------------

def _pad_pairs(pads, dims: int) -> tuple[tuple[int, int], ...]:
    return tuple(zip(pads[:dims], pads[dims:]))


def _taps(kernel, strides, dilations, out):
    """For every kernel offset, the slices of the padded input it multiplies."""
    for offset in np.ndindex(*kernel):
        yield offset, tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                            for o, d, n, s in zip(offset, dilations, out, strides))


def _conv(x: np.ndarray, w: np.ndarray, attrs: Mapping) -> np.ndarray:
    """ONNX Conv without bias (cross-correlation, zero padding), in x's dtype."""
    dims = w.ndim - 2
    kernel, groups = w.shape[2:], attrs["group"]
    strides, dilations = attrs["strides"], attrs["dilations"]
    batch, channels = x.shape[:2]
    out_channels, group_channels = w.shape[:2]
    if channels != group_channels * groups:
        raise ValueError(f"Conv: input has {channels} channels, the weight {w.shape} with "
                         f"group={groups} expects {group_channels * groups}")
    out = conv_output_shape(x.shape[2:], kernel, strides, attrs["pads"], dilations)
    # Channels last, so that im2col copies contiguous channel vectors.
    pairs = _pad_pairs(attrs["pads"], dims)
    padded = np.pad(x, ((0, 0), (0, 0)) + pairs) if any(map(any, pairs)) else x
    padded = np.ascontiguousarray(np.moveaxis(padded, 1, -1))
    every = (slice(None),)
    cols = np.empty((batch,) + out + tuple(kernel) + (channels,), dtype=x.dtype)
    for offset, taps in _taps(kernel, strides, dilations, out):
        cols[every * (1 + dims) + offset] = padded[every + taps]
    w = np.moveaxis(w, 1, -1).reshape((groups, out_channels // groups, -1))
    if groups == 1 and w.shape[-1] < _SHORT_REDUCTION:
        # A short reduction makes [N*P, k*C] @ [k*C, K] skinny; per image [K, k*C] @ [k*C, P]
        # runs faster and gives [N, K, P] contiguous.
        y = np.matmul(w[0], cols.reshape((batch, math.prod(out), -1)).transpose(0, 2, 1))
        return y.reshape((batch, out_channels) + out)
    cols = cols.reshape((batch * math.prod(out), math.prod(kernel), groups, group_channels))
    # Per group one BLAS product [N*P, k*C/g] @ [k*C/g, K/g], weights in (*kernel, C) order.
    y = np.empty((batch * math.prod(out), groups, out_channels // groups), dtype=x.dtype)
    for group in range(groups):
        y[:, group] = cols[:, :, group].reshape(len(cols), -1) @ w[group].T
    return np.moveaxis(y.reshape((batch,) + out + (out_channels,)), -1, 1)


def _pool(x: np.ndarray, attrs: Mapping, kind: str) -> np.ndarray:
    dims = x.ndim - 2
    kernel = tuple(attrs["kernel_shape"])
    strides = tuple(attrs.get("strides", (1,) * dims))
    dilations = tuple(attrs.get("dilations", (1,) * dims))
    pads = _resolve_pads(attrs, x.shape[2:], kernel, strides, dilations)
    ceil_mode = attrs.get("ceil_mode", 0)
    out, extra = [], []
    for n, k, s, d, (b, e) in zip(x.shape[2:], kernel, strides, dilations, pads):
        span = n + b + e - d * (k - 1) - 1
        size = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (size - 1) * s >= n + b:
            size -= 1   # the last window must start inside the input or its left padding
        out.append(size)
        extra.append(max(0, (size - 1) * s + d * (k - 1) + 1 - (n + b + e)))
    out = tuple(out)
    widths = ((0, 0), (0, 0)) + tuple((b, e + z) for (b, e), z in zip(pads, extra))
    every = (slice(None), slice(None))
    if kind == "max":
        padded = np.pad(x, widths, constant_values=-np.inf) if any(map(any, widths)) else x
        result = None
        for _, taps in _taps(kernel, strides, dilations, out):
            window = padded[every + taps]
            result = window.copy() if result is None else np.maximum(result, window, out=result)
        return result
    padded = np.pad(x, widths)
    # Count the input, the explicit pads if count_include_pad, never the ceil_mode overhang.
    counted = np.pad(np.ones(x.shape[2:]), pads,
                     constant_values=1.0 if attrs.get("count_include_pad", 0) else 0.0)
    counted = np.pad(counted, tuple((0, z) for z in extra))
    total, count = 0.0, 0.0
    for _, taps in _taps(kernel, strides, dilations, out):
        total = total + padded[every + taps]
        count = count + counted[taps]
    return total / count


def _resolve_pads(attrs, spatial, kernel, strides, dilations) -> tuple[tuple[int, int], ...]:
    dims = len(kernel)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        return _pad_pairs(tuple(attrs.get("pads", (0,) * 2 * dims)), dims)
    if auto_pad == "VALID":
        return ((0, 0),) * dims
    pairs = []
    for n, k, s, d in zip(spatial, kernel, strides, dilations):
        total = max(0, (-(-n // s) - 1) * s + d * (k - 1) + 1 - n)
        small, large = total // 2, total - total // 2
        pairs.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
    return tuple(pairs)


# -- other operators (float64; shape tensors stay int64) --------------------------------

def _axes(net: Network, node: _Node, inputs) -> list[int] | None:
    if len(inputs) > 1 and inputs[1] is not None:
        return [int(a) for a in np.asarray(inputs[1]).ravel()]
    axes = node.attrs.get("axes")
    return None if axes is None else [int(a) for a in axes]


def _unsqueeze(net, node, inputs):
    x = inputs[0]
    axes = _axes(net, node, inputs)
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = np.expand_dims(x, axis)
    return x


def _squeeze(net, node, inputs):
    axes = _axes(net, node, inputs)
    return np.squeeze(inputs[0], axis=None if axes is None else tuple(axes))


def _reshape(net, node, inputs):
    x, shape = inputs[0], [int(s) for s in np.asarray(inputs[1]).ravel()]
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _flatten(net, node, inputs):
    x = inputs[0]
    axis = node.attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _softmax(net, node, inputs, log=False):
    x = inputs[0]
    shape = x.shape
    if net.opset < 13:
        axis = node.attrs.get("axis", 1)
        axis = axis + x.ndim if axis < 0 else axis
        x, axis = x.reshape(math.prod(shape[:axis]), -1), 1
    else:
        axis = node.attrs.get("axis", -1)
    shifted = x - x.max(axis=axis, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    y = shifted - log_sum if log else np.exp(shifted - log_sum)
    return y.reshape(shape)


def _clip(net, node, inputs):
    low = inputs[1] if len(inputs) > 1 and inputs[1] is not None else node.attrs.get("min")
    high = inputs[2] if len(inputs) > 2 and inputs[2] is not None else node.attrs.get("max")
    return np.clip(inputs[0], -np.inf if low is None else low, np.inf if high is None else high)


def _batch_norm(net, node, inputs):
    x, gamma, beta, mean, var = inputs[:5]
    if node.attrs.get("training_mode", 0):
        raise InputError(f"{net.path}: BatchNormalization node {node.name!r} is in training mode")
    shape = (-1,) + (1,) * (x.ndim - 2)
    factor = gamma / np.sqrt(var + node.attrs.get("epsilon", 1e-5))
    return (x - mean.reshape(shape)) * factor.reshape(shape) + beta.reshape(shape)


def _divide(net, node, inputs):
    a, b = inputs
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b).astype(np.result_type(a, b))
    return a / b


def _shape(net, node, inputs):
    shape = np.array(inputs[0].shape, dtype=np.int64)
    return shape[node.attrs.get("start", 0):node.attrs.get("end", len(shape))]


_OPS: dict[str, Callable] = {
    "Relu": lambda net, node, i: np.maximum(i[0], 0.0),
    "LeakyRelu": lambda net, node, i: np.where(i[0] >= 0, i[0], node.attrs.get("alpha", 0.01) * i[0]),
    "Sigmoid": lambda net, node, i: 1.0 / (1.0 + np.exp(-i[0])),
    "Clip": _clip,
    "MaxPool": lambda net, node, i: _pool(i[0], node.attrs, "max"),
    "AveragePool": lambda net, node, i: _pool(i[0], node.attrs, "average"),
    "GlobalAveragePool": lambda net, node, i: i[0].mean(axis=tuple(range(2, i[0].ndim)), keepdims=True),
    "GlobalMaxPool": lambda net, node, i: i[0].max(axis=tuple(range(2, i[0].ndim)), keepdims=True),
    "BatchNormalization": _batch_norm,
    "Add": lambda net, node, i: i[0] + i[1],
    "Sub": lambda net, node, i: i[0] - i[1],
    "Mul": lambda net, node, i: i[0] * i[1],
    "Div": _divide,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": lambda net, node, i: np.transpose(i[0], node.attrs.get("perm")),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda net, node, i: np.concatenate([a for a in i if a is not None],
                                                  axis=node.attrs["axis"]),
    "Shape": _shape,
    "Gather": lambda net, node, i: np.take(i[0], i[1], axis=node.attrs.get("axis", 0)),
    "Identity": lambda net, node, i: i[0],
    "Dropout": lambda net, node, i: i[0],
    "Softmax": _softmax,
    "LogSoftmax": lambda net, node, i: _softmax(net, node, i, log=True),
}
assert set(_OPS) | set(LAYER_OPS) | {"Constant"} == set(SUPPORTED_OPS)


# -- small helpers -----------------------------------------------------------------------

def _batched(images: np.ndarray, batch_size: int, fn) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    with _one_blas_thread():
        return np.concatenate([fn(images[start:start + batch_size])
                               for start in range(0, len(images), batch_size)])


def _one_blas_thread():
    """One BLAS thread, when threadpoolctl is there to set it.

    Our matrix products are small; OpenBLAS's threads spin-wait for each other and ran
    MNIST 3.5x slower on a 2-core machine busy with other work (30 s against 8.6 s).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # e.g. about several OpenMP runtimes loaded
        return threadpool_limits(limits=1, user_api="blas")


def _session(model):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3      # no warnings on stderr
    options.intra_op_num_threads = 1    # small CNNs: one thread was faster (MNIST 0.56 s vs 0.9 s)
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def _as_compute(array: np.ndarray) -> np.ndarray:
    """Float constants in float64 (the float engine's type); integers as int64."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        return array.astype(np.float64)
    if array.dtype.kind in "iub":
        return array.astype(np.int64)
    return array


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return tuple(_attr(v) for v in value)
    return value


def _constant_value(node, attrs: dict, path: Path) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    for key, value in attrs.items():
        if isinstance(value, TensorProto):
            return numpy_helper.to_array(value)
        if key in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if key in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
    raise InputError(f"{path}: Constant node {node.name!r} has no tensor, float or int value")


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)
    array.flags.writeable = False
    return array
