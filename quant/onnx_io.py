"""Reading the weights to quantize from ONNX models and NumPy files.

:func:`load_layers` turns a file into a list of :class:`Layer`, one per weight tensor,
with output channels on axis 0 and the weight in float64:

- ``.onnx``: every ``Conv``, ``Gemm`` and ``MatMul`` whose weight is a constant (an
  initializer, a ``Constant`` node, or an ``Identity`` of either), found in the main
  graph and, recursively, in subgraphs (``If`` branches, ``Loop``/``Scan`` bodies).
  Conv weights stay ``[K, C/g, *kernel]``; Gemm and MatMul weights are brought to
  ``[out, in]``, so that a linear layer computes ``y = x @ W.T``. A ``ConvTranspose``
  weight ``[C, K/g, *kernel]`` becomes the weight of its equivalent convolution,
  ``[K, C/g, *kernel]`` with the kernel flipped (:func:`conv_transpose_as_conv`): the
  layer is a stride-1 convolution of the zero-upsampled input, and that is the reduction
  vector StruM blocks.
  Other weight-bearing operators (:data:`OTHER_WEIGHT_OPS`) are not quantized:
  :func:`unquantized_weight_nodes` lists them.
- ``.npy``: one tensor, named after the file stem.
- ``.npz``: one tensor per key, in file order.

Every problem with the file is an :class:`~.errors.InputError` whose one-line message
names the file and, where it applies, the layer.
"""

from __future__ import annotations

import difflib
import math
from collections import ChainMap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["InputError", "Layer", "LAYER_OPS", "OTHER_WEIGHT_OPS", "load_layers", "find_layer",
           "conv_transpose_as_conv", "conv_as_conv_transpose", "unquantized_weight_nodes"]

#: ONNX operators whose constant weight is quantized.
LAYER_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
#: Operators that can hold a weight but are not quantized: reported, run in float.
OTHER_WEIGHT_OPS = ("LSTM", "GRU", "RNN", "Einsum", "ConvInteger", "MatMulInteger",
                    "QLinearConv", "QLinearMatMul", "DeformConv", "Attention")
#: Operators :meth:`_OnnxReader.walk` lists as holding a weight it does not quantize.
UNHANDLED_WEIGHT_OPS = OTHER_WEIGHT_OPS

_SUFFIXES = (".onnx", ".npy", ".npz")
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_ONNX_DOMAINS = ("", "ai.onnx")
# ml_dtypes element types that NumPy reports as kind "V" but that hold numbers.
_ML_DTYPE_PREFIXES = ("bfloat", "float", "int", "uint")


@dataclass(frozen=True, eq=False)
class Layer:
    """One weight tensor to quantize, with what a layer simulation needs to run it.

    Parameters
    ----------
    name : str
        Unique within one :func:`load_layers` result: the ONNX node name (the weight
        tensor name when the node has none), the ``.npy`` file stem or the ``.npz`` key.
        Repeated names get a ``#2``, ``#3``, ... suffix in load order.
    op : str
        ``"Conv"``, ``"Gemm"``, ``"MatMul"``, or ``"tensor"`` for ``.npy``/``.npz``.
    weight : numpy.ndarray
        Read-only float64. Conv: ``[K, C/g, *kernel]``; Gemm and MatMul: ``[out, in]``;
        tensor: as stored, output channels on axis 0.
    attrs : dict
        Conv: ``group``, ``strides``, ``pads`` (ONNX ``begin..., end...`` order),
        ``dilations``, ``kernel_shape``, with ONNX defaults filled in and ``auto_pad``
        resolved to explicit pads. Gemm: ``alpha``, ``beta``, ``transA``, ``transB``
        (the computation is ``y = alpha * x @ W.T + beta * bias``, with ``x``
        transposed first when ``transA``). MatMul: ``weight_operand``, 1 when the weight
        is the right operand (``y = x @ W.T``), 0 when it is the left one
        (``y = W @ x``). Tensors: empty.
    input, output : str
        ONNX value names of the data input and of the output ("" for tensors).
    bias : numpy.ndarray or None
        Read-only float64 ``[out]`` when the node has a constant bias.
    graph_path : str
        "" for the main graph, else the chain of ``<node name>.<attribute>`` leading to
        the subgraph, e.g. ``"If_0.then_branch"``.
    """

    name: str
    op: str
    weight: np.ndarray
    attrs: dict = field(default_factory=dict)
    input: str = ""
    output: str = ""
    bias: np.ndarray | None = None
    graph_path: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.weight.shape)


