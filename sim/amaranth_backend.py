"""Run a PE on block vectors with Amaranth's simulator.

Two async testbenches run side by side: one puts blocks on ``blocks``, one takes
results from ``result``, optionally with random stalls on either side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape, Value
from amaranth.lib import data
from amaranth.sim import Simulator

from .vectors import BlockVectors, layout_fields

__all__ = ["SimRun", "run_pe", "pack_payloads"]


@dataclass(frozen=True)
class SimRun:
    """Outcome of a simulation: ``results`` (int64, one per ``last`` block) and ``cycles``
    (clock cycles from the start until the last result was taken)."""

    results: np.ndarray
    cycles: int


def _size(shape) -> int:
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


def _field_words(shape, values) -> list[int]:
    """Raw bit patterns (Python ints) of ``values`` ``[n, ...]`` laid out as ``shape``."""
    if isinstance(shape, data.ArrayLayout):
        values = np.asarray(values)
        words = [0] * values.shape[0]
        step = _size(shape.elem_shape)
        for index in range(shape.length):
            element = _field_words(shape.elem_shape, values[:, index])
            words = [w | (e << (index * step)) for w, e in zip(words, element)]
        return words
    width = _size(shape)
    masked = np.asarray(values, dtype=np.int64) & ((1 << width) - 1)
    return [int(v) for v in masked]


def pack_payloads(layout: data.StructLayout, fields: dict[str, np.ndarray]) -> list[int]:
    """Flat payload words (Python ints, least significant field first) of a block stream."""
    n = len(next(iter(fields.values())))
    words = [0] * n
    names = {name for name, _ in layout}
    if set(fields) != names:
        raise ValueError(f"fields {sorted(fields)} do not match the layout's {sorted(names)}")
    for name, field in layout:
        field_words = _field_words(field.shape, fields[name])
        words = [w | (f << field.offset) for w, f in zip(words, field_words)]
    return words


def run_pe(pe, vectors: BlockVectors, *, vcd: str | Path | None = None,
           backpressure_seed: int | None = None, stall_probability: float = 0.3,
           max_cycles: int | None = None) -> SimRun:
    """Simulate ``pe`` (a :class:`strum.hw.pe.StrumPE`) on ``vectors``.

    Parameters
    ----------
    pe : StrumPE
    vectors : BlockVectors
        Must come from the same config as ``pe``.
    vcd : path or None
        Write a waveform there.
    backpressure_seed : int or None
        When given, the result side is not ready and the block side not valid with
        probability ``stall_probability`` on each cycle, from this seed.
    max_cycles : int or None
        Give up (RuntimeError) after this many cycles; default ``4 * blocks + 100``
        without stalls, ``20 * blocks + 100`` with.
    """
    if vectors.config != pe.config:
        raise ValueError("vectors were made for another config than the PE's")
    words = pack_payloads(pe.block_layout, layout_fields(vectors, pe.variant))
    expected_count = int(vectors.last.sum())
    stalls = backpressure_seed is not None
    put_rng = np.random.default_rng([backpressure_seed or 0, 0])
    take_rng = np.random.default_rng([backpressure_seed or 0, 1])
    if max_cycles is None:
        max_cycles = (20 if stalls else 4) * len(words) + 100
    payload = Value.cast(pe.blocks.payload)
    results, cycles = [], [0]

    async def put_blocks(ctx):
        for word in words:
            while stalls and put_rng.random() < stall_probability:
                ctx.set(pe.blocks.valid, 0)
                await ctx.tick()
            ctx.set(payload, word)
            ctx.set(pe.blocks.valid, 1)
            await ctx.tick().until(pe.blocks.ready)
        ctx.set(pe.blocks.valid, 0)

    async def take_results(ctx):
        while len(results) < expected_count:
            ready = int(not (stalls and take_rng.random() < stall_probability))
            ctx.set(pe.result.ready, ready)
            *_, valid, value = await ctx.tick().sample(pe.result.valid, pe.result.payload)
            cycles[0] += 1
            if valid and ready:
                results.append(value)
            if cycles[0] > max_cycles:
                raise RuntimeError(f"the PE produced {len(results)} of {expected_count} results "
                                   f"in {max_cycles} cycles")

    sim = Simulator(pe)
    sim.add_clock(1e-6)
    sim.add_testbench(put_blocks)
    sim.add_testbench(take_results)
    if vcd is not None:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()
    return SimRun(results=np.asarray(results, dtype=np.int64), cycles=cycles[0])
