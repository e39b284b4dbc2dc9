"""Co-simulation of a PE against the golden model, on either backend.

Blocks come from :func:`strum.sim.vectors.random_blocks` (the golden quantizer's memory
image and random int8 activations from a seed); every accumulator the PE emits is
compared with the golden dot products.
"""

from __future__ import annotations

import time

import numpy as np

from strum.hw.pe import StrumPE
from strum.quant.config import StrumConfig

from .vectors import BlockVectors, layout_fields, random_blocks

__all__ = ["BACKENDS", "run_pe", "simulate_pe", "first_mismatch"]

BACKENDS = ("amaranth", "verilator")


def run_pe(pe: StrumPE, vectors: BlockVectors, *, backend: str = "verilator",
           backpressure_seed: int | None = None, vcd=None,
           timing: dict | None = None) -> tuple[np.ndarray, int]:
    """Feed ``vectors`` to ``pe``: (results int64 ``[r]``, cycles). ``timing``, if given,
    receives ``build_seconds`` (Verilog conversion and Verilator build or look-up)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "amaranth":
        from .amaranth_backend import run_pe as run_amaranth
        run = run_amaranth(pe, vectors, vcd=vcd, backpressure_seed=backpressure_seed)
        return run.results, run.cycles
    from .bits import pack_struct, unpack_field
    from .verilator_backend import VerilatorStreamModel

    built = time.perf_counter()
    model = VerilatorStreamModel.from_component(pe, name="strum_pe")
    if timing is not None:
        timing["build_seconds"] = time.perf_counter() - built
    words = pack_struct(pe.block_layout, layout_fields(vectors, pe.variant, getattr(pe, "shared", "none")))
    stalls = {} if backpressure_seed is None else dict(seed=backpressure_seed, valid_gap=0.3,
                                                        ready_stall=0.3)
    run = model.run(words, int(vectors.last.sum()), vcd=vcd, **stalls)
    return unpack_field(run.outputs, 0, pe.config.acc_width, True), run.cycles


def first_mismatch(vectors: BlockVectors, results: np.ndarray) -> dict | None:
    """The first wrong accumulator with the blocks that made it, or None."""
    wrong = np.flatnonzero(results != vectors.expected)
    if not len(wrong):
        return None
    index = int(wrong[0])
    ends = np.flatnonzero(vectors.last)
    stop = int(ends[index]) + 1
    start = int(ends[index - 1]) + 1 if index else 0
    blocks = [{"block": i, "act": vectors.act[i].tolist(), "weights": vectors.weights[i].tolist(),
               "mask": vectors.mask[i].astype(int).tolist(), "shift": int(vectors.shift[i])}
              for i in range(start, stop)]
    return {"result": index, "expected": int(vectors.expected[index]), "got": int(results[index]),
            "blocks": blocks}


def simulate_pe(config: StrumConfig, *, variant: str | None = None, vectors: int = 1000,
                seed: int = 0, backend: str = "verilator", vcd=None, adder_stages: int = 1,
                backpressure: bool = False, pe: StrumPE | None = None, shared: str = "none") -> dict:
    """Random blocks through a PE; the report ``{"backend", "config", "vectors",
    "mismatches", "cycles", "seconds"}`` (+ ``"first_mismatch"``)."""
    start = time.perf_counter()
    if pe is None:
        pe = StrumPE(config=config, variant=variant, adder_stages=adder_stages, shared=shared)
    from strum.quant.progress import phase

    blocks = random_blocks(config, vectors, seed)
    timing = {}
    with phase(f"co-simulating {len(blocks):,} blocks through the PE on {backend}"):
        results, cycles = run_pe(pe, blocks, backend=backend, vcd=vcd,
                                 backpressure_seed=seed if backpressure else None, timing=timing)
    report = {
        "backend": backend, "config": config.to_dict(), "variant": pe.variant,
        "vectors": len(blocks), "results": int(len(blocks.expected)),
        "mismatches": int(np.count_nonzero(results != blocks.expected)),
        "cycles": int(cycles),
        # Simulation time; building the model (once, then cached) is reported apart.
        "seconds": time.perf_counter() - start - timing.get("build_seconds", 0.0),
        "build_seconds": timing.get("build_seconds", 0.0),
    }
    bad = first_mismatch(blocks, results)
    if bad is not None:
        report["first_mismatch"] = bad
    return report
