"""Speed of strum eval on real networks: 100 inputs, 3 schemes, against float onnxruntime.

Target (issue 13): eval of a ~3M-weight detector on 100 inputs and 3 schemes in under 2
minutes on the 2-core development machine. The networks are PaddleOCR's text detector
(DBNet, 1.16M weights, with ConvTranspose) and, as the closest in size to 3M, its text
recogniser (2.67M weights), from the pinned rapidocr wheel (strum.quant.fetch). Inputs are
synthetic printed text (tests/text_images.py), the detector's pages 160 x 160 (PaddleOCR
would resize real pages larger). The ratio is the eval's time over one float onnxruntime
pass over the same inputs, measured in the same run.

    python benchmarks/bench_eval.py [--inputs 100]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from text_images import text_lines, text_pages  # noqa: E402

from strum.quant.evaluate import evaluate  # noqa: E402
from strum.quant.fetch import rapidocr_onnx  # noqa: E402
from strum.quant.inference import Network  # noqa: E402

SCHEMES = ("int8", "dliq:h8", "mip2q:h8")
TARGET_SECONDS = 120


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inputs", type=int, default=100)
    args = parser.parse_args()
    cases = (("det", lambda n, seed: text_pages(n, seed=seed, height=160, width=160)),
             ("rec", lambda n, seed: text_lines(n, seed=seed, width=320)[0]))
    for name, make in cases:
        network = Network(rapidocr_onnx(name))
        weights = sum(layer.weight.size for layer in network.layers)
        x, calibration = make(args.inputs, 1), make(32, 2)
        start = time.perf_counter()
        network.run(x)
        float_seconds = time.perf_counter() - start
        start = time.perf_counter()
        report = evaluate(network, x, None, calibration, SCHEMES, weights_only=False)
        seconds = time.perf_counter() - start
        verdict = "met" if seconds < TARGET_SECONDS else "NOT met"
        print(f"{name}: {weights / 1e6:.2f}M weights, {len(network.layers)} layers, "
              f"{args.inputs} inputs {list(x.shape[1:])}, schemes {', '.join(SCHEMES)}: "
              f"eval {seconds:.1f} s (target {TARGET_SECONDS} s: {verdict}); float onnxruntime "
              f"{float_seconds:.2f} s; ratio {seconds / float_seconds:.1f}x "
              f"(= {seconds / float_seconds / len(SCHEMES):.1f}x per scheme, calibration included)")
        for label, row in report["schemes"].items():
            print(f"    {label}: output SQNR {row['output_sqnr_db']:.1f} dB, agreement "
                  f"{row['top1_agreement']:.3f}, bits/weight {row['bits_per_weight']:.3f}, "
                  f"{row['seconds']:.1f} s")


if __name__ == "__main__":
    main()
