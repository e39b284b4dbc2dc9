"""Inference of ONNX models: float, integer (as the hardware computes) and weights-only.

A :class:`Network` runs any ONNX model onnxruntime runs, in three modes:

- **float**: the model in onnxruntime, unchanged (the reference; calibration reads
  every layer input from it);
- **integer**: every quantized layer (``Conv``, ``ConvTranspose``, ``Gemm`` and
  ``MatMul`` with a constant weight, BatchNormalization folded in) takes int8
  activations (:mod:`.activation`, one scale per tensor, calibrated on float
  activations), multiplies them with the integer weights of :func:`.quantize.quantize`
  and accumulates at ``config.acc_width`` bits exactly as :mod:`.reference` does; the
  accumulator is dequantized in double, ``acc * s_act * s_w[k] + bias``, and every
  other operator runs in onnxruntime in float32. The layers are rewritten into exact
  integer subgraphs (:mod:`.integer_graph`, which says why this is exact and why
  onnxruntime rather than onnx's reference evaluator);
- **weights-only** (:meth:`Network.run_onnxruntime` with weights): the float model with
  its weights replaced by the dequantized ones.

``accumulate="reference"`` also recomputes every layer's accumulators with
:mod:`.reference` (int64, the golden model) and raises if one differs: the engine's
self-check, and what :func:`trace_layers` records.

Short reductions (a layer whose reduction vector is shorter than the block, e.g. a
depthwise 3x3 with B = 16): :meth:`Network.quantize` applies :data:`.quantize.SHORT_POLICIES`
(``docs/method.md``); the default keeps such layers int8, counted at 8 bits per weight.

Operators are whatever onnxruntime runs; one it does not know is refused with a
one-line error naming the operator and the node.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import StrumConfig
from .errors import InputError
from .integer_graph import rewrite
from .onnx_io import Layer, load_layers, unquantized_weight_nodes
from .quantize import SHORT_POLICIES, QuantizedTensor, quantize, short_config
from .reference import conv as reference_conv
from .reference import conv_transpose as reference_conv_transpose
from .reference import linear as reference_linear

__all__ = ["Network", "LayerTrace", "trace_layers", "layer_reference", "SHORT_POLICIES",
           "EngineError"]

_ONNX_DOMAINS = ("", "ai.onnx")
#: Inputs per onnxruntime call.
BATCH_SIZE = 64
ACCUMULATE = ("fast", "reference")


class EngineError(RuntimeError):
    """The integer engine disagreed with the golden reference (a bug, never user input)."""


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
    dilation=dilations, groups=group)``; ConvTranspose: ``reference.conv_transpose``
    (``w_int`` in equivalent-Conv form). Gemm: ``reference.linear(x, w_int)`` (on
    ``x.T`` when ``transA``). MatMul: ``reference.linear`` when the weight is the right
    operand; on the transposed last two axes when it is the left one.
    """
    if op == "Conv":
        return reference_conv(x_int8, w_int, acc_width, stride=attrs["strides"],
                              padding=attrs["pads"], dilation=attrs["dilations"],
                              groups=attrs["group"])
    if op == "ConvTranspose":
        return reference_conv_transpose(x_int8, w_int, acc_width, stride=attrs["strides"],
                                        padding=attrs["pads"], dilation=attrs["dilations"],
                                        output_padding=attrs["output_padding"],
                                        groups=attrs["group"])
    if op == "Gemm":
        return reference_linear(x_int8.T if attrs["transA"] else x_int8, w_int, acc_width)
    if op == "MatMul":
        if attrs["weight_operand"] == 1:
            return reference_linear(x_int8, w_int, acc_width)
        return np.swapaxes(reference_linear(np.swapaxes(x_int8, -1, -2), w_int, acc_width), -1, -2)
    raise ValueError(f"layer_reference: op must be Conv, ConvTranspose, Gemm or MatMul, "
                     f"not {op!r}")


