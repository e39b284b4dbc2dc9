"""Weight SQNR of every scheme on a model, as a Markdown table.

Run: ``python scripts/weight_sqnr_table.py [MODEL]`` (default: silero-vad 6.2.3's
``silero_vad.onnx``, fetched with pip). "pooled" is the SQNR over all of the model's
quantized weights together; min and max are over its layers.
"""

import sys

import numpy as np

from strum.quant.config import SCHEMES, StrumConfig
from strum.quant.fetch import silero_vad_onnx
from strum.quant.model import quantize_layers
from strum.quant.onnx_io import load_layers
from strum.quant.quantize import sqnr_db


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else silero_vad_onnx()
    layers = load_layers(model)
    count = sum(layer.weight.size for layer in layers)
    print(f"{len(layers)} layers, {count} weights\n")
    print("| scheme | pooled SQNR dB | layer min | layer max | bits/weight |")
    print("|---|---|---|---|---|")
    for scheme in SCHEMES:
        # The widest accumulator: the table is about the weights, not overflow.
        quantized = quantize_layers(layers, StrumConfig(scheme=scheme, acc_width=48))
        pooled = sqnr_db(np.concatenate([q.weight.ravel() for q in quantized]),
                         np.concatenate([q.quantized.dequantize().ravel() for q in quantized]))
        per_layer = [q.sqnr_db for q in quantized]
        bits = sum(q.quantized.bits_per_weight * q.weight.size for q in quantized) / count
        print(f"| {scheme} | {pooled:.1f} | {min(per_layer):.1f} | {max(per_layer):.1f} | {bits:.2f} |")


if __name__ == "__main__":
    main()
