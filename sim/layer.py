"""Whole layers on the DPU: tiling, streaming, and the comparison with the golden model.

A conv layer's output ``[K, P]`` (a ConvTranspose is the stride-1 convolution of its
upsampled input, :func:`strum.quant.reference.conv_transpose_input`) (P output positions, batch folded in) is cut into
tiles of R output channels by C positions, per group. A tile takes ``nb`` steps, one
per block of the reduction vector: step j carries the j-th weight block of each of the
tile's R channels (from the memory image, :func:`strum.quant.image.unpack_blocks`) and
the j-th activation block of each of its C positions (:func:`strum.quant.reference.conv_patches`,
the same reduction order). Rows or columns past the layer's edge get zero blocks; their
results are dropped. Every accumulator is compared with :func:`strum.quant.reference.conv`
or :func:`~strum.quant.reference.linear`. On a DPU with one activation block per PE
(``activations="per_pe"``) tiles take R channels of any groups, so depthwise layers fill
every row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from strum.quant.blocks import to_blocks, to_reduction
from strum.quant.config import StrumConfig
from strum.quant.errors import InputError
from strum.quant.image import BlockFields, read_image, unpack_blocks
from strum.quant.quantize import quantize
from strum.quant.reference import conv, conv_patches, conv_transpose_input, linear

__all__ = ["LayerJob", "prepare_layer", "schedule", "Schedule", "random_input", "input_shape",
           "run_dpu", "simulate_layer", "BACKENDS"]

SUPPORTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class LayerJob:
    """A layer made ready for the array.

    Attributes
    ----------
    name : str
    config : StrumConfig
    weights : BlockFields ``[K, nb, ...]``, from the memory image (int8: ``high`` holds
        all B weights, the mask is all ones).
    patches : int64 ``[groups, P, nb, B]``: activation blocks of every output position.
    expected : int64 ``[K, P]``: the golden accumulators.
    macs : int: the layer's multiply-accumulates, block padding excluded.
    """

    name: str
    config: StrumConfig
    weights: BlockFields
    patches: np.ndarray
    expected: np.ndarray
    macs: int

    @property
    def groups(self) -> int:
        return self.patches.shape[0]

    @property
    def blocks_per_output(self) -> int:
        return self.patches.shape[2]


#: Output positions per spatial axis of a random input: 64 for 1-D, 8 x 8 for 2-D.
RANDOM_OUTPUT_SIDE = {1: 64, 2: 8, 3: 4}


def input_shape(layer, batch: int = 1) -> tuple[int, ...]:
    """An input shape for a layer with no real input: large enough for
    :data:`RANDOM_OUTPUT_SIDE` output positions per axis before padding."""
    if layer.op not in ("Conv", "ConvTranspose"):
        return (batch, layer.weight.shape[1])
    attrs = layer.attrs
    channels = layer.weight.shape[1] * attrs.get("group", 1)
    kernel = layer.weight.shape[2:]
    side = RANDOM_OUTPUT_SIDE.get(len(kernel), 4)
    strides = attrs.get("strides", (1,) * len(kernel))
    dilations = attrs.get("dilations", (1,) * len(kernel))
    if layer.op == "ConvTranspose":     # its output grows with the input: side inputs suffice
        return (batch, channels) + (side,) * len(kernel)
    spatial = [(side - 1) * s + d * (k - 1) + 1 for k, s, d in zip(kernel, strides, dilations)]
    return (batch, channels) + tuple(spatial)


def random_input(shape, seed: int) -> np.ndarray:
    """Random int8 activations from a seed."""
    return np.random.default_rng(seed).integers(-128, 128, size=shape, dtype=np.int64)


def _weight_fields(config: StrumConfig, weight: np.ndarray, name: str, quantized=None):
    if quantized is None:
        quantized = quantize(weight, config, name=name)
    if config.scheme == "int8":
        # The int8 PE takes every lane's weight in lane order: no image, no mask.
        vectors = to_blocks(to_reduction(quantized.w_int), config.block_size)
        mask = np.ones(vectors.shape, dtype=bool)
        fields = BlockFields(mask=mask, high=vectors.astype(np.int64),
                             low_codes=np.zeros(vectors.shape[:-1] + (0,), np.uint8),
                             shift=np.zeros(vectors.shape[:-1], np.int64))
    else:
        image_config, _, blocks = read_image(quantized.packed)
        fields = unpack_blocks(image_config, blocks)
    return quantized.w_int.astype(np.int64), fields


def prepare_layer(layer, config: StrumConfig, x_int8: np.ndarray, quantized=None) -> LayerJob:
    """Quantize a layer's weights, lay its input out in blocks, and compute the golden output.

    ``layer`` is a :class:`strum.quant.onnx_io.Layer`; ``x_int8`` its int8 input,
    ``[N, C, *spatial]`` for Conv, ``[N, C]`` for Gemm and MatMul. ``quantized``: a
    :class:`~strum.quant.quantize.QuantizedTensor` of ``config`` to use instead (e.g.
    output-aware weights).
    """
    if layer.op not in SUPPORTED_OPS:
        raise InputError(f"layer {layer.name!r}: operator {layer.op} is not supported on the DPU "
                         f"(supported: {', '.join(SUPPORTED_OPS)})")
    x = np.asarray(x_int8, dtype=np.int64)
    w_int, fields = _weight_fields(config, layer.weight, layer.name, quantized)
    if layer.op in ("Conv", "ConvTranspose"):
        attrs = layer.attrs
        groups = attrs.get("group", 1)
        expected_channels = layer.weight.shape[1] * groups
        if x.ndim != layer.weight.ndim or x.shape[1] != expected_channels:
            raise InputError(f"layer {layer.name!r}: input of shape {x.shape} does not fit weights "
                             f"{layer.weight.shape} with group={groups} (expected [N, {expected_channels}, ...])")
        options = dict(stride=attrs.get("strides", 1), padding=attrs.get("pads", 0),
                       dilation=attrs.get("dilations", 1), groups=groups)
        if layer.op == "ConvTranspose":
            # A stride-1 convolution of the upsampled, padded input (docs/method.md).
            x = conv_transpose_input(x, layer.weight.shape[2:], stride=options["stride"],
                                     padding=options["padding"], dilation=options["dilation"],
                                     output_padding=attrs.get("output_padding", 0))
            options.update(stride=1, padding=0)
        patches, out = conv_patches(x, layer.weight.shape[2:], **options)
        reference = conv(x, w_int, config.acc_width, **options)        # [N, K, *out]
        expected = np.moveaxis(reference.reshape(x.shape[0], w_int.shape[0], -1), 0, 1)
        expected = expected.reshape(w_int.shape[0], -1)
        # Batch folded into the positions: [N, g, P, L] -> [g, N*P, L].
        patches = np.moveaxis(patches, 0, 1).reshape(groups, -1, patches.shape[-1])
    else:
        if x.ndim != 2 or x.shape[1] != layer.weight.shape[1]:
            raise InputError(f"layer {layer.name!r}: input of shape {x.shape} does not fit weights "
                             f"{layer.weight.shape} (expected [N, {layer.weight.shape[1]}])")
        patches = x[None]
        expected = linear(x, w_int, config.acc_width).T
    length = patches.shape[-1]
    blocks = to_blocks(patches.reshape(-1, length), config.block_size)
    patches = blocks.reshape(patches.shape[:2] + blocks.shape[1:])
    return LayerJob(name=layer.name, config=config, weights=fields, patches=patches,
                    expected=expected, macs=int(expected.size) * length)


@dataclass(frozen=True)
class Schedule:
    """The step stream of a layer on an R x C array.

    Attributes
    ----------
    payload : dict of arrays by :func:`strum.hw.dpu.dpu_step_layout` path, ``[steps, ...]``.
    channel, position : int64 ``[tiles, R]`` / ``[tiles, C]``: the output channel and
        position each PE of each tile computes, -1 for padding.
    """

    payload: dict
    channel: np.ndarray
    position: np.ndarray

    @property
    def tiles(self) -> int:
        return self.channel.shape[0]

    @property
    def steps(self) -> int:
        return len(self.payload["last"])

    def scatter(self, job: LayerJob, tiles: np.ndarray) -> np.ndarray:
        """Tile results ``[tiles, R, C]`` to the layer's ``[K, P]`` outputs."""
        result = np.zeros_like(job.expected)
        rows = np.broadcast_to(self.channel[:, :, None], tiles.shape)
        cols = np.broadcast_to(self.position[:, None, :], tiles.shape)
        real = (rows >= 0) & (cols >= 0)
        result[rows[real], cols[real]] = tiles[real]
        return result


