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

__all__ = ["random_fields", "layer_fields", "layer_input", "pe_stimulus", "RESET_CYCLES",
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


def pe_stimulus(netlist: Netlist, block_layout, fields: dict, count: int, *,
                warmup: int = WARMUP_BLOCKS, offset: int = 0) -> Stimulus:
    """Input bits of a PE netlist: reset, ``warmup`` blocks, then the ``count`` measured.

    Blocks are taken from ``fields`` from ``offset`` on, cyclically if the stream is
    shorter; the warm-up blocks are the ones just before. ``result.ready`` is held
    high, so the PE takes one block per cycle.
    """
    from strum.sim.bits import pack_struct

    length = len(fields["act"])
    index = np.arange(offset - warmup, offset + count) % length
    chosen = {name: np.asarray(value)[index] for name, value in fields.items()}
    words = pack_struct(block_layout, chosen)
    payload_width = len(netlist.inputs["blocks__payload"])
    payload = np.unpackbits(words.astype("<u4").view(np.uint8), axis=1,
                            bitorder="little")[:, :payload_width]
    cycles = RESET_CYCLES + len(index)
    ports = {name: np.zeros((cycles, len(bits)), np.uint8) for name, bits in netlist.inputs.items()}
    ports["rst"][:RESET_CYCLES] = 1
    ports["blocks__valid"][RESET_CYCLES:] = 1
    ports["result__ready"][:] = 1
    ports["blocks__payload"][RESET_CYCLES:] = payload
    columns = [ports[name] for name in sorted(netlist.inputs) if name != "clk"]
    bits = np.concatenate(columns, axis=1)
    assert bits.shape[1] == len(input_nets(netlist))
    return Stimulus(bits=bits, start=RESET_CYCLES + warmup, count=count)
