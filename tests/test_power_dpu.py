"""``strum power dpu``: the smallest array (1 x 1, B = 4: one PE with the DPU's skew and
output logic, so its netlist builds in seconds) on a real layer's step stream."""

import json
import shutil

import pytest

from strum.cli import main
from strum.synth.liberty import OSU018_LIBERTY

pytestmark = [
    pytest.mark.skipif(not OSU018_LIBERTY.is_file(), reason="needs qflow-tech-osu018"),
    pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (apt-get install iverilog)"),
]


def test_power_dpu_on_real_steps(tmp_path, capsys):
    report = tmp_path / "dpu.json"
    code = main(["power", "dpu", "--rows", "1", "--cols", "1", "--scheme", "mip2q", "--block", "4",
                 "--model", "digits", "--layer", "/conv4/Conv", "--data", "digits", "--batch", "1",
                 "--blocks", "30", "--timed-blocks", "10", "--zero-delay-engine", "icarus",
                 "--report", str(report)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(report.read_text())
    (design,) = data["designs"]
    assert design["design"] == "dpu-1x1-mip2q-b4-h2-g4-static"
    assert (design["kind"], design["rows"], design["cols"]) == ("dpu", 1, 1)
    for kind in ("zero_delay", "timed"):
        figures = design[kind]
        assert figures["pj_per_block"] > 0          # per step: 1 block, 4 MACs
        assert figures["pj_per_mac"] == pytest.approx(figures["pj_per_block"] / 4, rel=1e-3)
        assert sum(sum(p.values()) for p in figures["parts_pj_per_block"].values()) == \
            pytest.approx(figures["pj_per_block"], rel=1e-3)
    assert {"router", "int8_lanes", "low_lanes"} <= set(design["zero_delay"]["parts_pj_per_block"])
    assert design["glitch_factor"]["all"] >= 1
    assert "vvp" in json.dumps(design["zero_delay_simulator"])
    assert "one step of the array" in capsys.readouterr().out


def test_power_dpu_refuses_pe_only_options(capsys):
    assert main(["power", "dpu", "--rows", "1", "--cols", "2", "--block", "4", "--random",
                 "--isolate-zero"]) == 2
    assert "--isolate-zero" in capsys.readouterr().err
