# amaranth: UnusedElaboratable=no
"""The PE against the golden model on Amaranth's simulator: every variant and scheme."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.sim import Simulator

import strum.hw.pe as pe_module
from strum.hw.lanes import DliqLane, LowShift
from strum.hw.layouts import pe_block_layout
from strum.hw.pe import StrumPE
from strum.hw.router import ROUTINGS
from strum.quant.config import ConfigError, StrumConfig
from strum.sim.amaranth_backend import pack_payloads, run_pe
from strum.sim.vectors import layout_fields, random_blocks

VARIANTS = [("int8", "int8"), ("dliq", "static"), ("mip2q", "static"), ("zero", "static"),
            ("dliq", "dynamic"), ("mip2q", "dynamic"), ("zero", "dynamic")]


def check(pe, vectors, **options):
    run = run_pe(pe, vectors, **options)
    np.testing.assert_array_equal(run.results, vectors.expected)
    return run


@pytest.mark.parametrize("scheme,variant", VARIANTS)
def test_random_blocks_bit_exact(scheme, variant):
    config = StrumConfig(scheme=scheme)
    vectors = random_blocks(config, 2000, seed=11)
    run = check(StrumPE(config=config, variant=variant), vectors)
    assert run.cycles <= len(vectors) + StrumPE(config=config, variant=variant).latency + 1
    if scheme == "dliq":
        assert (vectors.shift == 4).any() and (vectors.shift == 0).any()       # e = 4 is exercised
    if scheme == "mip2q":
        assert ((vectors.low & 7) == 7).any()                                  # p = 6 is exercised
    assert (vectors.act == -128).all(axis=1).any()                             # all -128 blocks


@pytest.mark.parametrize("scheme", ["dliq", "mip2q"])
@pytest.mark.parametrize("group_size", [8, 4, 2])
def test_every_selection_group(scheme, group_size):
    config = StrumConfig(scheme=scheme, group_size=group_size)
    check(StrumPE(config=config, variant="static"), random_blocks(config, 400, seed=group_size))


@pytest.mark.parametrize("routing", ROUTINGS)
def test_every_routing(routing):
    config = StrumConfig(scheme="dliq", group_size=8)
    check(StrumPE(config=config, routing=routing), random_blocks(config, 300, seed=5))


@pytest.mark.parametrize("block_size,high_lanes,group_size,scheme,variant", [
    (4, 2, None, "dliq", "static"), (8, 4, 4, "mip2q", "static"), (8, 2, None, "dliq", "dynamic"),
    (32, 16, 8, "mip2q", "static"), (32, 8, None, "dliq", "static"), (8, 8, None, "int8", "int8"),
])
def test_other_block_sizes(block_size, high_lanes, group_size, scheme, variant):
    config = StrumConfig(scheme=scheme, block_size=block_size, high_lanes=high_lanes, group_size=group_size)
    check(StrumPE(config=config, variant=variant), random_blocks(config, 200, seed=block_size))


@pytest.mark.parametrize("scheme", ["dliq", "mip2q", "zero"])
@pytest.mark.parametrize("high_lanes", [0, 16])
def test_all_low_and_all_high_masks(scheme, high_lanes):
    config = StrumConfig(scheme=scheme, high_lanes=high_lanes)
    vectors = random_blocks(config, 150, seed=high_lanes)
    assert (vectors.mask == bool(high_lanes)).all()
    for variant in ("static", "dynamic"):
        check(StrumPE(config=config, variant=variant), vectors)


def test_dynamic_pe_runs_int8_layers_with_an_all_high_mask():
    config = StrumConfig(scheme="mip2q")
    vectors = random_blocks(StrumConfig(scheme="int8"), 200, seed=3)
    pe = StrumPE(config=config, variant="dynamic")
    fields = layout_fields(vectors, "int8")
    fields = {"act": fields["act"], "mask": np.full(len(vectors), 0xFFFF), "weights": fields["weights"],
              "first": fields["first"], "last": fields["last"]}
    results = _run_fields(pe, fields, len(vectors.expected))
    np.testing.assert_array_equal(results, vectors.expected)


def _run_fields(pe, fields, count):
    words = pack_payloads(pe.block_layout, fields)
    results = []

    async def put(ctx):
        for word in words:
            ctx.set(Value.cast(pe.blocks.payload), word)
            ctx.set(pe.blocks.valid, 1)
            await ctx.tick().until(pe.blocks.ready)
        ctx.set(pe.blocks.valid, 0)

    async def take(ctx):
        ctx.set(pe.result.ready, 1)
        while len(results) < count:
            *_, valid, value = await ctx.tick().sample(pe.result.valid, pe.result.payload)
            if valid:
                results.append(value)

    sim = Simulator(pe)
    sim.add_clock(1e-6)
    sim.add_testbench(put)
    sim.add_testbench(take)
    sim.run()
    return results


@pytest.mark.parametrize("scheme,variant", [("dliq", "static"), ("int8", "int8"), ("mip2q", "dynamic")])
def test_random_backpressure_loses_nothing(scheme, variant):
    config = StrumConfig(scheme=scheme)
    vectors = random_blocks(config, 400, seed=21, mean_blocks=1.5)
    run = check(StrumPE(config=config, variant=variant, adder_stages=2), vectors, backpressure_seed=4)
    assert run.cycles > len(vectors) * 1.2


def test_accumulator_wraps_at_the_configured_width():
    config = StrumConfig(scheme="dliq", acc_width=16)
    vectors = random_blocks(config, 600, seed=8, mean_blocks=40)
    unwrapped = random_blocks(config.replace(acc_width=48), 600, seed=8, mean_blocks=40).expected
    assert (np.abs(unwrapped) >= 2 ** 15).any(), "the vectors overflow 16 bits"
    check(StrumPE(config=config), vectors)


@pytest.mark.parametrize("adder_stages,router_register",
                         [(0, False), (1, False), (3, False), (6, False), (2, True)])
def test_latency_is_what_the_component_says(adder_stages, router_register):
    config = StrumConfig(scheme="mip2q")
    pe = StrumPE(config=config, adder_stages=adder_stages, router_register=router_register)
    # The router register is one more stage: the adder stages, the accumulator and it.
    assert pe.latency == adder_stages + 1 + router_register
    vectors = random_blocks(config, 1, seed=1)
    word = pack_payloads(pe.block_layout, layout_fields(vectors, "static"))[0]
    seen = {}

    async def bench(ctx):
        ctx.set(pe.result.ready, 0)
        ctx.set(Value.cast(pe.blocks.payload), word)
        ctx.set(pe.blocks.valid, 1)
        await ctx.tick()                      # the handshake cycle ends here
        ctx.set(pe.blocks.valid, 0)
        for cycle in range(1, 12):
            if ctx.get(pe.result.valid):
                seen.setdefault("cycle", cycle)
                seen["value"] = ctx.get(pe.result.payload)
            await ctx.tick()
        assert ctx.get(pe.result.valid), "an untaken result stays valid"

    sim = Simulator(pe)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"cycle": pe.latency, "value": vectors.expected[0]}


class ShiftlessLowShift(LowShift):
    """Deliberately broken: the DLIQ low partial sum is not shifted."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.shifted.eq(self.value)
        return m