def load_layers(path, skipped: list | None = None) -> list[Layer]:
    """Read every quantizable weight tensor of an ``.onnx``, ``.npy`` or ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its extension (case-insensitive) selects the reader.
    skipped : list, optional
        Receives one dict per ONNX node that holds a constant weight (2 or more axes)
        but is not quantized: ``{"name", "op", "shape", "graph_path"}`` (ConvTranspose,
        LSTM, an embedding table, ...), so that a caller can say so.

    Returns
    -------
    list of Layer
        In graph order (depth first through subgraphs) or file order.

    Raises
    ------
    InputError
        The file is missing, has an unknown extension, is not a valid file of its kind,
        holds nothing to quantize, or a weight is empty, has fewer than 2 axes (``.npy``
        and ``.npz``), a non-numeric dtype, or NaN/Inf values.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _load_onnx(path, skipped)
    if suffix == ".npy":
        return _load_npy(path)
    if suffix == ".npz":
        return _load_npz(path)
    raise InputError(f"{path}: unknown extension {suffix or '(none)'!r}, "
                     f"expected one of {', '.join(_SUFFIXES)}")


def find_layer(layers: list[Layer], name: str) -> Layer:
    """The layer called exactly ``name``.

    Raises
    ------
    InputError
        No layer has that name; the message lists the closest names.
    """
    for layer in layers:
        if layer.name == name:
            return layer
    names = [layer.name for layer in layers]
    if not names:
        raise InputError(f"no layer named {name!r}: there are no layers")
    # Names containing the query first (ONNX names are long paths), then look-alikes.
    near = [n for n in names if name and name in n]
    near += [n for n in difflib.get_close_matches(name, names, n=5, cutoff=0.4) if n not in near]
    shown = near[:5] or names[:5]
    label = "closest" if near else "available"
    raise InputError(f"no layer named {name!r} among {len(names)} layers; "
                     f"{label}: {', '.join(repr(n) for n in shown)}")


# --- checks shared by all readers ------------------------------------------------------

def _check_dtype(path: Path, what: str, array: np.ndarray) -> None:
    kind = array.dtype.kind
    numeric = kind in "fiu" or (kind == "V" and array.dtype.names is None
                                and array.dtype.name.startswith(_ML_DTYPE_PREFIXES))
    if not numeric:
        raise InputError(f"{path}: {what} has dtype {array.dtype}, "
                         f"expected a float or integer type")


def _as_weight(path: Path, what: str, array: np.ndarray) -> np.ndarray:
    """Checked, read-only float64 copy of a weight or bias tensor."""
    _check_dtype(path, what, array)
    if array.size == 0:
        raise InputError(f"{path}: {what} is empty (shape {tuple(array.shape)})")
    weight = np.array(array, dtype=np.float64)
    bad = np.count_nonzero(~np.isfinite(weight))
    if bad:
        raise InputError(f"{path}: {what} has {bad} NaN or Inf value(s)")
    weight.flags.writeable = False
    return weight


def _unique_names(names: list[str]) -> list[str]:
    """Keep the first of each name; later repeats get the lowest free ``#n`` suffix."""
    taken = set(names)
    seen = set()
    unique = []
    for name in names:
        if name in seen:
            n = 2
            while f"{name}#{n}" in taken:
                n += 1
            name = f"{name}#{n}"
            taken.add(name)
        seen.add(name)
        unique.append(name)
    return unique


# --- NumPy files -----------------------------------------------------------------------