class Network:
    """An ONNX model ready for float, integer and weights-only inference.

    Parameters
    ----------
    path : str or os.PathLike
        ``.onnx`` model. Any number of inputs (the first is "the images" of the
        single-array methods; several inputs are passed as a dict), every output kept;
        the first output is the one top-1 reads.

    Attributes
    ----------
    path : Path
    layers : list of Layer
        The quantized layers in graph order (BatchNormalization folded in).
    input_name, input_shape : the first input's name and dims (None where dynamic).
    inputs : dict
        Every input name to its dims.
    output_name : str
        The first output; ``output_names`` all of them.
    unquantized : list of (op, node name)
        Nodes that may hold weights but are not quantized (they run in float).

    Raises
    ------
    InputError
        The file is not a valid model, an operator is unknown to onnxruntime, or a Gemm
        has a non-constant bias.
    """

    def __init__(self, path):
        import onnx
        from onnx import helper

        self.path = Path(path)
        if self.path.suffix.lower() != ".onnx":
            raise InputError(f"{self.path}: expected an .onnx model")
        loaded = [layer for layer in load_layers(self.path) if not layer.graph_path]
        self._proto = onnx.load(str(self.path))
        graph = self._proto.graph
        initializers = {t.name for t in graph.initializer}
        values = [v for v in graph.input if v.name not in initializers]
        if not values:
            raise InputError(f"{self.path}: the model has no input")
        self.inputs = {v.name: tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                                     else None for d in v.type.tensor_type.shape.dim)
                       for v in values}
        self._input_types = {v.name: helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)
                             for v in values}
        self.input_name = values[0].name
        self.input_shape = self.inputs[self.input_name]
        # The batch axis of every input: where the first input's axis-0 dim name appears
        # (silero-vad's state is [2, batch, 128]); None for scalars.
        dims = {v.name: [d.dim_param for d in v.type.tensor_type.shape.dim] for v in values}
        batch_name = dims[self.input_name][0] if dims[self.input_name] else ""
        # Without a name, the first dynamic axis of each input.
        def batch_axis(name, names):
            if batch_name and batch_name in names:
                return names.index(batch_name)
            shape = self.inputs[name]
            if not shape:
                return None
            return 0 if batch_name else next((i for i, d in enumerate(shape) if d is None), 0)

        self.batch_axes = {name: batch_axis(name, names) for name, names in dims.items()}
        if not graph.output:
            raise InputError(f"{self.path}: the model has no output")
        self.output_names = [o.name for o in graph.output]
        self.output_name = self.output_names[0]
        output_dims = graph.output[0].type.tensor_type.shape.dim
        self._classes = (output_dims[-1].dim_value
                         if output_dims and output_dims[-1].HasField("dim_value") else None)
        self._check_operators()

        constants = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in _ONNX_DOMAINS and node.attribute:
                constants[node.output[0]] = node
        index_of = {node.output[0]: i for i, node in enumerate(graph.node) if node.output}
        by_output = {layer.output: layer for layer in loaded}
        for layer in loaded:
            node = graph.node[index_of[layer.output]]
            if layer.op == "Gemm" and len(node.input) > 2 and node.input[2] and layer.bias is None:
                raise InputError(f"{self.path}: Gemm node {node.name!r} has a non-constant bias")
        consumers: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                consumers[name] = consumers.get(name, 0) + 1
        placement = {layer.name: (index_of[layer.output], ()) for layer in loaded}
        layers = {layer.name: layer for layer in loaded}
        for index, node in enumerate(graph.node):
            source = by_output.get(node.input[0]) if node.input else None
            if (node.op_type == "BatchNormalization" and node.domain in _ONNX_DOMAINS
                    and source is not None and source.op in ("Conv", "ConvTranspose")
                    and consumers.get(source.output) == 1
                    and source.output not in self.output_names
                    and all(n in constants for n in node.input[1:5])
                    and not any(a.name == "training_mode" and a.i for a in node.attribute)):
                gamma, beta, mean, var = (_constant_array(constants[n]).astype(np.float64).reshape(-1)
                                          for n in node.input[1:5])
                epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
                factor = gamma / np.sqrt(var + epsilon)
                bias = source.bias if source.bias is not None else np.zeros(len(factor))
                weight = source.weight * factor.reshape((-1,) + (1,) * (source.weight.ndim - 1))
                layers[source.name] = dataclasses.replace(
                    source, weight=_read_only(weight), bias=_read_only((bias - mean) * factor + beta),
                    output=node.output[0])
                placement[source.name] = (placement[source.name][0], (index,))
        self.layers: list[Layer] = list(layers.values())
        self._placement = placement
        self.unquantized = unquantized_weight_nodes(self._proto, loaded)
        self._session = None

    def _check_operators(self) -> None:
        """One line naming the first operator onnxruntime cannot run, and its node."""
        import onnx

        for index, node in enumerate(self._proto.graph.node):
            if node.domain in _ONNX_DOMAINS and not onnx.defs.has(node.op_type):
                raise InputError(f"{self.path}: unsupported operator {node.op_type} "
                                 f"(node {node.name or f'#{index}'!r}): not an ONNX operator")
        self._session_for(self._proto)

    def _session_for(self, model):
        try:
            return _session(model)
        except Exception as error:  # onnxruntime raises its own exception types
            text = str(error)
            found = re.search(r"implementation for (\w+)\(\d+\) node with name '([^']*)'", text)
            if found:
                raise InputError(f"{self.path}: unsupported operator {found.group(1)} (node "
                                 f"{found.group(2)!r}): onnxruntime has no kernel for it") from None
            found = re.search(r"([\w.]*):(\w+)\(-?\d+\) is not a registered", text)
            if found:
                op = found.group(2)
                node = next((n.name or f"#{i}" for i, n in enumerate(model.graph.node)
                             if n.op_type == op), "?")
                raise InputError(f"{self.path}: unsupported operator {op} (node {node!r}, domain "
                                 f"{found.group(1) or 'ai.onnx'}): onnxruntime does not know it") \
                    from None
            first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
            raise InputError(f"{self.path}: onnxruntime cannot load the model: {first}") from None

    # -- data checks -------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Length of the first output's last axis (run once on a zero input when dynamic)."""
        if self._classes is None:
            feeds = {name: np.zeros(tuple(d if d is not None else 1 for d in shape),
                                    self._input_types[name])
                     for name, shape in self.inputs.items()}
            self._classes = int(self._run(self._float_session(), feeds)[self.output_name].shape[-1])
        return self._classes

    def check_images(self, images, what: str = "images") -> np.ndarray:
        """float32 images whose shape fits the first input, or an InputError saying why."""
        return self._check_input(self.input_name, images, what, images_only=True)

    def _check_input(self, name: str, array, what: str, images_only: bool = False) -> np.ndarray:
        array = np.asarray(array)
        shape = self.inputs[name]
        dtype = self._input_types[name]
        if self.batch_axes[name] is None:          # a scalar input, the same for every batch
            if array.ndim != 0:
                raise InputError(f"{what}: shape {list(array.shape)}, expected a scalar for "
                                 f"model input {name!r}")
            return np.asarray(array, dtype=dtype)
        if array.ndim == len(shape) and self.batch_axes[name] != 0:
            return self._check_input_batch_last(name, array, what, dtype)
        expected = "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"
        where = f"model {self.path.name} expects input {name!r} {expected}"
        if np.dtype(dtype).kind == "f" and array.dtype.kind != "f":
            raise InputError(f"{what}: dtype {array.dtype}, expected floating-point "
                             f"{'images' if images_only else 'values'}")
        if array.ndim != len(shape):
            raise InputError(f"{what}: shape {list(array.shape)} has {array.ndim} axes; {where}")
        if len(array) == 0:
            raise InputError(f"{what}: no images" if images_only else f"{what}: empty")
        for axis, (got, want) in enumerate(zip(array.shape[1:], shape[1:]), 1):
            if want is not None and got != want:
                label = "channels" if axis == 1 else f"size on axis {axis}"
                raise InputError(f"{what}: shape {list(array.shape)} has {got} {label} "
                                 f"instead of {want}; {where}")
        if array.dtype.kind == "f":
            bad = np.count_nonzero(~np.isfinite(array))
            if bad:
                raise InputError(f"{what}: {bad} NaN or Inf value(s) in the "
                                 f"{'images' if images_only else 'values'}")
        return np.ascontiguousarray(array, dtype=dtype)

    def _check_input_batch_last(self, name, array, what, dtype) -> np.ndarray:
        shape, axis = self.inputs[name], self.batch_axes[name]
        for i, (got, want) in enumerate(zip(array.shape, shape)):
            if i != axis and want is not None and got != want:
                raise InputError(f"{what}: shape {list(array.shape)} has {got} on axis {i} "
                                 f"instead of {want} (model input {name!r})")
        return np.ascontiguousarray(array, dtype=dtype)

    def count(self, feeds) -> int:
        """Inputs in a batch: the first input's length on its batch axis."""
        axis = self.batch_axes[self.input_name] or 0
        return feeds[self.input_name].shape[axis]

    def feeds(self, images, what: str = "images") -> dict[str, np.ndarray]:
        """Inputs by name: one array for the first (only) input, or a dict for several."""
        if not isinstance(images, Mapping):
            if len(self.inputs) > 1:
                raise InputError(f"{what}: model {self.path.name} has {len(self.inputs)} inputs "
                                 f"({', '.join(self.inputs)}); give one array per input")
            return {self.input_name: self.check_images(images, what)}
        missing = [name for name in self.inputs if name not in images]
        if missing:
            raise InputError(f"{what}: no values for model input {missing[0]!r} "
                             f"(inputs: {', '.join(self.inputs)})")
        feeds = {name: self._check_input(name, images[name], f"{what} {name!r}")
                 for name in self.inputs}
        counts = {v.shape[self.batch_axes[n]] for n, v in feeds.items()
                  if self.batch_axes[n] is not None}
        if len(counts) != 1:
            raise InputError(f"{what}: the inputs hold different counts {sorted(counts)}")
        return feeds

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

    def _invoke(self, session, names, chunk) -> list:
        """``session.run`` with its failures (shapes the model rejects, ...) as one line."""
        try:
            return session.run(names, chunk)
        except Exception as error:  # onnxruntime raises its own exception types
            text = " ".join(str(error).split())
            found = re.search(r"running (\w+) node\. Name:'([^']*)' Status Message: .*?([A-Z][^:]*)$",
                              text)
            where = f" at {found.group(1)} node {found.group(2)!r}" if found else ""
            raise InputError(f"{self.path}: onnxruntime failed{where} on these inputs: "
                             f"{text[-200:]}") from None

    def _float_session(self):
        if self._session is None:
            self._session = self._session_for(self._proto)
        return self._session

    def _batch(self, batch_size: int) -> int:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        fixed = self.input_shape[0] if self.input_shape else None
        return fixed if fixed else batch_size

    def _run(self, session, feeds, batch_size: int = BATCH_SIZE, outputs=None) -> dict:
        """Every requested output (default: the model's) over all inputs, in batches."""
        names = list(outputs or self.output_names)
        if any(axis not in (0, None) for axis in self.batch_axes.values()):
            return dict(zip(names, self._invoke(session, names, feeds)))     # no split along other axes
        step = self._batch(batch_size)
        total = self.count(feeds)
        parts: dict[str, list] = {name: [] for name in names}
        for start in range(0, total, step):
            chunk = {name: value[start:start + step] if value.ndim else value
                     for name, value in feeds.items()}
            for name, value in zip(names, self._invoke(session, names, chunk)):
                parts[name].append(value)
        return {name: np.concatenate(values) for name, values in parts.items()}

    def run(self, images, batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Float inference (onnxruntime): the model's first output."""
        return self.run_outputs(images, batch_size=batch_size)[self.output_name]

    def run_outputs(self, images, *, quantized=None, act_scales=None, config=None,
                    weights=None, batch_size: int = BATCH_SIZE) -> dict[str, np.ndarray]:
        """Every output by name: float, integer (``quantized``, ``act_scales``, ``config``)
        or weights-only (``weights``)."""
        feeds = self.feeds(images)
        if quantized is not None:
            model, _ = self._integer_model(quantized, act_scales, config, trace=False)
            session = self._session_for(model)
        elif weights is not None:
            session = self._session_for(self._with_weights(weights))
        else:
            session = self._float_session()
        return self._run(session, feeds, batch_size)

    def calibrate(self, images, percentile: float | None = None,
                  batch_size: int = BATCH_SIZE) -> dict[str, float]:
        """Activation scale of every layer input tensor, from float inference on ``images``.

        Returns ``{tensor name: scale}`` (:func:`.activation.activation_scale`).
        """
        import onnx

        from .activation import activation_scale

        feeds = self.feeds(images, "calibration images")
        wanted = list(dict.fromkeys(layer.input for layer in self.layers))
        extra = [name for name in wanted if name not in feeds and name not in self.output_names]
        model = onnx.ModelProto()
        model.CopyFrom(self._proto)
        model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in extra)
        names = [name for name in wanted if name not in feeds]
        session = self._session_for(model) if names else None
        if percentile is None:
            # Only the peaks matter: keep one number per tensor and batch, not the tensors.
            peaks: dict[str, list] = {name: [] for name in wanted}
            for chunk in self._chunks(feeds, batch_size):
                got = dict(zip(names, self._invoke(session, names, chunk))) if names else {}
                got.update({name: chunk[name] for name in wanted if name in chunk})
                for name in wanted:
                    peaks[name].append(np.abs(got[name]).max(initial=0.0))
            return {name: activation_scale(np.asarray(values, np.float64))
                    for name, values in peaks.items()}
        seen = self._run(session, feeds, batch_size, names) if names else {}
        seen.update({name: feeds[name] for name in wanted if name in feeds})
        return {name: activation_scale(np.asarray(seen[name], np.float64), percentile)
                for name in wanted}

    def _chunks(self, feeds, batch_size: int):
        """The feeds in batches along each input's batch axis (whole when not axis 0)."""
        total = self.count(feeds)
        step = self._batch(batch_size)
        if any(axis not in (0, None) for axis in self.batch_axes.values()):
            step = total
        for start in range(0, total, step):
            yield {name: value[start:start + step] if value.ndim and step < total else value
                   for name, value in feeds.items()}

    def quantize(self, config: StrumConfig, short: str = "int8") -> dict[str, QuantizedTensor]:
        """Every layer's weight quantized: ``{layer name: QuantizedTensor}``.

        ``short`` (:data:`SHORT_POLICIES`): a layer whose reduction vector is shorter than
        ``config.block_size`` is quantized as int8 (``"int8"``) or with ``config`` (``"pad"``).
        """
        return {layer.name: quantize(layer.weight, short_config(config, layer.weight, short),
                                     name=layer.name)
                for layer in self.layers}

    def _integer_model(self, quantized, act_scales, config, trace: bool):
        missing = [layer.name for layer in self.layers if layer.name not in quantized]
        if missing:
            raise ValueError(f"run_integer: no quantized weight for layer {missing[0]!r}")
        missing = [layer.input for layer in self.layers if layer.input not in act_scales]
        if missing:
            raise ValueError(f"run_integer: no activation scale for tensor {missing[0]!r}")
        return rewrite(self._proto, self.layers, self._placement, quantized=quantized,
                       act_scales=act_scales, config=config, trace=trace)

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
            ``"fast"``, or ``"reference"``: also recompute every layer with
            :mod:`.reference` and raise :class:`EngineError` on any difference.
        trace : callable or None
            Called as ``trace(layer, x_int8, act_scale, acc)`` for every layer and batch.

        Returns the first output; :meth:`run_outputs` gives them all.
        """
        if accumulate not in ACCUMULATE:
            raise ValueError(f"accumulate must be one of {', '.join(ACCUMULATE)}, not {accumulate!r}")
        feeds = self.feeds(images)
        traced = trace is not None or accumulate == "reference"
        model, names = self._integer_model(quantized, act_scales, config, trace=traced)
        session = self._session_for(model)
        if not traced:
            return self._run(session, feeds, batch_size)[self.output_name]
        layers = {layer.name: layer for layer in self.layers}
        wanted = [self.output_name] + [n for _, x, acc in names for n in (x, acc)]
        step = self._batch(batch_size)
        total = self.count(feeds)
        if any(axis not in (0, None) for axis in self.batch_axes.values()):
            step = total
        results = []
        for start in range(0, total, step):
            chunk = {name: value[start:start + step] if value.ndim and step < total else value
                     for name, value in feeds.items()}
            got = dict(zip(wanted, self._invoke(session, wanted, chunk)))
            for name, x_name, acc_name in names:
                layer = layers[name]
                x_int8 = got[x_name].astype(np.int8)
                acc = got[acc_name].astype(np.int64)
                if accumulate == "reference":
                    golden = layer_reference(layer.op, layer.attrs, x_int8,
                                             quantized[name].w_int, config.acc_width)
                    if not np.array_equal(golden, acc):
                        raise EngineError(f"layer {name!r}: onnxruntime's accumulators differ "
                                          f"from the reference in {np.count_nonzero(golden != acc)} "
                                          f"places")
                if trace is not None:
                    trace(layer, x_int8, act_scales[layer.input], acc)
            results.append(got[self.output_name])
        return np.concatenate(results)

    def run_onnxruntime(self, images, weights: Mapping[str, np.ndarray] | None = None,
                        batch_size: int = BATCH_SIZE) -> np.ndarray:
        """The model in onnxruntime, optionally with the layers' weights replaced.

        ``weights`` maps layer names to float weights in :class:`Layer` orientation
        (``[K, C/g, *kernel]`` or ``[out, in]``, BatchNormalization folded in), e.g. the
        dequantized weights for weights-only quantization.
        """
        return self.run_outputs(images, weights=weights, batch_size=batch_size)[self.output_name]

    def _with_weights(self, weights: Mapping[str, np.ndarray]):
        for layer in self.layers:
            if layer.name in weights and np.shape(weights[layer.name]) != layer.weight.shape:
                raise ValueError(f"weight for layer {layer.name!r} has shape "
                                 f"{np.shape(weights[layer.name])}, expected {layer.weight.shape}")
        model, _ = rewrite(self._proto, self.layers, self._placement, weights=weights)
        return model


def _constant_array(source) -> np.ndarray:
    from onnx import NodeProto, helper, numpy_helper

    if isinstance(source, NodeProto):
        source = helper.get_attribute_value(source.attribute[0])
    return np.asarray(numpy_helper.to_array(source) if hasattr(source, "dims") else source)


def _session(model):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3      # no warnings on stderr
    options.intra_op_num_threads = 1    # small CNNs: one thread was faster (MNIST 0.56 s vs 0.9 s)
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)
    array.flags.writeable = False
    return array


def trace_layers(model, config: StrumConfig, images, calibration, *,
                 percentile: float | None = None, short: str = "int8") -> list[LayerTrace]:
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
    short : str
        Short-reduction policy (:data:`.quantize.SHORT_POLICIES`); a layer it makes int8
        has ``trace.quantized.config.scheme == "int8"``.
    """
    network = model if isinstance(model, Network) else Network(model)
    scales = network.calibrate(calibration, percentile)
    quantized = network.quantize(config, short)
    traces = []

    def record(layer, x_int8, act_scale, acc):
        traces.append(LayerTrace(layer.name, layer.op, config, x_int8, act_scale,
                                 quantized[layer.name], dict(layer.attrs), acc, layer.bias))

    network.run_integer(images, quantized, scales, config, accumulate="reference",
                        batch_size=max(1, network.count(network.feeds(images))),
                        trace=record)
    return traces


