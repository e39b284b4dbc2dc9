"""Block streams for a PE's power run: random blocks or a real layer's stream.

Real data is what PE (0, 0) of an R x C DPU (4 x 4 default) sees when it runs the
layer: the weights of the tile's first output channel and the int8 inputs of its
first output position, step by step in the DPU's stream order
(:func:`strum.sim.layer.schedule`), the inputs from integer inference on real images
(:func:`strum.sim.layer.layer_inputs`). Every design of a comparison takes the inputs
of the same inference (the int8 model's), so they see the same activations.
"""

from __future__ import annotations

import numpy as np

from strum.quant.config import StrumConfig

from .netlist import Netlist
from .simulate import Stimulus, input_nets

__all__ = ["random_fields", "layer_fields", "layer_input", "pe_stimulus", "dpu_random_fields",
           "dpu_layer_fields", "dpu_stimulus", "RESET_CYCLES",
           "WARMUP_BLOCKS"]

#: Cycles with ``rst`` high before the first block.
RESET_CYCLES = 2
#: Blocks run before the window opens, so that every pipeline register holds data.
WARMUP_BLOCKS = 4


def random_fields(config: StrumConfig, variant: str, count: int, seed: int) -> dict:
    """``count`` random blocks (:func:`strum.sim.vectors.random_blocks`) as PE payload fields."""
    from strum.sim.vectors import layout_fields, random_blocks

    return layout_fields(random_blocks(config, count, seed), variant)


def layer_input(model, layer: str, data, batch: int) -> np.ndarray:
    """The layer's real int8 input from integer inference of the int8 model."""
    from strum.quant.onnx_io import find_layer, load_layers
    from strum.sim.layer import layer_inputs

    inputs = layer_inputs(model, StrumConfig(scheme="int8"), data, batch)
    find_layer(load_layers(model), layer)       # a clear error for an unknown layer
    if layer not in inputs:
        raise ValueError(f"layer {layer!r} has no traced int8 input")
    return inputs[layer]


def layer_fields(model, layer: str, config: StrumConfig, variant: str, x_int8: np.ndarray, *,
                 rows: int = 4, cols: int = 4) -> dict:
    """PE (0, 0)'s block stream of ``layer`` on an R x C DPU, as PE payload fields."""
    from strum.quant.onnx_io import find_layer, load_layers
    from strum.sim.layer import prepare_layer, schedule

    job = prepare_layer(find_layer(load_layers(model), layer), config, x_int8)
    payload = schedule(job, rows, cols, variant).payload
    fields = {name[len("weights[0]."):]: value for name, value in payload.items()
              if name.startswith("weights[0].")}
    fields["act"] = payload["act[0]"]
    last = payload["last"].astype(bool)
    fields["first"] = np.concatenate([[True], last[:-1]]).astype(np.int64)
    fields["last"] = last.astype(np.int64)
    return fields


def dpu_random_fields(config: StrumConfig, variant: str, rows: int, cols: int, count: int,
                      seed: int) -> dict:
    """``count`` random DPU steps by layout path: row r's weights and column c's
    activations from independent :func:`strum.sim.vectors.random_blocks` streams."""
    from strum.sim.vectors import random_blocks, weight_fields

    payload = {}
    for r in range(rows):
        v = random_blocks(config, count, seed + r)
        high = v.weights if variant == "int8" else v.high
        payload.update({f"weights[{r}].{name}": value for name, value in
                        weight_fields(config, variant, v.mask, high, v.low, v.shift).items()})
        if r == 0:
            payload["last"] = v.last.astype(np.int64)
    for c in range(cols):
        payload[f"act[{c}]"] = random_blocks(config, count, seed + 1000 + c).act
    return payload


def dpu_layer_fields(model, layer: str, config: StrumConfig, variant: str, x_int8: np.ndarray, *,
                     rows: int, cols: int) -> dict:
    """The R x C DPU's step stream of ``layer`` (:func:`strum.sim.layer.schedule`) by path."""
    from strum.quant.onnx_io import find_layer, load_layers
    from strum.sim.layer import prepare_layer, schedule

    job = prepare_layer(find_layer(load_layers(model), layer), config, x_int8)
    return dict(schedule(job, rows, cols, variant).payload)


def dpu_stimulus(netlist: Netlist, step_layout, fields: dict, count: int, *,
                 warmup: int = WARMUP_BLOCKS, offset: int = 0) -> Stimulus:
    """Input bits of a DPU netlist (``steps`` in, ``tiles`` out), one step per cycle, as
    :func:`pe_stimulus`."""
    return pe_stimulus(netlist, step_layout, fields, count, warmup=warmup, offset=offset,
                       ports=("steps", "tiles"), length_field="last")


def pe_stimulus(netlist: Netlist, block_layout, fields: dict, count: int, *,
                warmup: int = WARMUP_BLOCKS, offset: int = 0, ports=("blocks", "result"),
                length_field: str = "act") -> Stimulus:
    """Input bits of a PE netlist: reset, ``warmup`` blocks, then the ``count`` measured.

    Blocks are taken from ``fields`` from ``offset`` on, cyclically if the stream is
    shorter; the warm-up blocks are the ones just before. ``result.ready`` is held
    high, so the PE takes one block per cycle. ``ports``: the input and output streams'
    names.
    """
    from strum.sim.bits import pack_struct

    source, sink = ports
    length = len(fields[length_field])
    index = np.arange(offset - warmup, offset + count) % length
    chosen = {name: np.asarray(value)[index] for name, value in fields.items()}
    words = pack_struct(block_layout, chosen)
    payload_width = len(netlist.inputs[f"{source}__payload"])
    payload = np.unpackbits(words.astype("<u4").view(np.uint8), axis=1,
                            bitorder="little")[:, :payload_width]
    cycles = RESET_CYCLES + len(index)
    bits_of = {name: np.zeros((cycles, len(bits)), np.uint8) for name, bits in netlist.inputs.items()}
    bits_of["rst"][:RESET_CYCLES] = 1
    bits_of[f"{source}__valid"][RESET_CYCLES:] = 1
    bits_of[f"{sink}__ready"][:] = 1
    bits_of[f"{source}__payload"][RESET_CYCLES:] = payload
    columns = [bits_of[name] for name in sorted(netlist.inputs) if name != "clk"]
    bits = np.concatenate(columns, axis=1)
    assert bits.shape[1] == len(input_nets(netlist))
    return Stimulus(bits=bits, start=RESET_CYCLES + warmup, count=count)
