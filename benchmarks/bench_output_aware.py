"""Output-aware quantization speed: a 1.18M-weight 3x3 conv layer on one core.

Run: ``python benchmarks/bench_output_aware.py [--inputs C] [--outputs K] [--rows R]``.
The layer is ``[K, C, 3, 3]`` (default 512 x 256 x 3 x 3, a ResNet stage-4 shape, N =
2,304 weights per output channel) with heavy-tailed weights; the Hessian comes from R
rows of correlated int8 activations with an offset. Prints the seconds of the Hessian
(not counted in the target), of the output-aware quantizer (the target: under 30 s) and
of the plain quantizer in the same run, their ratio, and the output SQNR of both on the
calibration rows. BLAS is pinned to one thread.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from strum.quant.blocks import to_reduction  # noqa: E402
from strum.quant.config import StrumConfig  # noqa: E402
from strum.quant.output_aware import quantize_output_aware  # noqa: E402
from strum.quant.quantize import quantize, sqnr_db  # noqa: E402

TARGET_SECONDS = 30.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--outputs", type=int, default=512)
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--scheme", default="dliq")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    weights = rng.standard_t(4, size=(args.outputs, args.inputs, 3, 3))
    length = args.inputs * 9
    mixing = np.eye(length) + rng.standard_normal((length, length)) * (0.5 / np.sqrt(length))
    rows = np.clip(np.round(rng.standard_normal((args.rows, length)) @ mixing * 25 + 10), -128, 127)
    config = StrumConfig(scheme=args.scheme)

    start = time.perf_counter()
    hessian = rows.T @ rows
    hessian_seconds = time.perf_counter() - start
    start = time.perf_counter()
    plain = quantize(weights, config)
    plain_seconds = time.perf_counter() - start
    start = time.perf_counter()
    aware = quantize_output_aware(weights, config, hessian)
    aware_seconds = time.perf_counter() - start

    reference = rows @ to_reduction(weights).T
    sqnr = {name: sqnr_db(reference, rows @ to_reduction(q.dequantize()).T)
            for name, q in (("plain", plain), ("output-aware", aware))}
    print(f"layer {weights.shape} = {weights.size / 1e6:.2f}M weights, {args.scheme} B=16 H=8, "
          f"Hessian from {args.rows} rows")
    print(f"Hessian X^T X            {hessian_seconds:7.2f} s (not counted)")
    print(f"plain quantizer          {plain_seconds:7.2f} s   output SQNR {sqnr['plain']:.2f} dB")
    print(f"output-aware quantizer   {aware_seconds:7.2f} s   output SQNR {sqnr['output-aware']:.2f} dB")
    print(f"ratio output-aware / plain: {aware_seconds / plain_seconds:.0f}x; "
          f"target {TARGET_SECONDS:.0f} s: {'met' if aware_seconds < TARGET_SECONDS else 'NOT met'}")


if __name__ == "__main__":
    main()
