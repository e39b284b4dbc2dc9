"""``strum sweep --power``: energy columns and the energy / accuracy front on a tiny grid."""

import csv
import shutil

import pytest

from strum.cli import main
from strum.power.sweep import POWER_FIELDS
from strum.synth.liberty import OSU018_LIBERTY

pytestmark = [
    pytest.mark.skipif(not OSU018_LIBERTY.is_file(), reason="needs qflow-tech-osu018"),
    pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs iverilog (apt-get install iverilog)"),
]


def test_sweep_power_columns_and_front(tmp_path, capsys):
    table, plot = tmp_path / "sweep.csv", tmp_path / "energy.png"
    code = main(["sweep", "--scheme", "mip2q", "--group", "2,4", "--block", "4", "--flow", "generic",
                 "--model", "mnist", "--workers", "1", "--no-progress", "--csv", str(table),
                 "--power", "--power-blocks", "40", "--power-timed-blocks", "20",
                 "--power-plot", str(plot)])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert set(POWER_FIELDS) <= set(rows[0])
    assert sorted(row["scheme"] for row in rows) == ["int8", "mip2q", "mip2q"]
    for row in rows:
        assert float(row["energy_zero_delay_pj"]) > 0 and float(row["energy_timed_pj"]) > 0
        assert float(row["energy_glitch_factor"]) >= 1
        assert row["energy_blocks"] == "40" and row["energy_timed_blocks"] == "20"
        if row["scheme"] == "int8":
            assert float(row["energy_zero_delay_reduction_pct"]) == 0
            assert float(row["energy_timed_reduction_pct"]) == 0
        else:       # zero delay: smaller than the int8 PE on random data (18 % measured, B = 4)
            assert float(row["energy_zero_delay_reduction_pct"]) > 5
    assert plot.stat().st_size > 1000
    assert "pJ/block zero delay" in capsys.readouterr().out


def test_sweep_power_options_are_checked(tmp_path, capsys):
    table = tmp_path / "sweep.csv"
    assert main(["sweep", "--block", "4", "--model", "none", "--csv", str(table),
                 "--power-plot", str(tmp_path / "e.png")]) == 2
    assert "need --power" in capsys.readouterr().err
    assert main(["sweep", "--block", "4", "--model", "none", "--csv", str(table), "--power",
                 "--power-model", "mnist"]) == 2
    assert "--power-model and --power-layer go together" in capsys.readouterr().err
    assert not table.exists()
