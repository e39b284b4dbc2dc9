"""Gate-level activity and energy of a small PE (B = 4): simulators agree, sanity of the figures.

One isolated cache for the module: the PE's netlist and its Verilator build are made
once and shared by the tests (about 40 s on a busy machine).
"""

import json
import shutil

import numpy as np
import pytest

from strum.cli import main
from strum.hw.layouts import check_variant, pe_block_layout
from strum.power.energy import estimate
from strum.power.library import read_power_library
from strum.power.netlist import mapped_netlist
from strum.power.simulate import icarus_activity, verilator_activity
from strum.power.stimulus import pe_stimulus, random_fields
from strum.quant.config import StrumConfig
from strum.synth.designs import Design
from strum.synth.liberty import OSU018_LIBERTY

pytestmark = [
    pytest.mark.skipif(not OSU018_LIBERTY.is_file(), reason="needs qflow-tech-osu018"),
    pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (apt-get install iverilog)"),
]
CONFIG = StrumConfig(scheme="mip2q", block_size=4, high_lanes=2)
PERIOD = 20.0


@pytest.fixture(scope="module")
def pe(isolated_cache):
    netlist, info = mapped_netlist(Design(kind="pe", config=CONFIG))
    variant = check_variant(CONFIG, None)
    return netlist, pe_block_layout(CONFIG, variant), random_fields(CONFIG, variant, 120, seed=3)


@pytest.fixture(scope="module")
def library():
    return read_power_library(OSU018_LIBERTY)


def test_verilator_and_icarus_zero_delay_toggle_alike(pe, library):
    netlist, layout, fields = pe
    stimulus = pe_stimulus(netlist, layout, fields, 60)
    verilator = verilator_activity(netlist, library, stimulus, period=PERIOD)
    icarus = icarus_activity(netlist, library, stimulus, period=PERIOD, timed=False)
    clock = netlist.inputs["clk"]
    data_nets = np.setdiff1d(np.arange(2, netlist.nets), clock)      # not the constants
    assert verilator.toggles[data_nets].sum() > 1000
    np.testing.assert_array_equal(verilator.toggles[data_nets], icarus.toggles[data_nets])
    np.testing.assert_allclose(verilator.high_time[data_nets], icarus.high_time[data_nets], atol=0.01)
    timed = icarus_activity(netlist, library, stimulus, period=PERIOD, timed=True)
    # glitches: the timed run toggles more, never less, and costs more
    assert timed.toggles[data_nets].sum() > 1.2 * icarus.toggles[data_nets].sum()
    zero = estimate(netlist, icarus, library, period=PERIOD).total
    assert estimate(netlist, timed, library, period=PERIOD).total > zero


def test_constant_stream_costs_only_clock_and_leakage(pe, library):
    netlist, layout, fields = pe
    constant = {name: np.repeat(np.asarray(value)[:1], 50, axis=0) for name, value in fields.items()}
    constant["first"][:] = 1
    constant["last"][:] = 1
    stimulus = pe_stimulus(netlist, layout, constant, 40)
    result = estimate(netlist, verilator_activity(netlist, library, stimulus, period=PERIOD),
                      library, period=PERIOD)
    assert result.components["switching"] == 0 and result.components["internal"] == 0
    assert result.components["clock"] > 0 and result.components["leakage"] > 0


def test_twice_the_blocks_cost_twice_the_energy(pe, library):
    netlist, layout, fields = pe

    def energy(count):
        stimulus = pe_stimulus(netlist, layout, fields, count)     # the 120 blocks, cyclically
        return estimate(netlist, verilator_activity(netlist, library, stimulus, period=PERIOD),
                        library, period=PERIOD).total

    once, twice = energy(120), energy(240)
    assert twice / once == pytest.approx(2.0, rel=0.005)


def test_cli_pe_report(pe, tmp_path, capsys):
    report = tmp_path / "power.json"
    code = main(["power", "pe", "--scheme", "mip2q", "--block", "4", "--random", "--seed", "3",
                 "--blocks", "600", "--timed-blocks", "30", "--report", str(report)])
    assert code == 0
    data = json.loads(report.read_text())
    (design,) = data["designs"]
    assert design["design"] == "pe-mip2q-b4-h2-g4-static"
    timed, zero = design["timed"], design["zero_delay"]
    assert timed["pj_per_block"] > zero["pj_per_block"] > 0
    assert zero["pj_per_mac"] == pytest.approx(zero["pj_per_block"] / 4, rel=1e-3)
    assert set(zero["components_pj_per_block"]) == {"switching", "internal", "clock", "leakage"}
    assert sum(sum(p.values()) for p in zero["parts_pj_per_block"].values()) == \
        pytest.approx(zero["pj_per_block"], rel=1e-3)
    assert design["glitch_factor"]["all"] > 1 and "int8_lanes" in design["glitch_factor"]
    # settling: 250, 500, then 600 blocks at most
    assert [h["blocks"] for h in data["settle"]["history"]][:2] == [250, 500]
    assert data["settle"]["blocks"] in (500, 600) and data["tools"]["icarus"].startswith("Icarus")
    assert "pe-mip2q-b4-h2-g4-static" in capsys.readouterr().out


def test_cli_refuses_bad_data_options(capsys):
    assert main(["power", "pe", "--block", "4"]) == 2
    assert "give either --random or --model" in capsys.readouterr().err
    assert main(["power", "pe", "--random", "--model", "mnist", "--layer", "x"]) == 2