def _read_magic(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None


def _tensor_layer(path: Path, name: str, array: np.ndarray) -> Layer:
    what = f"tensor {name!r}"
    if array.ndim < 2:
        raise InputError(f"{path}: {what} has shape {tuple(array.shape)}, expected at least "
                         f"2 axes (output channels on axis 0)")
    return Layer(name=name, op="tensor", weight=_as_weight(path, what, array))


def _load_npy(path: Path) -> list[Layer]:
    magic = _read_magic(path)
    if magic.startswith(_ZIP_MAGICS):
        raise InputError(f"{path}: is an .npz archive, not an .npy file")
    if not magic.startswith(_NPY_MAGIC):
        raise InputError(f"{path}: not a valid .npy file (no NumPy header)")
    try:
        array = _read_npy(path)
    except (ValueError, OSError, EOFError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: not a valid .npy file ({error})") from None
    return [_tensor_layer(path, path.stem, array)]


def _read_npy(path: Path) -> np.ndarray:
    """np.load of an .npy file, after checking its header's size against the file's."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if reader is None:
            raise InputError(f"{path}: unsupported .npy format version {version}")
        shape, _, dtype = reader(f, max_header_size=10_000)
        claimed = math.prod(shape) * dtype.itemsize
        left = path.stat().st_size - f.tell()
        if dtype.hasobject:
            raise InputError(f"{path}: holds Python objects (pickled data), which strum does not load")
        if claimed > left:
            raise InputError(f"{path}: header claims {claimed:,} bytes of data for shape "
                             f"{shape}, but the file holds only {left:,}: truncated or damaged")
    return np.load(path, allow_pickle=False)


def _load_npz(path: Path) -> list[Layer]:
    from .npz import read_npz

    magic = _read_magic(path)
    if magic.startswith(_NPY_MAGIC):
        raise InputError(f"{path}: is an .npy file, not an .npz archive")
    if not magic.startswith(_ZIP_MAGICS):
        raise InputError(f"{path}: not a valid .npz archive (no zip header)")
    # Sizes are checked before reading: a crafted header cannot make us allocate.
    layers = [_tensor_layer(path, key, array) for key, array in read_npz(path).items()]
    if not layers:
        raise InputError(f"{path}: the archive holds no arrays, nothing to quantize")
    return layers


# --- ONNX models -----------------------------------------------------------------------

def _load_onnx(path: Path, skipped: list | None = None) -> list[Layer]:
    import onnx
    from google.protobuf.message import DecodeError

    if path.stat().st_size >= 2 << 30:     # protobuf's own limit; beyond it onnx.load fails late
        raise InputError(f"{path}: {path.stat().st_size:,} bytes, larger than the 2 GiB an ONNX "
                         f"model file can hold (keep large weights as external data)")
    try:
        model = onnx.load(str(path))
    except DecodeError:
        raise InputError(f"{path}: not a valid ONNX model (protobuf decoding failed)") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read the model or its external data "
                         f"({error.strerror or error})") from None
    except Exception as error:  # onnx raises assorted types on malformed files
        raise InputError(f"{path}: not a valid ONNX model "
                         f"({type(error).__name__}: {error})") from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise InputError(f"{path}: not a valid ONNX model (no IR version or no graph)")

    reader = _OnnxReader(path, model)
    try:
        reader.walk(model.graph, ChainMap(), "")
    except InputError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, RecursionError,
            OverflowError, MemoryError) as error:   # a damaged graph that protobuf accepted
        raise InputError(f"{path}: malformed ONNX model ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None
    if not reader.found:
        ops = sorted(reader.op_types - {"Constant"})
        seen = f" (operators present: {', '.join(ops[:12])}{', ...' if len(ops) > 12 else ''})" \
            if ops else " (the graph has no nodes)"
        raise InputError(f"{path}: no Conv, Gemm or MatMul with a constant weight, "
                         f"nothing to quantize{seen}")
    if skipped is not None:
        skipped.extend(reader.skipped)
    names = _unique_names([layer.name for layer in reader.found])
    return [layer if layer.name == name else _renamed(layer, name)
            for layer, name in zip(reader.found, names)]


def node_operator(path, name: str) -> str | None:
    """The operator of the ONNX node called ``name`` (subgraphs included), or None."""
    import onnx

    def search(graph):
        for node in graph.node:
            if node.name == name:
                return node.op_type
            for attribute in node.attribute:
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    found = search(sub)
                    if found:
                        return found
        return None

    if Path(path).suffix.lower() != ".onnx":
        return None
    return search(onnx.load(str(path)).graph)


def _renamed(layer: Layer, name: str) -> Layer:
    import dataclasses
    return dataclasses.replace(layer, name=name)


class _OnnxReader:
    """Depth-first walk of a model collecting :class:`Layer` objects.

    The scope maps a value name to where its constant value lives (a TensorProto, a
    SparseTensorProto or a Constant node), or to None for a non-constant value that
    shadows an outer name. Values are only converted to arrays when used as a weight.
    """

    def __init__(self, path: Path, model):
        self.path = path
        self.model = model
        self.found: list[Layer] = []
        self.skipped: list[dict] = []
        self.op_types: set[str] = set()
        self._shapes: dict[str, tuple] | None = None

    # scope building

    def walk(self, graph, outer: ChainMap, graph_path: str) -> None:
        from onnx import AttributeProto

        local: dict = {}
        for value in graph.input:
            local[value.name] = None
        for tensor in graph.initializer:
            local[tensor.name] = tensor
        for sparse in graph.sparse_initializer:
            local[sparse.values.name] = sparse
        scope = outer.new_child(local)
        for node in graph.node:
            if node.domain not in _ONNX_DOMAINS:
                continue
            if node.op_type == "Constant" and node.output:
                local[node.output[0]] = node
            elif node.op_type == "Identity" and node.input and scope.get(node.input[0]) is not None:
                local[node.output[0]] = scope[node.input[0]]

        for index, node in enumerate(graph.node):
            self.op_types.add(node.op_type)
            if node.domain in _ONNX_DOMAINS and node.op_type in LAYER_OPS:
                layer = getattr(self, f"_{node.op_type.lower()}")(node, scope, graph_path)
                if layer is not None:
                    self.found.append(layer)
            elif node.op_type not in ("Constant", "Identity"):
                self._note_unhandled(node, index, scope, graph_path)
            label = node.name or f"{node.op_type}_{index}"
            for attr in node.attribute:
                prefix = f"{graph_path}.{label}" if graph_path else label
                if attr.type == AttributeProto.GRAPH:
                    self.walk(attr.g, scope, f"{prefix}.{attr.name}")
                elif attr.type == AttributeProto.GRAPHS:
                    for i, sub in enumerate(attr.graphs):
                        self.walk(sub, scope, f"{prefix}.{attr.name}[{i}]")

    def _note_unhandled(self, node, index: int, scope: ChainMap, graph_path: str) -> None:
        """Record a node with a constant weight (>= 2 axes) that is not quantized."""
        shapes = [_constant_dims(scope.get(name)) for name in node.input if name]
        shapes = [shape for shape in shapes if shape is not None and len(shape) >= 2]
        if shapes or node.op_type in UNHANDLED_WEIGHT_OPS and len(node.input) > 1:
            self.skipped.append({"name": node.name or f"{node.op_type}_{index}", "op": node.op_type,
                                 "shape": list(max(shapes, key=len)) if shapes else None,
                                 "graph_path": graph_path})

    # constant values

    def _constant(self, scope: ChainMap, name: str) -> np.ndarray | None:
        """The array a constant value name holds, or None if it is not a constant."""
        if not name:
            return None
        source = scope.get(name)
        if source is None:
            return None
        return _source_array(source)

    # layers

    def _what(self, node, weight_name: str) -> str:
        return f"layer {node.name or weight_name!r} ({node.op_type})"

    def _bias(self, node, scope, what: str, out: int) -> np.ndarray | None:
        if len(node.input) < 3:
            return None
        bias = self._constant(scope, node.input[2])
        if bias is None:
            return None
        _check_dtype(self.path, f"bias of {what}", bias)
        if bias.size == 1:
            bias = np.full(out, np.asarray(bias, dtype=np.float64).reshape(()))
        elif bias.shape in ((out,), (1, out)):
            bias = bias.reshape(out)
        else:
            raise InputError(f"{self.path}: bias of {what} has shape {tuple(bias.shape)}, "
                             f"expected ({out},)")
        return _as_weight(self.path, f"bias of {what}", bias)

    def _conv(self, node, scope, graph_path: str) -> Layer | None:
        if len(node.input) < 2:
            return None
        raw = self._constant(scope, node.input[1])
        if raw is None or raw.ndim < 2:
            return None
        what = self._what(node, node.input[1])
        if raw.ndim < 3:
            raise InputError(f"{self.path}: weight of {what} has shape {tuple(raw.shape)}, "
                             f"expected [K, C/group, *kernel]")
        weight = _as_weight(self.path, f"weight of {what}", raw)
        attrs = self._conv_attrs(node, weight.shape, what)
        return Layer(name=node.name or node.input[1], op="Conv", weight=weight, attrs=attrs,
                     input=node.input[0], output=node.output[0],
                     bias=self._bias(node, scope, what, weight.shape[0]),
                     graph_path=graph_path)

    def _convtranspose(self, node, scope, graph_path: str) -> Layer | None:
        from onnx import helper

        if len(node.input) < 2:
            return None
        raw = self._constant(scope, node.input[1])
        if raw is None or raw.ndim < 3:
            return None
        what = self._what(node, node.input[1])
        given = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        group = int(given.get("group", 1))
        spatial = raw.ndim - 2
        if group < 1 or raw.shape[0] % group:
            raise InputError(f"{self.path}: {what} has group={group}, which does not divide "
                             f"its {raw.shape[0]} input channels")
        weight = _as_weight(self.path, f"weight of {what}", conv_transpose_as_conv(raw, group))
        kernel = tuple(int(k) for k in given.get("kernel_shape", raw.shape[2:]))
        auto_pad = given.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if kernel != tuple(raw.shape[2:]) or auto_pad not in ("NOTSET", "VALID") \
                or "output_shape" in given:
            raise InputError(f"{self.path}: {what}: only explicit pads and output_padding are "
                             f"supported (no auto_pad SAME or output_shape); re-export the model "
                             f"with explicit pads")
        attrs = {"group": group,
                 "strides": tuple(int(v) for v in given.get("strides", (1,) * spatial)),
                 "pads": tuple(int(v) for v in given.get("pads", (0,) * (2 * spatial)))
                 if auto_pad == "NOTSET" else (0,) * (2 * spatial),
                 "dilations": tuple(int(v) for v in given.get("dilations", (1,) * spatial)),
                 "output_padding": tuple(int(v) for v in given.get("output_padding",
                                                                  (0,) * spatial)),
                 "kernel_shape": kernel}
        return Layer(name=node.name or node.input[1], op="ConvTranspose", weight=weight,
                     attrs=attrs, input=node.input[0], output=node.output[0],
                     bias=self._bias(node, scope, what, weight.shape[0]), graph_path=graph_path)

    def _conv_attrs(self, node, shape: tuple, what: str) -> dict:
        from onnx import helper

        given = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        spatial = len(shape) - 2
        kernel = tuple(int(k) for k in given.get("kernel_shape", shape[2:]))
        group = int(given.get("group", 1))
        strides = tuple(int(s) for s in given.get("strides", (1,) * spatial))
        dilations = tuple(int(d) for d in given.get("dilations", (1,) * spatial))
        pads = tuple(int(p) for p in given.get("pads", (0,) * (2 * spatial)))
        if kernel != tuple(shape[2:]):
            raise InputError(f"{self.path}: {what} has kernel_shape {list(kernel)} but a "
                             f"weight of shape {tuple(shape)}")
        if len(strides) != spatial or len(dilations) != spatial or len(pads) != 2 * spatial:
            raise InputError(f"{self.path}: {what} has strides/dilations/pads of the wrong "
                             f"length for a {spatial}-d kernel")
        if group < 1 or shape[0] % group:
            raise InputError(f"{self.path}: {what} has group={group}, which does not "
                             f"divide its {shape[0]} output channels")
        auto_pad = given.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if auto_pad == "VALID":
            pads = (0,) * (2 * spatial)
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = self._same_pads(node, kernel, strides, dilations, auto_pad, what)
        elif auto_pad != "NOTSET":
            raise InputError(f"{self.path}: {what} has unknown auto_pad {auto_pad!r}")
        return {"group": group, "strides": strides, "pads": pads,
                "dilations": dilations, "kernel_shape": kernel}

    def _same_pads(self, node, kernel, strides, dilations, mode: str, what: str) -> tuple:
        if all(s == 1 for s in strides):
            # Output size equals input size, so the padding does not depend on it.
            totals = [(k - 1) * d for k, d in zip(kernel, dilations)]
        else:
            shape = self._static_shape(node.input[0])
            if shape is None or len(shape) != len(kernel) + 2 or \
                    any(not isinstance(n, int) or n <= 0 for n in shape[2:]):
                raise InputError(f"{self.path}: {what} uses auto_pad={mode} with strides "
                                 f"{list(strides)}, which needs a static input shape; "
                                 f"re-export the model with explicit pads")
            totals = [max(0, (math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n)
                      for n, k, s, d in zip(shape[2:], kernel, strides, dilations)]
        # The odd pixel goes at the end for SAME_UPPER, at the beginning for SAME_LOWER.
        small = [t // 2 for t in totals]
        large = [t - t // 2 for t in totals]
        begin, end = (small, large) if mode == "SAME_UPPER" else (large, small)
        return tuple(begin) + tuple(end)

    def _static_shape(self, name: str) -> tuple | None:
        if self._shapes is None:
            import onnx
            from onnx import AttributeProto

            self._shapes = {}
            try:
                inferred = onnx.shape_inference.infer_shapes(self.model)
            except Exception:  # inference is best effort; the caller refuses without it
                return None
            graphs = [inferred.graph]
            while graphs:
                graph = graphs.pop()
                for value in (*graph.input, *graph.value_info, *graph.output):
                    dims = value.type.tensor_type.shape.dim
                    self._shapes[value.name] = tuple(
                        d.dim_value if d.HasField("dim_value") else None for d in dims)
                for node in graph.node:
                    for attr in node.attribute:
                        if attr.type == AttributeProto.GRAPH:
                            graphs.append(attr.g)
                        elif attr.type == AttributeProto.GRAPHS:
                            graphs.extend(attr.graphs)
        return self._shapes.get(name)

    def _gemm(self, node, scope, graph_path: str) -> Layer | None:
        from onnx import helper

        if len(node.input) < 2:
            return None
        raw = self._constant(scope, node.input[1])
        if raw is None or raw.ndim < 2:
            return None
        what = self._what(node, node.input[1])
        if raw.ndim != 2:
            raise InputError(f"{self.path}: weight of {what} has shape {tuple(raw.shape)}, "
                             f"expected 2 axes")
        given = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {"alpha": float(given.get("alpha", 1.0)), "beta": float(given.get("beta", 1.0)),
                 "transA": int(given.get("transA", 0)), "transB": int(given.get("transB", 0))}
        # transB=1 stores B as [out, in] already; transB=0 stores [in, out].
        weight = _as_weight(self.path, f"weight of {what}", raw if attrs["transB"] else raw.T)
        return Layer(name=node.name or node.input[1], op="Gemm", weight=weight, attrs=attrs,
                     input=node.input[0], output=node.output[0],
                     bias=self._bias(node, scope, what, weight.shape[0]),
                     graph_path=graph_path)

    def _matmul(self, node, scope, graph_path: str) -> Layer | None:
        if len(node.input) < 2:
            return None
        right = self._constant(scope, node.input[1])
        if right is not None:
            operand, raw = 1, right
        else:
            left = self._constant(scope, node.input[0])
            if left is None:
                return None  # two activations: attention scores and the like
            operand, raw = 0, left
        # A batched (>2-d) constant operand is not a layer with output channels.
        if raw.ndim != 2:
            return None
        weight_name, data_name = node.input[operand], node.input[1 - operand]
        what = self._what(node, weight_name)
        # x @ B with B [in, out]; A @ x with A already [out, in].
        weight = _as_weight(self.path, f"weight of {what}", raw.T if operand == 1 else raw)
        return Layer(name=node.name or weight_name, op="MatMul", weight=weight,
                     attrs={"weight_operand": operand}, input=data_name,
                     output=node.output[0], graph_path=graph_path)


def conv_transpose_as_conv(weight: np.ndarray, group: int) -> np.ndarray:
    """ConvTranspose weight ``[C, K/g, *kernel]`` to its equivalent Conv weight ``[K, C/g, *kernel]``.

    ``ConvTranspose(x, W)`` equals ``Conv`` with this weight (the kernel flipped on every
    spatial axis, input and output channels swapped within each group) applied with stride
    1 to ``x`` upsampled by the strides (zeros between samples) and padded by
    ``d * (k - 1) - pad`` at each end (plus ``output_padding`` at the end).
    """
    weight = np.asarray(weight)
    channels, per_group = weight.shape[:2]
    kernel = weight.shape[2:]
    grouped = weight.reshape((group, channels // group, per_group) + kernel)
    swapped = np.swapaxes(grouped, 1, 2).reshape((group * per_group, channels // group) + kernel)
    return np.flip(swapped, axis=tuple(range(2, weight.ndim)))


def conv_as_conv_transpose(weight: np.ndarray, group: int) -> np.ndarray:
    """Inverse of :func:`conv_transpose_as_conv`: ``[K, C/g, *kernel]`` to ``[C, K/g, *kernel]``."""
    weight = np.asarray(weight)
    out_channels, per_group = weight.shape[:2]
    kernel = weight.shape[2:]
    flipped = np.flip(weight, axis=tuple(range(2, weight.ndim)))
    grouped = flipped.reshape((group, out_channels // group, per_group) + kernel)
    return np.swapaxes(grouped, 1, 2).reshape((group * per_group, out_channels // group) + kernel)


def unquantized_weight_nodes(model, layers) -> list[tuple[str, str]]:
    """``(op, node name)`` of every main-graph node that may hold a weight but is not quantized.

    These are the :data:`OTHER_WEIGHT_OPS` and the Conv, ConvTranspose, Gemm and MatMul
    nodes without a constant weight operand (e.g. attention's activation products); they
    run in float.
    """
    quantized = {layer.output for layer in layers if not layer.graph_path}
    found = []
    for index, node in enumerate(model.graph.node):
        if node.domain not in _ONNX_DOMAINS:
            continue
        if node.op_type in OTHER_WEIGHT_OPS or (node.op_type in LAYER_OPS
                                                and node.output[0] not in quantized):
            found.append((node.op_type, node.name or f"{node.op_type}_{index}"))
    return found


def _constant_dims(source) -> tuple | None:
    """The shape of a constant value without converting it, or None."""
    from onnx import NodeProto, SparseTensorProto, TensorProto

    if isinstance(source, NodeProto):
        tensors = [a.t if a.name == "value" else a.sparse_tensor for a in source.attribute
                   if a.name in ("value", "sparse_value")]
        source = tensors[0] if tensors else None
    if isinstance(source, TensorProto):
        return tuple(int(d) for d in source.dims)
    if isinstance(source, SparseTensorProto):
        return tuple(int(d) for d in source.dims)
    return None


def _source_array(source) -> np.ndarray:
    from onnx import NodeProto, SparseTensorProto, TensorProto, helper, numpy_helper

    if isinstance(source, NodeProto):
        if not source.attribute:
            return np.zeros(0)
        source = helper.get_attribute_value(source.attribute[0])
    if isinstance(source, TensorProto):
        return numpy_helper.to_array(source)
    if isinstance(source, SparseTensorProto):
        values = numpy_helper.to_array(source.values)
        indices = numpy_helper.to_array(source.indices).astype(np.int64)
        dense = np.zeros(tuple(source.dims), dtype=values.dtype)
        if indices.ndim == 1:
            dense.reshape(-1)[indices] = values
        else:
            dense[tuple(indices.T)] = values
        return dense
    # value_float(s), value_int(s), value_string(s): scalars and lists.
    return np.asarray(source)
