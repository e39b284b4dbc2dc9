"""``strum flow``'s power step on a small PE (B = 4), alone (test_flow.py skips it)."""

import json
import shutil

import pytest

from strum.cli import main
from strum.synth.liberty import OSU018_LIBERTY

pytestmark = [
    pytest.mark.skipif(not OSU018_LIBERTY.is_file(), reason="needs qflow-tech-osu018"),
    pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (apt-get install iverilog)"),
]


def test_flow_power_step_reports_energy_beside_int8(tmp_path, capsys):
    code = main(["flow", "-o", str(tmp_path), "--scheme", "mip2q", "--block", "4",
                 "--skip", "accuracy,pe,layer,area"])
    assert code == 0
    summary = json.loads((tmp_path / "flow.json").read_text())
    assert set(summary["steps"]) == {"quantize", "power"}
    power = summary["steps"]["power"]
    assert power["input"] == "real" and power["blocks"] == 200 and power["timed_blocks"] == 100
    for kind in ("zero_delay", "timed"):
        assert power["pe"][kind] > 0 and power["int8"][kind] > 0
        assert power["reduction_pct"][kind] == pytest.approx(
            100 * (1 - power["pe"][kind] / power["int8"][kind]), abs=0.02)
    report = json.loads((tmp_path / "power.json").read_text())
    assert [d["design"] for d in report["designs"]] == ["pe-int8-b4-h4-g4-int8", "pe-mip2q-b4-h2-g4-static"]
    assert report["data"]["layer"] == power["layer"] and report["data"]["data"] == "digits"
    out = capsys.readouterr().out
    assert "energy    zero delay" in out and "energy    timed" in out


def test_flow_refuses_an_unknown_step(tmp_path, capsys):
    assert main(["flow", "-o", str(tmp_path / "out"), "--skip", "power,areas"]) == 2
    assert "--skip" in capsys.readouterr().err and not (tmp_path / "out").exists()
