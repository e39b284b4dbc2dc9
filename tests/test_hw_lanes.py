# amaranth: UnusedElaboratable=no
"""Exhaustive tests of the PE's arithmetic parts, on Amaranth's simulator.

One combinational lane per activation value (256 lanes side by side, their products
read back as one wide word) turns the exhaustive sweep into one simulator step per
weight code: every 8x8 pair in 256 steps, every 4x8 pair with every DLIQ shift in 80,
every MIP2Q code (each power of two, both signs, zero) in 16.
"""

import itertools
import math

import numpy as np
import pytest
from amaranth.hdl import Cat, ClockDomain, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from strum.hw.accumulator import Accumulator
from strum.hw.adder_tree import AdderTree, register_levels
from strum.hw.lanes import DliqLane, Int8Lane, LowShift, Mip2qLane, ZeroLane
from strum.hw.mask_decoder import MaskDecoder
from strum.hw.router import ROUTINGS, ActivationRouter, network_plan
from strum.quant.config import StrumConfig
from strum.quant.strum import dliq_decode, mip2q_decode

CONFIG = StrumConfig()
ACTS = np.arange(-128, 128)


class LaneBank(Elaboratable):
    """One lane per activation value; ``weight`` (and ``shift``) shared by all lanes."""

    def __init__(self, lane_class, weight_port, *, with_shift=False):
        self.lanes = [lane_class(config=CONFIG) for _ in ACTS]
        self.weight = Signal(len(getattr(self.lanes[0], weight_port)))
        self.weight_port = weight_port
        self.with_shift = with_shift
        self.shift = Signal(CONFIG.shift_width)
        width = self.lanes[0].product_width
        self.shifters = [LowShift(config=CONFIG, width=width) for _ in ACTS] if with_shift else []
        self.width = self.shifters[0].output_width if with_shift else width
        self.products = Signal(self.width * len(ACTS))

    def elaborate(self, platform):
        m = Module()
        outputs = []
        for index, (act, lane) in enumerate(zip(ACTS, self.lanes)):
            m.submodules[f"lane_{index}"] = lane
            m.d.comb += [lane.act.eq(int(act)), getattr(lane, self.weight_port).eq(self.weight)]
            out = lane.product
            if self.with_shift:
                shifter = m.submodules[f"shift_{index}"] = self.shifters[index]
                m.d.comb += [shifter.value.eq(out), shifter.shift.eq(self.shift)]
                out = shifter.shifted
            outputs.append(out)
        m.d.comb += self.products.eq(Cat(*outputs))
        return m


def sweep(bank, weights, shifts=(0,)):
    """Products ``{(weight, shift): int64 [256]}`` of every activation."""
    found = {}

    async def bench(ctx):
        mask = (1 << bank.width) - 1
        for weight, shift in itertools.product(weights, shifts):
            ctx.set(bank.weight, weight)
            ctx.set(bank.shift, shift)
            word = ctx.get(bank.products)
            raw = np.array([(word >> (i * bank.width)) & mask for i in range(len(ACTS))], dtype=np.int64)
            found[weight, shift] = raw - ((raw >> (bank.width - 1)) << bank.width)

    sim = Simulator(bank)
    sim.add_testbench(bench)
    sim.run()
    return found


def test_int8_lane_every_pair():
    found = sweep(LaneBank(Int8Lane, "weight"), range(256))
    for (code, _), products in found.items():
        weight = code - 256 if code >= 128 else code
        np.testing.assert_array_equal(products, ACTS * weight, err_msg=f"weight {weight}")
    assert len(found) * len(ACTS) == 65536


def test_dliq_lane_every_pair_and_shift():
    shifts = range(CONFIG.dliq_max_shift + 1)
    found = sweep(LaneBank(DliqLane, "code", with_shift=True), range(16), shifts)
    for (code, shift), products in found.items():
        np.testing.assert_array_equal(products, ACTS * dliq_decode(code, shift),
                                      err_msg=f"code {code} shift {shift}")
    assert len(found) == 16 * 5


def test_mip2q_lane_every_power_of_two():
    found = sweep(LaneBank(Mip2qLane, "code"), range(16))
    for (code, _), products in found.items():
        np.testing.assert_array_equal(products, ACTS * mip2q_decode(code), err_msg=f"code {code}")
    assert {abs(int(mip2q_decode(c))) for c in range(16)} == {0, 1, 2, 4, 8, 16, 32, 64}


def test_zero_lane():
    found = sweep(LaneBank(ZeroLane, "code"), range(16))
    assert all(not products.any() for products in found.values())


class SignlessMip2qLane(Mip2qLane):
    """Deliberately broken: ignores the sign bit."""

    def elaborate(self, platform):
        m = Module()
        c = self.code[:3]
        m.d.comb += self.product.eq(((self.act << c) >> 1) * (c != 0))
        return m


def test_sweep_catches_a_broken_lane():
    found = sweep(LaneBank(SignlessMip2qLane, "code"), range(16))
    wrong = [code for (code, _), products in found.items()
             if not np.array_equal(products, ACTS * mip2q_decode(code))]
    assert wrong == [c for c in range(16) if c & 8 and c & 7]


