"""PE co-simulation speed: blocks per second on Amaranth's simulator and on Verilator.

Run: ``python benchmarks/bench_pe.py [--scheme dliq] [--variant static]
[--amaranth-blocks 2000] [--verilator-blocks 1000000]``. The same PE and the same
golden vectors (seed 0) go through both backends; every result is checked. The
Verilator figure excludes its (cached) build, which is printed separately.
"""

import argparse
import time

import numpy as np

from strum.hw.pe import StrumPE
from strum.quant.config import StrumConfig
from strum.sim.cosim import run_pe
from strum.sim.vectors import random_blocks


def measure(pe, blocks, backend):
    start = time.perf_counter()
    results, cycles = run_pe(pe, blocks, backend=backend)
    seconds = time.perf_counter() - start
    if not np.array_equal(results, blocks.expected):
        raise SystemExit(f"{backend}: results differ from the golden model")
    return seconds, cycles


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", default="dliq")
    parser.add_argument("--variant", default=None)
    parser.add_argument("--amaranth-blocks", type=int, default=2000)
    parser.add_argument("--verilator-blocks", type=int, default=1_000_000)
    args = parser.parse_args()
    config = StrumConfig(scheme=args.scheme)
    pe = StrumPE(config=config, variant=args.variant)
    print(f"PE {config.scheme} {pe.variant} B={config.block_size} H={config.high_lanes}")

    build_start = time.perf_counter()
    run_pe(pe, random_blocks(config, 10, 1), backend="verilator")       # build or load the cache
    print(f"verilator build/load: {time.perf_counter() - build_start:.1f} s")

    rates = {}
    for backend, count in (("amaranth", args.amaranth_blocks), ("verilator", args.verilator_blocks)):
        blocks = random_blocks(config, count, 0)
        pe = StrumPE(config=config, variant=args.variant)
        seconds, cycles = measure(pe, blocks, backend)
        rates[backend] = count / seconds
        print(f"{backend:10s} {count:9d} blocks {cycles:9d} cycles {seconds:8.2f} s "
              f"{rates[backend]:12.0f} blocks/s")
    print(f"verilator / amaranth: {rates['verilator'] / rates['amaranth']:.0f}x (end to end: "
          f"payload packing, simulation, unpacking)")
    # The simulator alone, without the NumPy packing around it.
    from strum.sim.bits import pack_struct
    from strum.sim.vectors import layout_fields
    from strum.sim.verilator_backend import VerilatorStreamModel

    blocks = random_blocks(config, args.verilator_blocks, 0)
    model = VerilatorStreamModel.from_component(pe, name="strum_pe")
    words = pack_struct(pe.block_layout, layout_fields(blocks, pe.variant))
    start = time.perf_counter()
    run = model.run(words, int(blocks.last.sum()))
    seconds = time.perf_counter() - start
    print(f"verilator simulation alone: {run.cycles / seconds:.0f} cycles/s "
          f"({run.cycles / seconds / rates['amaranth']:.0f}x amaranth end to end)")


if __name__ == "__main__":
    main()
