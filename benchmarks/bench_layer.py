"""Layer co-simulation speed: a real 3x3 conv (MNIST CNN, 3.6M MACs, real input) on a
4 x 4 DPU, simulated MACs per second on Verilator and on Amaranth's simulator.

Run: ``python benchmarks/bench_layer.py [--amaranth-tiles 4]``. Verilator runs the
whole layer (its build or cache load is timed separately); Amaranth's simulator runs
the first few tiles of the same schedule. Both are checked against the golden model.
"""

import argparse
import time

import numpy as np

from strum.hw.dpu import StrumDPU
from strum.quant.config import StrumConfig
from strum.quant.datasets import mnist_model_path
from strum.quant.evaluate import load_data
from strum.quant.inference import trace_layers
from strum.quant.onnx_io import load_layers
from strum.sim.layer import Schedule, prepare_layer, run_dpu, schedule

LAYER = "/features/features.3/Conv"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amaranth-tiles", type=int, default=4)
    args = parser.parse_args()
    config = StrumConfig()
    data = load_data("mnist")
    traces = {t.name: t for t in trace_layers(mnist_model_path(), config, data.images[:1], data.calibration)}
    layer = next(layer for layer in load_layers(mnist_model_path()) if layer.name == LAYER)
    job = prepare_layer(layer, config, traces[LAYER].x_int8)
    plan = schedule(job, 4, 4)
    nb = job.blocks_per_output
    print(f"{LAYER}: {job.macs / 1e6:.2f}M MACs, {plan.tiles} tiles of {nb} steps on 4 x 4")

    start = time.perf_counter()
    run_dpu(StrumDPU(config=config, rows=4, cols=4), _first(plan, 1, nb), nb)
    print(f"verilator build or cache load: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    tiles, cycles = run_dpu(StrumDPU(config=config, rows=4, cols=4), plan, nb)
    seconds = time.perf_counter() - start
    assert np.array_equal(plan.scatter(job, tiles), job.expected), "verilator: mismatch"
    verilator = job.macs / seconds
    print(f"verilator  {cycles:7d} cycles {seconds:7.2f} s {verilator / 1e6:9.2f}M MACs/s")

    part = _first(plan, args.amaranth_tiles, nb)
    start = time.perf_counter()
    tiles, cycles = run_dpu(StrumDPU(config=config, rows=4, cols=4), part, nb, backend="amaranth")
    seconds = time.perf_counter() - start
    real = (part.channel[:, :, None] >= 0) & (part.position[:, None, :] >= 0)
    macs = int(real.sum()) * job.macs // job.expected.size
    expected = job.expected[np.broadcast_to(part.channel[:, :, None], tiles.shape)[real],
                            np.broadcast_to(part.position[:, None, :], tiles.shape)[real]]
    assert np.array_equal(tiles[real], expected), "amaranth: mismatch"
    amaranth = macs / seconds
    print(f"amaranth   {cycles:7d} cycles {seconds:7.2f} s {amaranth / 1e6:9.4f}M MACs/s "
          f"({args.amaranth_tiles} tiles)")
    print(f"verilator / amaranth: {verilator / amaranth:.0f}x")


def _first(plan: Schedule, tiles: int, nb: int) -> Schedule:
    """The first ``tiles`` tiles of a schedule."""
    payload = {name: value[:tiles * nb] for name, value in plan.payload.items()}
    return Schedule(payload=payload, channel=plan.channel[:tiles], position=plan.position[:tiles])


if __name__ == "__main__":
    main()
