"""Run stream components (a PE, a DPU) with Amaranth's simulator.

Two async testbenches run side by side: one puts payloads on the input stream, one
takes payloads from the output stream, optionally with random stalls on either side.
Payloads are packed by :mod:`strum.sim.bits`, as for the Verilator backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator

from .bits import pack_struct, unpack_field
from .vectors import BlockVectors, layout_fields

__all__ = ["SimRun", "StreamRun", "run_stream", "run_pe", "pack_payloads"]


@dataclass(frozen=True)
class StreamRun:
    """Outcome of :func:`run_stream`: ``outputs`` (uint32 words ``[n_out, words]``, as the
    Verilator backend returns them) and ``cycles`` (from the start until the last
    output was taken)."""

    outputs: np.ndarray
    cycles: int


@dataclass(frozen=True)
class SimRun:
    """Outcome of :func:`run_pe`: ``results`` (int64, one per ``last`` block) and ``cycles``."""

    results: np.ndarray
    cycles: int


def _as_ints(words: np.ndarray) -> list[int]:
    words = np.ascontiguousarray(words, dtype="<u4")
    return [int.from_bytes(row.tobytes(), "little") for row in words]


def pack_payloads(layout, fields: dict[str, np.ndarray]) -> list[int]:
    """Flat payloads (Python ints, least significant field first) of a stream."""
    names = {name for name, _ in layout}
    if set(fields) != names:
        raise ValueError(f"fields {sorted(fields)} do not match the layout's {sorted(names)}")
    return _as_ints(pack_struct(layout, fields))


def run_stream(component, words: np.ndarray, n_out: int, *, in_port: str, out_port: str,
               vcd: str | Path | None = None, backpressure_seed: int | None = None,
               stall_probability: float = 0.3, max_cycles: int | None = None) -> StreamRun:
    """Put ``words`` (uint32 ``[n, words]``) on ``in_port`` and take ``n_out`` payloads
    from ``out_port``.

    Parameters
    ----------
    backpressure_seed : int or None
        When given, the input is not valid and the output not ready with probability
        ``stall_probability`` on each cycle, from this seed.
    max_cycles : int or None
        Give up (RuntimeError) after this many cycles; default ``4 * n + 100`` without
        stalls, ``20 * n + 100`` with.
    """
    source, sink = getattr(component, in_port), getattr(component, out_port)
    payloads = _as_ints(words)
    out_width = len(Value.cast(sink.payload))
    stalls = backpressure_seed is not None
    put_rng = np.random.default_rng([backpressure_seed or 0, 0])
    take_rng = np.random.default_rng([backpressure_seed or 0, 1])
    if max_cycles is None:
        max_cycles = (20 if stalls else 4) * len(payloads) + 100
    source_payload, sink_payload = Value.cast(source.payload), Value.cast(sink.payload)
    outputs, cycles = [], [0]

    async def put(ctx):
        for payload in payloads:
            while stalls and put_rng.random() < stall_probability:
                ctx.set(source.valid, 0)
                await ctx.tick()
            ctx.set(source_payload, payload)
            ctx.set(source.valid, 1)
            await ctx.tick().until(source.ready)
        ctx.set(source.valid, 0)

    async def take(ctx):
        while len(outputs) < n_out:
            ready = int(not (stalls and take_rng.random() < stall_probability))
            ctx.set(sink.ready, ready)
            *_, valid, value = await ctx.tick().sample(sink.valid, sink_payload)
            cycles[0] += 1
            if valid and ready:
                outputs.append(value)
            if cycles[0] > max_cycles:
                raise RuntimeError(f"{type(component).__name__} produced {len(outputs)} of "
                                   f"{n_out} outputs in {max_cycles} cycles")

    sim = Simulator(component)
    sim.add_clock(1e-6)
    sim.add_testbench(put)
    sim.add_testbench(take)
    if vcd is not None:
        with sim.write_vcd(str(vcd)):
            sim.run()
    else:
        sim.run()
    count = -(-out_width // 32)
    words_out = np.array([[(value >> (32 * i)) & 0xFFFF_FFFF for i in range(count)] for value in outputs],
                         dtype=np.uint32).reshape(len(outputs), count)
    return StreamRun(outputs=words_out, cycles=cycles[0])


def run_pe(pe, vectors: BlockVectors, *, vcd: str | Path | None = None,
           backpressure_seed: int | None = None, stall_probability: float = 0.3,
           max_cycles: int | None = None) -> SimRun:
    """Simulate ``pe`` (a :class:`strum.hw.pe.StrumPE`) on ``vectors`` (see :func:`run_stream`)."""
    if vectors.config != pe.config:
        raise ValueError("vectors were made for another config than the PE's")
    words = pack_struct(pe.block_layout, layout_fields(vectors, pe.variant, getattr(pe, "shared", "none")))
    run = run_stream(pe, words, int(vectors.last.sum()), in_port="blocks", out_port="result",
                     vcd=vcd, backpressure_seed=backpressure_seed,
                     stall_probability=stall_probability, max_cycles=max_cycles)
    return SimRun(results=unpack_field(run.outputs, 0, pe.config.acc_width, True), cycles=run.cycles)