def _tile_indices(count: int, side: int, tiles_other: int, outer: bool):
    """Index of every row (or column) of every tile; -1 past the edge."""
    tiles = -(-count // side)
    index = np.arange(tiles * side).reshape(tiles, side)
    index = np.where(index < count, index, -1)
    # Tiles run channel-tile major, position-tile minor.
    return np.repeat(index, tiles_other, axis=0) if outer else np.tile(index, (tiles_other, 1))


def schedule(job: LayerJob, rows: int, cols: int, variant: str | None = None, *,
             activations: str = "per_column") -> Schedule:
    """Every step of every tile, as payload arrays (vectorised).

    ``activations`` is the DPU's (:class:`~strum.hw.dpu.StrumDPU`). ``per_column``: a
    tile's rows are channels of one conv group (they share the column's activations), so
    a depthwise layer fills one row per tile. ``per_pe``: tiles run over all K channels
    whatever their group, and PE (r, c) gets the activations of channel r's group at
    position c: every row is busy.
    """
    from strum.hw.dpu import check_activations

    config, fields = job.config, job.weights
    channels, positions = job.expected.shape
    per_group = channels // job.groups
    nb = job.blocks_per_output
    per_pe = check_activations(activations) == "per_pe"
    tiled_channels = channels if per_pe else per_group
    channel_tiles, position_tiles = -(-tiled_channels // rows), -(-positions // cols)
    local_channel = _tile_indices(tiled_channels, rows, position_tiles, outer=True)
    position = _tile_indices(positions, cols, channel_tiles, outer=False)
    if per_pe:
        channel = local_channel
        # Each row's own group; padding rows (zero weights) take group 0's activations.
        group = np.where(channel >= 0, channel // per_group, 0)          # [T, R]
    else:
        # One set of tiles per group; channels of group g are g*per_group + local.
        group = np.repeat(np.arange(job.groups), len(position))
        channel = np.where(np.tile(local_channel, (job.groups, 1)) >= 0,
                           np.tile(local_channel, (job.groups, 1)) + group[:, None] * per_group, -1)
        position = np.tile(position, (job.groups, 1))
    tiles = len(channel)

    # Padding rows take a zero block (the first H lanes of each group high), padding
    # columns zero activations: both contribute nothing.
    pad_fields = _zero_block(config, fields)
    def gather(array, pad):
        padded = np.concatenate([array, pad[None]], axis=0)          # index -1 -> pad
        return padded[channel]                                       # [T, R, nb, ...]

    step_payload = {}
    for name, array in (("mask", fields.mask), ("high", fields.high),
                        ("low", fields.low_codes), ("shift", fields.shift)):
        gathered = gather(array, getattr(pad_fields, _FIELD_ATTR[name]))    # [T, R, nb, ...]
        gathered = np.moveaxis(gathered, 2, 1).reshape((tiles * nb, rows) + array.shape[2:])
        step_payload[name] = gathered
    act = np.concatenate([job.patches, np.zeros((job.groups, 1) + job.patches.shape[2:], np.int64)], axis=1)
    if per_pe:
        act = act[group[:, :, None], position[:, None, :]]            # [T, R, C, nb, B]
        act = np.moveaxis(act, 3, 1).reshape(tiles * nb, rows, cols, config.block_size)
    else:
        act = act[group[:, None], position]                          # [T, C, nb, B]
        act = np.moveaxis(act, 2, 1).reshape(tiles * nb, cols, config.block_size)
    last = np.tile(np.arange(nb) == nb - 1, tiles).astype(np.int64)
    from strum.hw.layouts import check_variant

    payload = _payload_paths(config, check_variant(config, variant), step_payload, act, last, rows, cols)
    return Schedule(payload=payload, channel=channel, position=position)


_FIELD_ATTR = {"mask": "mask", "high": "high", "low": "low_codes", "shift": "shift"}


def _zero_block(config: StrumConfig, fields: BlockFields) -> BlockFields:
    """Fields of one all-zero block ``[nb, ...]``, shaped like a channel of ``fields``."""
    nb = fields.mask.shape[1]
    if config.scheme == "int8":
        mask = np.ones((nb, config.block_size), bool)
    else:
        lane = np.arange(config.block_size) % config.group_size
        mask = np.broadcast_to(lane < config.high_per_group, (nb, config.block_size))
    return BlockFields(mask=mask, high=np.zeros((nb,) + fields.high.shape[2:], np.int64),
                       low_codes=np.zeros((nb,) + fields.low_codes.shape[2:], np.uint8),
                       shift=np.zeros(nb, np.int64))


def _payload_paths(config, variant, fields, act, last, rows, cols) -> dict:
    """Step payload by layout path, for :func:`strum.sim.bits.pack_struct`."""
    from .vectors import weight_fields

    payload = {"last": last}
    for r in range(rows):
        row = weight_fields(config, variant, fields["mask"][:, r], fields["high"][:, r],
                            fields["low"][:, r], fields["shift"][:, r])
        payload.update({f"weights[{r}].{name}": value for name, value in row.items()})
    if act.ndim == 4:                   # per PE: act[r][c]
        payload.update({f"act[{r}][{c}]": act[:, r, c] for r in range(rows) for c in range(cols)})
    else:
        for c in range(cols):
            payload[f"act[{c}]"] = act[:, c]
    return payload


BACKENDS = ("amaranth", "verilator")
#: Tiles per simulator call: the granularity of the progress bar.
TILES_PER_CHUNK = 512


def _tile_array(fields: dict, rows: int, cols: int) -> np.ndarray:
    """Unpacked ``tile[r][c]`` leaves to ``[tiles, R, C]``."""
    return np.stack([np.stack([fields[f"[{r}][{c}]"] for c in range(cols)], axis=-1)
                     for r in range(rows)], axis=1)


def run_dpu(dpu, plan: Schedule, nb: int, *, backend: str = "verilator", seed: int | None = None,
            progress: bool = False, vcd=None, timing: dict | None = None):
    """Stream a schedule through a DPU: (tile results ``[tiles, R, C]``, cycles).

    ``seed`` adds random backpressure on both streams (valid gaps, ready drops).
    ``timing``, if given, receives ``build_seconds``: Verilog conversion and Verilator
    build (or cache look-up), which are not simulation time.
    """
    from tqdm import tqdm

    from strum.hw.dpu import dpu_step_layout, dpu_tile_layout
    from strum.quant.progress import interactive

    from .bits import pack_struct, unpack_struct

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    config = dpu.config
    step_layout = dpu_step_layout(config, dpu.variant, dpu.rows, dpu.cols,
                                  activations=getattr(dpu, "activations", "per_column"))
    tile_layout = dpu_tile_layout(config, dpu.rows, dpu.cols)
    words = pack_struct(step_layout, plan.payload)
    stalls = dict(valid_gap=0.2, ready_stall=0.2) if seed is not None else {}
    if backend == "verilator":
        from .verilator_backend import VerilatorStreamModel
        built = time.perf_counter()
        model = VerilatorStreamModel.from_component(dpu, name="strum_dpu")
        if timing is not None:
            timing["build_seconds"] = time.perf_counter() - built
        def simulate(chunk, tiles, chunk_seed):
            run = model.run(chunk, tiles, seed=chunk_seed, vcd=vcd, **stalls)
            return run.outputs, run.cycles
    else:
        from .amaranth_backend import run_stream
        def simulate(chunk, tiles, chunk_seed):
            run = run_stream(dpu, chunk, tiles, in_port="steps", out_port="tiles",
                             backpressure_seed=chunk_seed if stalls else None, vcd=vcd)
            return run.outputs, run.cycles
    outputs, cycles = [], 0
    chunks = range(0, plan.tiles, TILES_PER_CHUNK if vcd is None else plan.tiles)
    for index, start in enumerate(tqdm(chunks, disable=not (progress and interactive()),
                                       unit="chunk", leave=False,
                                       desc=f"{backend} {plan.tiles} tiles")):
        stop = min(start + TILES_PER_CHUNK if vcd is None else plan.tiles, plan.tiles)
        chunk_seed = None if seed is None else seed + index
        out, chunk_cycles = simulate(words[start * nb:stop * nb], stop - start, chunk_seed or 0)
        outputs.append(out)
        cycles += chunk_cycles
    fields = unpack_struct(tile_layout, np.concatenate(outputs))
    return _tile_array(fields, dpu.rows, dpu.cols), cycles


def layer_inputs(model, config: StrumConfig, data, batch: int, short: str = "int8") -> dict:
    """Every quantized layer's real int8 input, from integer inference on ``batch``
    inputs of ``data`` (``digits``, ``mnist``, an ``.npz`` or a folder; see
    :func:`strum.quant.evaluate.load_data`)."""
    from strum.quant.evaluate import load_data
    from strum.quant.inference import Network, trace_layers

    network = Network(model)
    loaded = load_data(data, inputs=list(network.inputs))
    images = loaded.images
    if isinstance(images, dict):
        images = {name: value if network.batch_axes[name] is None
                  else np.take(value, np.arange(min(batch, value.shape[network.batch_axes[name]])),
                               axis=network.batch_axes[name])
                  for name, value in images.items()}
    else:
        images = images[:batch]
    traces = trace_layers(network, config, images, loaded.calibration, short=short)
    return {trace.name: trace.x_int8 for trace in traces}


def simulate_model_layers(model, layer: str, hardware: dict, *, backend: str = "verilator",
                          seed: int = 0, data=None, batch: int = 1, backpressure: bool = False,
                          vcd=None, progress: bool = True, short: str = "int8",
                          quantized=None) -> list[dict]:
    """``strum simulate layer``: one layer (or ``"all"``) of an ONNX model through a DPU.

    ``hardware`` holds the StrumDPU keywords (config, rows, cols, variant, ...). Inputs
    are the layers' real int8 inputs when ``data`` names a data set, else random int8
    from ``seed``. A layer that the short-reduction policy ``short``
    (:data:`strum.quant.quantize.SHORT_POLICIES`) keeps int8 runs on the int8 array of the
    same size, as integer inference computes it; its report says ``"short_reduction"``.
    ``quantized`` maps layer names to weights to use instead of the plain quantizer's
    (e.g. :func:`strum.quant.calibrate.quantize_model`'s); a short layer kept int8 ignores it.
    """
    from strum.quant.quantize import short_config

    from strum.quant.onnx_io import find_layer, load_layers, node_operator

    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    layers = load_layers(model)
    if layer != "all" and layer not in {candidate.name for candidate in layers}:
        operator = node_operator(model, layer)
        if operator is not None:
            raise InputError(f"layer {layer!r} is a {operator} node: operator {operator} is not "
                             f"supported on the DPU (supported: {', '.join(SUPPORTED_OPS)} with "
                             f"constant weights)")
    chosen = layers if layer == "all" else [find_layer(layers, layer)]
    for candidate in chosen:
        if candidate.op not in SUPPORTED_OPS:
            raise InputError(f"layer {candidate.name!r}: operator {candidate.op} is not supported "
                             f"on the DPU (supported: {', '.join(SUPPORTED_OPS)})")
    config = hardware["config"]
    inputs = layer_inputs(model, config, data, batch, short) if data is not None else {}
    from strum.quant.progress import phase

    reports = []
    for index, candidate in enumerate(chosen):
        x = inputs.get(candidate.name)
        if x is None:
            x = random_input(input_shape(candidate, batch), seed + index)
        layer_config = short_config(config, candidate.weight, short)
        options = {k: v for k, v in hardware.items() if k != "config"}
        if layer_config != config:
            options.update(variant="int8", routing=None)
            options.pop("shared", None)          # nothing to share: the int8 array has no masks
        given = (quantized or {}).get(candidate.name) if layer_config == config else None
        job = prepare_layer(candidate, layer_config, x, given)
        with phase(f"co-simulating layer {index + 1}/{len(chosen)} {candidate.name} "
                   f"({job.macs:,} MACs) on {backend}"):
            reports.append(simulate_layer(job, **options, backend=backend,
                                          seed=seed if backpressure else None,
                                          progress=progress, vcd=vcd))
        reports[-1]["input"] = "real" if candidate.name in inputs else "random"
        if layer_config != config:
            reports[-1]["short_reduction"] = "int8 (on the int8 array)"
    return reports


def simulate_layer(job: LayerJob, *, rows: int = 4, cols: int = 4, backend: str = "verilator",
                   variant: str | None = None, seed: int | None = None, progress: bool = False,
                   vcd=None, adder_stages: int = 1, routing: str | None = None,
                   shared: str = "none", activations: str = "per_column") -> dict:
    """Run a prepared layer through a DPU and compare every output with the golden model.

    ``shared`` is the DPU's (:class:`~strum.hw.dpu.StrumDPU`); with ``route`` the rows of
    a tile that share a mask (``config.mask_share``) must be channels of one mask group.

    ``activations="per_pe"`` (:class:`~strum.hw.dpu.StrumDPU`) fills every row of a tile
    with a depthwise (or grouped) layer's channels.

    Returns the report ``{"layer", "backend", "macs", "outputs", "mismatches", "cycles",
    "utilization", "array_utilization", "lane_utilization", "activations", "seconds"}``:
    ``utilization`` = MACs / (R C B cycles) is the product of ``array_utilization`` (the
    share of PE cycles spent on a real output: tile edges, stalls and the pipeline
    drain excluded) and ``lane_utilization`` (MACs / (outputs x blocks x B): the share
    of lanes holding a real weight, lower when the reduction is padded to whole blocks,
    e.g. 9 of 16 for a 3x3 depthwise kernel). A mismatch also adds ``"first_mismatch"``.
    """
    from strum.hw.dpu import StrumDPU

    start = time.perf_counter()
    per_group = job.expected.shape[0] // job.groups
    if shared == "route" and per_group % job.config.mask_share and per_group != 1:
        raise InputError(f"layer {job.name}: {per_group} output channels per conv group is not a "
                         f"multiple of mask_share={job.config.mask_share}, so a tile's rows would "
                         f"mix mask groups")
    dpu = StrumDPU(config=job.config, rows=rows, cols=cols, variant=variant,
                   adder_stages=adder_stages, routing=routing, shared=shared,
                   activations=activations)
    plan = schedule(job, rows, cols, dpu.variant, activations=activations)
    timing = {}
    tiles, cycles = run_dpu(dpu, plan, job.blocks_per_output, backend=backend, seed=seed,
                            progress=progress, vcd=vcd, timing=timing)
    got = plan.scatter(job, tiles)
    wrong = np.argwhere(got != job.expected)
    report = {
        "layer": job.name, "backend": backend, "macs": job.macs, "outputs": int(job.expected.size),
        "mismatches": int(len(wrong)), "cycles": int(cycles),
        "utilization": job.macs / (rows * cols * job.config.block_size * cycles),
        "array_utilization": job.expected.size * job.blocks_per_output / (rows * cols * cycles),
        "lane_utilization": job.macs / (job.expected.size * job.blocks_per_output
                                        * job.config.block_size),
        "activations": activations,
        # The layer's own time; building the model (once, then cached) is reported apart.
        "seconds": time.perf_counter() - start - timing.get("build_seconds", 0.0),
        "build_seconds": timing.get("build_seconds", 0.0),
    }
    if len(wrong):
        channel, position = (int(v) for v in wrong[0])
        report["first_mismatch"] = {"channel": channel, "position": position,
                                    "expected": int(job.expected[channel, position]),
                                    "got": int(got[channel, position])}
    return report