# -- mask decoder and router ---------------------------------------------------------------

def masks_with(group_size, high, limit, rng):
    """Every mask with ``high`` set bits, or ``limit`` random ones when there are more."""
    if math.comb(group_size, high) <= limit:
        chosen = itertools.combinations(range(group_size), high)
    else:
        chosen = (rng.permutation(group_size)[:high] for _ in range(limit))
    return [sum(1 << int(i) for i in ones) for ones in chosen]


@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("group_size,high", [(4, 2), (8, 4), (8, 2), (8, 6), (16, 8), (16, 0), (16, 16), (32, 16)])
def test_router_takes_the_rth_set_and_clear_lane(routing, group_size, high):
    rng = np.random.default_rng(group_size * 100 + high)
    router = ActivationRouter(group_size=group_size, high=high, act_width=8, routing=routing)
    masks = masks_with(group_size, high, 40 if group_size > 16 else 150, rng)

    async def bench(ctx):
        for mask in masks:
            act = rng.integers(-128, 128, group_size)
            ctx.set(router.mask, mask)
            for i in range(group_size):
                ctx.set(router.act[i], int(act[i]))
            bits = [(mask >> i) & 1 for i in range(group_size)]
            want_high = [int(a) for a, b in zip(act, bits) if b]
            want_low = [int(a) for a, b in zip(act, bits) if not b]
            assert [ctx.get(router.high[r]) for r in range(high)] == want_high, f"mask {mask:#x}"
            assert [ctx.get(router.low[r]) for r in range(group_size - high)] == want_low, f"mask {mask:#x}"

    sim = Simulator(router)
    sim.add_testbench(bench)
    sim.run()


def test_network_plan_prunes_only_impossible_muxes():
    # Exhaustively over all masks of G=8, h=4: every mux kept sees both cases.
    G, h = 8, 4
    plan = network_plan(G, h, (G - h).bit_length())
    seen = [[[False, False] for _ in range(G)] for _ in plan]
    for ones in itertools.combinations(range(G), h):
        items = [(i, i - sum(1 for o in ones if o < i)) for i in ones]
        for stage in range(len(plan)):
            for i, z in items:
                at = i - (z % (1 << stage))
                if z >> stage & 1:
                    seen[stage][at - (1 << stage)][1] = True
                else:
                    seen[stage][at][0] = True
    assert [[tuple(s) for s in row] for row in seen] == plan


def test_mask_decoder_refuses_bad_parameters():
    with pytest.raises(ValueError, match="high must be an integer from 0 to group_size=4, not 5"):
        MaskDecoder(group_size=4, high=5)
    with pytest.raises(ValueError, match="encoding must be one of .*, not 'gray'"):
        MaskDecoder(group_size=4, high=2, encoding="gray")
    with pytest.raises(ValueError, match="routing must be one of .*, not 'crossbar'"):
        ActivationRouter(group_size=4, high=2, act_width=8, routing="crossbar")


# -- adder tree and accumulator -------------------------------------------------------------

def test_register_levels_spread_and_stack():
    assert register_levels(4, 0) == []
    assert register_levels(4, 1) == [2]
    assert register_levels(4, 5) == [0, 1, 2, 3, 4]
    assert register_levels(2, 5) == [0, 1, 2, 2, 2]


@pytest.mark.parametrize("count,stages", [(1, 0), (5, 2), (16, 1), (16, 6)])
def test_adder_tree_sums_and_wraps(count, stages):
    rng = np.random.default_rng(count + stages)
    tree = AdderTree(count=count, input_width=16, output_width=12, stages=stages)
    inputs = rng.integers(-2 ** 15, 2 ** 15, (40, count))
    want = [((int(v) + 2048) % 4096) - 2048 for v in inputs.sum(axis=1)]
    got = []

    async def bench(ctx):
        ctx.set(tree.enable, 1)
        for row in list(inputs) + [np.zeros(count, int)] * tree.latency:
            for i, v in enumerate(row):
                ctx.set(tree.inputs[i], int(v))
            got.append(ctx.get(tree.sum))
            await ctx.tick()

    top = Module()
    top.domains.sync = ClockDomain()        # a tree without registers has no clock of its own
    top.submodules.tree = tree
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got[tree.latency:] == want


def test_accumulator_loads_adds_holds_and_wraps():
    acc = Accumulator(width=8)
    steps = [  # (addend, valid, first, enable) -> value after the edge
        (100, 1, 1, 1, 100), (100, 1, 0, 1, -56), (5, 0, 0, 1, -56), (5, 1, 0, 0, -56),
        (-7, 1, 1, 1, -7), (-128, 1, 0, 1, 121)]

    async def bench(ctx):
        for addend, valid, first, enable, want in steps:
            ctx.set(acc.addend, addend)
            ctx.set(acc.valid, valid)
            ctx.set(acc.first, first)
            ctx.set(acc.enable, enable)
            await ctx.tick()
            assert ctx.get(acc.value) == want

    sim = Simulator(acc)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
