"""Speed and figures of ``strum power`` on B = 16 PEs (not a test: prints, asserts nothing).

    python benchmarks/bench_power.py [--blocks 20000] [--timed-blocks 500]

Goals (issue 9): 20,000 zero-delay blocks of a B = 16 PE in under 60 s once the
netlist is built (Verilator, the build itself timed apart) and a 500-block timed
sample in under 3 minutes (Icarus). Runs the MIP2Q G = 4 static PE and the int8 PE
on the same random blocks and prints times against the goals and the energy ratio.
"""

from __future__ import annotations

import argparse
import time

from strum.hw.layouts import check_variant, pe_block_layout
from strum.power.energy import estimate
from strum.power.library import read_power_library
from strum.power.netlist import mapped_netlist
from strum.power.simulate import icarus_activity, verilator_activity
from strum.power.stimulus import pe_stimulus, random_fields
from strum.quant.config import StrumConfig
from strum.synth.designs import Design
from strum.synth.liberty import OSU018_LIBERTY

PERIOD = 20.0


def run(config, blocks, timed_blocks, library):
    design = Design(config=config)
    t0 = time.perf_counter()
    netlist, _ = mapped_netlist(design)
    t_netlist = time.perf_counter() - t0
    variant = check_variant(config, None)
    fields = random_fields(config, variant, blocks, seed=0)
    layout = pe_block_layout(config, variant)
    t0 = time.perf_counter()
    verilator_activity(netlist, library, pe_stimulus(netlist, layout, fields, 10), period=PERIOD)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    zd = estimate(netlist, verilator_activity(netlist, library, pe_stimulus(netlist, layout, fields, blocks),
                                              period=PERIOD), library, period=PERIOD)
    t_zd = time.perf_counter() - t0
    t0 = time.perf_counter()
    timed = estimate(netlist, icarus_activity(netlist, library, pe_stimulus(netlist, layout, fields, timed_blocks),
                                              period=PERIOD, timed=True), library, period=PERIOD)
    t_timed = time.perf_counter() - t0
    print(f"{design.name}: {len(netlist.cells)} cells; netlist {t_netlist:.1f} s, Verilator build "
          f"(+10 blocks) {t_build:.1f} s")
    print(f"  zero delay: {blocks} blocks in {t_zd:.1f} s (goal 60 s: {t_zd / 60:.2f} of it), "
          f"{zd.total / blocks:.1f} pJ/block")
    print(f"  timed:      {timed_blocks} blocks in {t_timed:.1f} s (goal 180 s: {t_timed / 180:.2f} of it), "
          f"{timed.total / timed_blocks:.1f} pJ/block")
    return zd.total / blocks, timed.total / timed_blocks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20000)
    parser.add_argument("--timed-blocks", type=int, default=500)
    args = parser.parse_args(argv)
    library = read_power_library(OSU018_LIBERTY)
    strum = run(StrumConfig(scheme="mip2q", block_size=16, high_lanes=8, group_size=4), args.blocks,
                args.timed_blocks, library)
    int8 = run(StrumConfig(scheme="int8", block_size=16, high_lanes=16), args.blocks,
               args.timed_blocks, library)
    print(f"MIP2Q G=4 / int8, random data: zero delay {strum[0] / int8[0]:.3f}, "
          f"timed {strum[1] / int8[1]:.3f}")


if __name__ == "__main__":
    main()
