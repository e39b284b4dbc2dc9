"""PE co-simulation on Verilator: 100k golden blocks per variant and scheme, bit-exact,
and the same blocks agree with Amaranth's simulator."""

import json

import numpy as np
import pytest

from strum.cli import main
from strum.hw.pe import StrumPE
from strum.quant.config import StrumConfig
from strum.sim.cosim import first_mismatch, run_pe, simulate_pe
from strum.sim.vectors import random_blocks

CASES = [("int8", "int8"), ("dliq", "static"), ("mip2q", "static"), ("zero", "static"),
         ("dliq", "dynamic"), ("mip2q", "dynamic"), ("zero", "dynamic")]


@pytest.mark.parametrize("scheme, variant", CASES)
def test_100k_blocks_on_verilator(scheme, variant):
    report = simulate_pe(StrumConfig(scheme=scheme), variant=variant, vectors=100_000, seed=7)
    assert report["vectors"] == 100_000 and report["results"] > 10_000
    assert report["mismatches"] == 0, report.get("first_mismatch")


@pytest.mark.parametrize("config", [StrumConfig(scheme="dliq", group_size=4),
                                    StrumConfig(scheme="mip2q", block_size=32, high_lanes=8, group_size=8),
                                    StrumConfig(scheme="dliq", block_size=4, high_lanes=2)])
def test_groups_and_block_sizes_with_backpressure(config):
    report = simulate_pe(config, vectors=20_000, seed=3, backpressure=True)
    assert report["mismatches"] == 0 and report["cycles"] > 20_000 * 1.2


def test_backends_agree_block_for_block():
    config = StrumConfig(scheme="dliq")
    blocks = random_blocks(config, 2000, 11)
    verilator, _ = run_pe(StrumPE(config=config), blocks, backend="verilator")
    amaranth, _ = run_pe(StrumPE(config=config), blocks, backend="amaranth")
    assert np.array_equal(verilator, amaranth) and np.array_equal(verilator, blocks.expected)


def test_a_wrong_result_is_reported_with_its_blocks():
    blocks = random_blocks(StrumConfig(), 50, 2)
    results = blocks.expected.copy()
    results[3] += 1
    bad = first_mismatch(blocks, results)
    assert bad["result"] == 3 and bad["got"] == bad["expected"] + 1
    ends = np.flatnonzero(blocks.last)
    assert [b["block"] for b in bad["blocks"]] == list(range(ends[2] + 1, ends[3] + 1))
    assert first_mismatch(blocks, blocks.expected) is None


def test_cli_simulate_pe(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["simulate", "pe", "--scheme", "mip2q", "--vectors", "3000", "--seed", "5",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert {"backend", "config", "vectors", "mismatches", "cycles", "seconds"} <= set(data)
    assert data["vectors"] == 3000 and data["mismatches"] == 0 and data["config"]["scheme"] == "mip2q"
    vcd = tmp_path / "pe.vcd"
    assert main(["simulate", "pe", "--vectors", "20", "--backend", "amaranth", "--vcd", str(vcd)]) == 0
    assert vcd.read_text().startswith("$")


@pytest.mark.parametrize("scheme, variant", CASES)
def test_generated_pe_is_lint_clean(scheme, variant):
    from strum.hw.export import to_verilog
    from strum.sim.verilator_backend import lint

    pe = StrumPE(config=StrumConfig(scheme=scheme), variant=variant)
    assert lint(to_verilog(pe, "strum_pe"), "strum_pe") == []


def test_generated_dpu_is_lint_clean():
    from strum.hw.dpu import StrumDPU
    from strum.hw.export import to_verilog
    from strum.sim.verilator_backend import lint

    dpu = StrumDPU(config=StrumConfig(scheme="mip2q", block_size=8, high_lanes=4), rows=2, cols=3)
    assert lint(to_verilog(dpu, "strum_dpu"), "strum_dpu") == []


def test_100k_blocks_with_router_register():
    config = StrumConfig(scheme="mip2q", group_size=8)
    pe = StrumPE(config=config, router_register=True)
    report = simulate_pe(config, vectors=100_000, seed=9, pe=pe)
    assert report["vectors"] == 100_000 and report["mismatches"] == 0, report.get("first_mismatch")