class UnsignedDliqLane(DliqLane):
    """Deliberately broken: reads the 4-bit code as unsigned."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += self.product.eq(self.act * self.code)
        return m


@pytest.mark.parametrize("part,broken", [("LowShift", ShiftlessLowShift),
                                         ("low_lane_class", lambda scheme: UnsignedDliqLane)])
def test_cosimulation_catches_a_broken_lane(monkeypatch, part, broken):
    config = StrumConfig(scheme="dliq")
    vectors = random_blocks(config, 300, seed=2)
    monkeypatch.setattr(pe_module, part, broken)
    run = run_pe(StrumPE(config=config), vectors)
    assert not np.array_equal(run.results, vectors.expected)


# -- interface ------------------------------------------------------------------------------

def test_block_layouts():
    dliq = pe_block_layout(StrumConfig(scheme="dliq"), "static")
    assert [name for name, _ in dliq] == ["act", "mask", "high", "low", "shift", "first", "last"]
    assert dliq.size == 16 * 8 + 16 + 8 * 8 + 8 * 4 + 3 + 2
    assert [n for n, _ in pe_block_layout(StrumConfig(scheme="zero"), "static")] == \
        ["act", "mask", "high", "first", "last"]
    assert [n for n, _ in pe_block_layout(StrumConfig(scheme="mip2q", high_lanes=0), "static")] == \
        ["act", "mask", "low", "first", "last"]
    assert [n for n, _ in pe_block_layout(StrumConfig(scheme="int8"))] == ["act", "weights", "first", "last"]
    assert [n for n, _ in pe_block_layout(StrumConfig(scheme="dliq"), "dynamic")] == \
        ["act", "mask", "weights", "shift", "first", "last"]


def test_verilog_ports():
    pe = StrumPE(config=StrumConfig(scheme="dliq", block_size=4, high_lanes=2), adder_stages=0)
    text = verilog.convert(pe, name="strum_pe")
    for port in ["blocks__payload", "blocks__valid", "blocks__ready",
                 "result__payload", "result__valid", "result__ready", "clk", "rst"]:
        assert f" {port}" in text, port
    assert "[31:0] result__payload" in text


@pytest.mark.parametrize("make,message", [
    (lambda: StrumConfig(block_size=16, high_lanes=17), "high_lanes must be an integer from 0 to block_size=16, not 17"),
    (lambda: StrumConfig(block_size=12), "block_size must be one of 4, 8, 16, 32, not 12"),
    (lambda: StrumConfig(acc_width=16, max_reduction_length=64), "acc_width=16 is too narrow for max_reduction_length=64"),
    (lambda: StrumPE(config=StrumConfig(), variant="systolic"), "variant must be one of int8, static, dynamic, not 'systolic'"),
    (lambda: StrumPE(config=StrumConfig(scheme="int4")), "scheme 'int4' has no PE"),
    (lambda: StrumPE(config=StrumConfig(scheme="dliq"), variant="int8"), "variant 'int8' does not run scheme 'dliq'"),
    (lambda: StrumPE(config=StrumConfig(scheme="int8"), variant="static"), "variant 'static' does not run scheme 'int8'"),
    (lambda: StrumPE(config=StrumConfig(), adder_stages=-1), "adder_stages must be an integer from 0 to 8, not -1"),
    (lambda: StrumPE(config=StrumConfig(), routing="crossbar"), "routing must be one of .*, not 'crossbar'"),
    (lambda: StrumPE(config={"scheme": "dliq"}), "config must be a StrumConfig, not dict"),
])
def test_bad_configs_are_refused(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_vectors_of_another_config_are_refused():
    vectors = random_blocks(StrumConfig(scheme="dliq"), 4, seed=0)
    with pytest.raises(ValueError, match="another config"):
        run_pe(StrumPE(config=StrumConfig(scheme="mip2q")), vectors)


@pytest.mark.parametrize("scheme,variant", [("int8", "int8"), ("dliq", "static"), ("mip2q", "static"),
                                            ("mip2q", "dynamic")])
def test_router_register_is_bit_exact(scheme, variant):
    config = StrumConfig(scheme=scheme, group_size=8 if variant == "static" else 16)
    vectors = random_blocks(config, 600, seed=13, mean_blocks=2.0)
    pe = StrumPE(config=config, variant=variant, router_register=True)
    assert pe.latency == StrumPE(config=config, variant=variant).latency + 1
    check(pe, vectors)
    check(StrumPE(config=config, variant=variant, router_register=True, adder_stages=0), vectors,
          backpressure_seed=5)


def test_router_register_must_be_a_bool():
    with pytest.raises(ConfigError, match="router_register must be a bool, not 1"):
        StrumPE(config=StrumConfig(), router_register=1)


@pytest.mark.parametrize("scheme,variant", [("int8", "int8"), ("dliq", "static"), ("mip2q", "static")])
def test_isolate_zero_is_bit_exact(scheme, variant):
    config = StrumConfig(scheme=scheme, group_size=8 if variant == "static" else 16)
    vectors = random_blocks(config, 600, seed=17, mean_blocks=2.0)
    assert (vectors.weights == 0).any()
    check(StrumPE(config=config, variant=variant, isolate_zero=True), vectors)
    check(StrumPE(config=config, variant=variant, isolate_zero=True, router_register=True), vectors)
