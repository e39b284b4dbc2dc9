"""Sweeps: the grid, a local-process and a Dask run, the CSV and the area / accuracy plot."""

import csv

import pytest

from strum.quant.config import StrumConfig
from strum.synth.designs import Design
from strum.synth.sweep import ROW_FIELDS, grid, model_layers, plot_front, run_sweep, weight_sqnr, write_csv


# Each module synthesizes into a fresh cache (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def layers():
    return model_layers("digits")


def test_grid_skips_invalid_points_with_their_reason():
    designs, skipped = grid(schemes=("dliq", "int8"), blocks=(4, 8), groups=(None, 2, 8),
                            variants=(None, "dynamic"))
    names = [d.name for d in designs]
    assert "pe-dliq-b4-h2-g2-dynamic" in names and "pe-dliq-b8-h4-g8-static" in names
    assert names.count("pe-int8-b4-h4-g4-int8") == 1          # int8 ignores G, once
    assert any("G=8" in note and "group_size must divide block_size=4" in note for note in skipped)
    assert any("variant 'dynamic' does not run scheme 'int8'" in note for note in skipped)
    dpus, _ = grid(arrays=((1, 1), (2, 2)))
    assert [d.kind for d in dpus] == ["pe", "dpu"] and dpus[1].rows == 2


def test_weight_sqnr_orders_the_schemes(layers):
    int8, bits8 = weight_sqnr(layers, StrumConfig(scheme="int8", high_lanes=16))
    dliq, bits_dliq = weight_sqnr(layers, StrumConfig(scheme="dliq"))
    int4, _ = weight_sqnr(layers, StrumConfig(scheme="int4"))
    assert int8 > dliq > int4 > 5 and bits8 == 8 and 6 < bits_dliq < 8


def _sweep_designs():
    return [Design(config=StrumConfig(scheme=s, block_size=4, high_lanes=2)) for s in ("dliq", "mip2q")]


def test_local_sweep_rows_csv_and_plot(tmp_path, layers):
    result = run_sweep(_sweep_designs(), "generic", layers=layers, workers=2, progress=False)
    rows = result["rows"]
    assert [r["scheme"] for r in rows] == ["int8", "dliq", "mip2q"]
    int8, dliq, mip2q = rows
    assert int8["reduction_pct"] == 0 and dliq["int8_metric"] == int8["transistors"]
    assert dliq["reduction_pct"] > 0 and mip2q["reduction_pct"] > dliq["reduction_pct"]
    assert int8["weight_sqnr_db"] > dliq["weight_sqnr_db"] > mip2q["weight_sqnr_db"]
    assert result["int4_sqnr_db"] < mip2q["weight_sqnr_db"]
    write_csv(tmp_path / "sweep.csv", result)
    with open(tmp_path / "sweep.csv") as stream:
        table = list(csv.DictReader(stream))
    assert list(table[0]) == list(ROW_FIELDS) and len(table) == 3
    assert table[1]["scheme"] == "dliq" and float(table[1]["transistors"]) == dliq["transistors"]
    plot_front(tmp_path / "front.png", result, model="digits")
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_sweep(_sweep_designs(), "generic", layers=None, workers=1, progress=False)
    assert all(row["cached"] for row in again["rows"])                # the second sweep is instant
    assert [r["transistors"] for r in again["rows"]] == [r["transistors"] for r in rows]
    with pytest.raises(ValueError, match="no rows with both a reduction and a weight SQNR"):
        plot_front(tmp_path / "none.png", again)


def test_dask_local_cluster_runs_the_same_code(layers):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        result = run_sweep(_sweep_designs()[:1], "generic", layers=layers,
                           executor=client.get_executor(), progress=False, cache=False)
    local = run_sweep(_sweep_designs()[:1], "generic", layers=layers, workers=1, progress=False)
    strip = ("cached", "seconds")
    assert [{k: v for k, v in r.items() if k not in strip} for r in result["rows"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in local["rows"]]
