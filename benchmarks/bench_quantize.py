"""Quantizer throughput: every scheme on one 20M-weight tensor, against the int8 pass.

Run: ``python benchmarks/bench_quantize.py [--weights N] [--repeat R]``. Prints weights
per second for each scheme and its time ratio to the plain int8 pass measured in the
same run (best of R runs each). NumPy's elementwise work is single-threaded; BLAS
threads are pinned to one so the figure is one core's.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from strum.quant.config import SCHEMES, StrumConfig  # noqa: E402
from strum.quant.quantize import quantize  # noqa: E402


def best_time(weights, config, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        quantize(weights, config)
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=int, default=20_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # A conv-like tensor [K, C, 3, 3] with heavy-tailed weights.
    channels = 512
    inputs = max(1, args.weights // (channels * 9))
    weights = np.random.default_rng(0).standard_t(4, size=(channels, inputs, 3, 3)).astype(np.float32)
    count = weights.size
    quantize(weights, StrumConfig(scheme="int8", acc_width=48))     # warm the allocator up
    base = best_time(weights, StrumConfig(scheme="int8", acc_width=48), args.repeat)
    print(f"tensor {weights.shape} = {count / 1e6:.1f}M weights, best of {args.repeat}")
    print(f"{'scheme':10s} {'seconds':>8s} {'Mweights/s':>11s} {'x int8 time':>12s}")
    for scheme in SCHEMES:
        seconds = base if scheme == "int8" else best_time(weights, StrumConfig(scheme=scheme, acc_width=48), args.repeat)
        print(f"{scheme:10s} {seconds:8.3f} {count / seconds / 1e6:11.1f} {seconds / base:12.2f}")


if __name__ == "__main__":
    main()
