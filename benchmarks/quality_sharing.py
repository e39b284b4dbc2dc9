"""Quality of the routing-sharing options: weight SQNR and accuracy against mask_share K
and fixed high lanes (input-channel permutation), B = 16, H = 8.

For each scheme (dliq, mip2q) and G: K = 1, 2, 4 (and 8 = an 8-row DPU's R), and fixed
lanes. Weight SQNR is pooled over every weight of the packaged MNIST CNN and of
silero-vad; top-1 and output SQNR are integer inference on digits and MNIST (the same
engine as ``strum eval``). Prints Markdown::

    python benchmarks/quality_sharing.py --markdown quality.md --json quality.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from strum.quant.config import StrumConfig
from strum.quant.evaluate import load_data
from strum.quant.files import write_text
from strum.quant.fixed import plan_fixed, quantize_fixed
from strum.quant.inference import Network
from strum.quant.quantize import quantize, sqnr_db


def _pooled_sqnr(layers, quantized) -> float:
    ref = np.concatenate([np.asarray(l.weight, np.float64).ravel() for l in layers])
    approx = np.concatenate([quantized[l.name].dequantize().ravel() for l in layers])
    return sqnr_db(ref, approx)


def _quantize_all(layers, config, fixed: bool):
    if fixed:
        return {l.name: quantize_fixed(l.weight, config, name=l.name) for l in layers}
    return {l.name: quantize(l.weight, config, name=l.name) for l in layers}


def _bits(layers, quantized) -> float:
    sizes = np.array([l.weight.size for l in layers], float)
    return float(np.dot([quantized[l.name].bits_per_weight for l in layers], sizes) / sizes.sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schemes", default="dliq,mip2q")
    parser.add_argument("--groups", default="16,4")
    parser.add_argument("--shares", default="1,2,4,8")
    parser.add_argument("--models", default="mnist,silero", help="weight SQNR on these")
    parser.add_argument("--data", default="digits,mnist", help="accuracy on these")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from strum.synth.sweep import model_layers

    start = time.perf_counter()
    layers = {m: model_layers(m) for m in args.models.split(",") if m}
    nets = {}
    for name in filter(None, args.data.split(",")):
        data = load_data(name)
        from strum.quant.datasets import default_model_path, mnist_model_path
        network = Network(mnist_model_path() if name == "mnist" else default_model_path())
        nets[name] = (network, data, network.calibrate(data.calibration),
                      network.run_onnxruntime(data.images))
    points = [("int8", 16, 1, False)]
    for scheme in args.schemes.split(","):
        for G in map(int, args.groups.split(",")):
            points += [(scheme, G, int(K), False) for K in args.shares.split(",")]
            points.append((scheme, G, 1, True))
    rows = []
    for scheme, G, K, fixed in points:
        high = 16 if scheme == "int8" else 8
        config = StrumConfig(scheme=scheme, block_size=16, high_lanes=high, group_size=G, mask_share=K)
        row = {"scheme": scheme, "G": "" if scheme == "int8" or fixed else G,
               "K": "fixed" if fixed else ("" if scheme == "int8" else K)}
        for model, model_layers_ in layers.items():
            q = _quantize_all(model_layers_, config, fixed)
            row[f"weight SQNR {model} dB"] = round(_pooled_sqnr(model_layers_, q), 2)
            row[f"bits/w {model}"] = round(_bits(model_layers_, q), 3)
        for name, (network, data, scales, reference) in nets.items():
            q = _quantize_all(network.layers, config, fixed)
            logits = network.run_integer(data.images, q, scales, config)
            row[f"{name} top-1 %"] = round(100 * float(np.mean(logits.argmax(-1) == data.labels)), 2)
            row[f"{name} output SQNR dB"] = round(sqnr_db(reference, logits), 2)
        if fixed:
            row["permuted layers"] = ", ".join(
                f"{m}: {sum(plan_fixed(l.weight, config).permuted for l in ls)}/{len(ls)}"
                for m, ls in layers.items())
        rows.append(row)
        print(row, file=sys.stderr)
    from strum.synth.reports import rows_markdown
    columns = list(dict.fromkeys(k for r in rows for k in r))
    text = (f"Weight SQNR and accuracy against mask sharing (K output channels per mask) and "
            f"fixed high lanes, B = 16, H = 8 ({time.perf_counter() - start:.0f} s)\n\n"
            + rows_markdown(rows, columns))
    print(text)
    if args.markdown:
        write_text(args.markdown, text)
    if args.json:
        write_text(args.json, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
