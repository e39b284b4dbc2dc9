"""Stream co-simulation throughput: Amaranth's simulator against the Verilator harness.

Run: ``python benchmarks/bench_verilator_harness.py [--amaranth-items N] [--verilator-items N]
[--cache DIR]``. The design is a one-stage pipelined dot product of 8 int8 activations and
8 int8 weights (a 128-bit struct payload in, a 20-bit signed sum out) that takes one item
per cycle. Both simulators get the same random items with no backpressure; the script
prints the build time, items per second of each and their ratio, and checks that the
outputs agree on the items both simulated.
"""

import argparse
import time

import numpy as np
from amaranth import Module, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from strum.sim.bits import pack_struct, unpack_field, words_for
from strum.sim.verilator_backend import VerilatorStreamModel

LANES = 8


class DotInput(data.Struct):
    act: data.ArrayLayout(signed(8), LANES)
    weight: data.ArrayLayout(signed(8), LANES)


class Dot(wiring.Component):
    """Registered dot product of one input item per cycle."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(DotInput)),
                          "o": Out(stream.Signature(signed(20)))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.i.ready):
            payload = self.i.payload
            m.d.sync += [self.o.valid.eq(self.i.valid),
                         self.o.payload.eq(sum(payload.act[k] * payload.weight[k]
                                               for k in range(LANES)))]
        return m


def amaranth_items_per_second(words, out_width):
    dut = Dot()
    received = []

    async def producer(ctx):
        for row in words:
            ctx.set(Value.cast(dut.i.payload), int.from_bytes(row.astype("<u4").tobytes(), "little"))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(len(words)):
            payload, = await ctx.tick().sample(Value.cast(dut.o.payload).as_unsigned()).until(dut.o.valid)
            received.append(np.frombuffer(payload.to_bytes(4 * words_for(out_width), "little"), "<u4"))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    start = time.perf_counter()
    sim.run()
    seconds = time.perf_counter() - start
    return len(words) / seconds, np.array(received, dtype=np.uint32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amaranth-items", type=int, default=5_000)
    parser.add_argument("--verilator-items", type=int, default=2_000_000)
    parser.add_argument("--cache", default=None, help="build cache (default: the strum cache)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = max(args.amaranth_items, args.verilator_items)
    words = pack_struct(DotInput, {"act": rng.integers(-128, 128, (n, LANES)),
                                   "weight": rng.integers(-128, 128, (n, LANES))})

    model = VerilatorStreamModel.from_component(Dot(), name="dot", cache=args.cache)
    print(f"verilator build: {model.build_seconds:.2f} s"
          f"{' (cached)' if model.from_cache else ''}, {model.build_dir}")
    model.run(words[:1000], 1000)  # load the library and warm the caches
    start = time.perf_counter()
    run = model.run(words[:args.verilator_items], args.verilator_items)
    verilator_rate = args.verilator_items / (time.perf_counter() - start)

    amaranth_rate, amaranth_out = amaranth_items_per_second(words[:args.amaranth_items],
                                                            model.out_width)
    assert np.array_equal(run.outputs[:args.amaranth_items], amaranth_out), "simulators disagree"
    sums = unpack_field(run.outputs, 0, model.out_width, True)
    assert sums.min() < 0 < sums.max()

    print(f"{'simulator':10s} {'items':>10s} {'items/s':>12s}")
    print(f"{'amaranth':10s} {args.amaranth_items:10d} {amaranth_rate:12.0f}")
    print(f"{'verilator':10s} {args.verilator_items:10d} {verilator_rate:12.0f}")
    print(f"verilator / amaranth: {verilator_rate / amaranth_rate:.0f}x "
          f"({run.cycles} cycles for {args.verilator_items} items)")


if __name__ == "__main__":
    main()
