"""The energy model against OpenSTA 3.0.1 ``report_power`` on the same netlist and VCDs.

Data (tests/data/power, from ../shared/power-reference): a static MIP2Q G=4 PE mapped
to OSU 0.18 um, Icarus VCDs of 450 real-data blocks (zero delay and timed), and
OpenSTA's reports with a 20 ns clock, 0.1 ns input and clock transitions, no wires.
"""

import lzma
import re
from pathlib import Path

import numpy as np
import pytest

from strum.power.activity import read_trace
from strum.power.energy import Activity, estimate
from strum.power.library import parse_function, read_power_library, diff_duty_table
from strum.power.netlist import netlist_from_verilog
from strum.synth.liberty import OSU018_LIBERTY

DATA = Path(__file__).parent / "data" / "power"
needs_osu = pytest.mark.skipif(not OSU018_LIBERTY.is_file(),
                               reason="needs qflow-tech-osu018 (apt-get install qflow-tech-osu018)")


def _opensta(name: str) -> dict:
    text = (DATA / f"opensta_report_power_{name}.txt").read_text()
    fields = {}
    for group in ("Sequential", "Combinational", "Total"):
        values = re.search(rf"^{group}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M).groups()
        fields[group] = dict(zip(("internal", "switching", "leakage", "total"), map(float, values)))
    return fields


@pytest.fixture(scope="module")
def reference(tmp_path_factory, isolated_cache):
    folder = tmp_path_factory.mktemp("power-reference")
    for name in ("mip2q_g4_netlist.v", "mip2q_g4_real_450_zd.vcd", "mip2q_g4_real_450_timed.vcd"):
        (folder / name).write_bytes(lzma.decompress((DATA / f"{name}.xz").read_bytes()))
    netlist = netlist_from_verilog(folder / "mip2q_g4_netlist.v", OSU018_LIBERTY)
    return folder, netlist, read_power_library(OSU018_LIBERTY)


@needs_osu
@pytest.mark.parametrize("kind", ["zd", "timed"])
def test_matches_opensta(reference, kind):
    folder, netlist, library = reference
    activity = read_trace(folder / f"mip2q_g4_real_450_{kind}.vcd", netlist, "tb.dut")
    assert activity.duration == pytest.approx(9000.0)       # 450 cycles of 20 ns
    result = estimate(netlist, activity, library, period=20.0, input_slew=0.1, clock_slew=0.1)
    opensta = _opensta(kind)
    to_w = 1e-12 / (activity.duration * 1e-9)
    assert result.power_w == pytest.approx(opensta["Total"]["total"], rel=0.01)
    # the parts agree too: switching, internal (clock pins included), flip-flops
    assert result.components["switching"] * to_w == pytest.approx(opensta["Total"]["switching"], rel=0.01)
    internal = result.components["internal"] + result.components["clock"]
    assert internal * to_w == pytest.approx(opensta["Total"]["internal"], rel=0.01)
    sequential = sum(result.sequential.values()) * to_w
    assert sequential == pytest.approx(opensta["Sequential"]["total"], rel=0.01)


@needs_osu
def test_constant_activity_costs_clock_and_leakage_only(reference):
    _, netlist, library = reference
    quiet = Activity(toggles=np.zeros(netlist.nets), high_time=np.zeros(netlist.nets),
                     duration=2000.0, cycles=100)
    result = estimate(netlist, quiet, library, period=20.0)
    assert result.components["switching"] == 0 and result.components["internal"] == 0
    assert result.components["clock"] > 0 and result.components["leakage"] > 0


def test_function_parser_and_sensitivity():
    tree = parse_function("(!((S A) + (!S B)))")      # OSU MUX2X1
    mask, others = diff_duty_table(tree, "A", ["A", "B", "S"])
    # A matters exactly when S is 1, whatever B is
    assert others == ["B", "S"]
    assert list(mask) == [False, False, True, True]
    assert parse_function("((A^B)^C)")[0] == "xor"
    with pytest.raises(ValueError):
        parse_function("(A B")


@needs_osu
def test_wire_capacitance_adds_switching(reference):
    folder, netlist, library = reference
    activity = read_trace(folder / "mip2q_g4_real_450_zd.vcd", netlist, "tb.dut")
    bare = estimate(netlist, activity, library, period=20.0)
    wired = estimate(netlist, activity, library, period=20.0, wire_cap=0.002)
    assert wired.components["switching"] > 1.05 * bare.components["switching"]
    assert wired.components["clock"] == pytest.approx(bare.components["clock"])
