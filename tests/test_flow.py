"""strum flow: the whole pipeline on the embedded default model."""

import json

from strum.cli import main


def test_flow_runs_every_step_bit_exact(tmp_path, capsys):
    assert main(["flow", "-o", str(tmp_path), "--skip", "power"]) == 0   # power: test_power_flow.py
    summary = json.loads((tmp_path / "flow.json").read_text())
    steps = summary["steps"]
    assert set(steps) == {"quantize", "accuracy", "pe", "layer", "area"}
    assert steps["quantize"]["dliq"]["weight_sqnr_db"] > steps["quantize"]["int4"]["weight_sqnr_db"] + 10
    assert steps["pe"]["mismatches"] == 0 and steps["pe"]["vectors"] == 20_000
    assert steps["layer"]["mismatches"] == 0 and steps["layer"]["input"] == "real"
    assert steps["layer"]["array"] == "4x4" and steps["layer"]["outputs"] > 0
    assert steps["area"]["generic"]["transistors"]["reduction_pct"] > 0
    for name in ("weights.npz", "quantize.json", "accuracy.json", "simulate_pe.json",
                 "simulate_layer.json", "area_generic.json", "pe/strum_pe.v", "pe/interface.json"):
        assert (tmp_path / name).exists(), name
    out = capsys.readouterr().out
    assert "0 mismatches" in out and "accuracy" in out
