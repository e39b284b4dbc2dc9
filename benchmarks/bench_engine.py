"""Which engine runs the non-MAC operators: onnxruntime (our rewrite) or onnx's ReferenceEvaluator.

Both keep the MAC arithmetic ours (exact integers); they differ in who runs the rest.
For the ReferenceEvaluator (timing only: its outputs are not compared, BatchNormalization
is not folded and Gemm/MatMul stay float, which if anything flatters it), Conv is overridden with the golden integer convolution
(:func:`strum.quant.reference.conv` on int8 activations and int8 weights) as the
integer engine would; every other operator is the evaluator's own. onnxruntime runs
the model rewritten by :mod:`strum.quant.integer_graph` (int8 scheme, the same
calibration). Prints seconds per image and the ratio.

    python benchmarks/bench_engine.py [MODEL.onnx ...]
"""

import sys
import time

import numpy as np

from strum.quant import datasets
from strum.quant.activation import quantize_activations
from strum.quant.config import StrumConfig
from strum.quant.inference import Network


def _inputs(network, count, seed=0):
    shape = [d if d is not None else s for d, s in zip(network.input_shape, (count, 3, 96, 192))]
    shape[0] = count
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def reference_evaluator(network, quantized, scales, config):
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops.op_conv import Conv as _Conv

    from strum.quant.reference import conv

    by_weight = {}
    for layer in network.layers:
        if layer.op == "Conv":
            by_weight[layer.input, layer.weight.shape] = (layer, quantized[layer.name])

    class Conv(_Conv):
        def _run(self, x, w, b=None, **attrs):
            layer, q = by_weight[self.input[0], w.shape]
            s = scales[layer.input]
            x8 = quantize_activations(x, s, config.rounding)
            acc = conv(x8, q.w_int, 32, stride=layer.attrs["strides"], padding=layer.attrs["pads"],
                       dilation=layer.attrs["dilations"], groups=layer.attrs["group"])
            y = acc * (s * q.scale.astype(np.float64)).reshape(-1, *(1,) * (acc.ndim - 2))
            return ((y + (0 if b is None else b.reshape(-1, *(1,) * (acc.ndim - 2)))).astype(np.float32),)

    return ReferenceEvaluator(network._proto, new_ops=[Conv])


def main(paths):
    config = StrumConfig(scheme="int8")
    for path in paths:
        network = Network(path)
        x = datasets.digits_test()[0][:64] if "digits" in str(path) else _inputs(network, 8)
        scales, quantized = network.calibrate(x), network.quantize(config)
        start = time.perf_counter()
        network.run_integer(x, quantized, scales, config)
        t_ort = time.perf_counter() - start
        try:
            evaluator = reference_evaluator(network, quantized, scales, config)
            start = time.perf_counter()
            evaluator.run(None, {network.input_name: x})
            t_ref = time.perf_counter() - start
            note = f"ReferenceEvaluator {t_ref / len(x) * 1e3:8.1f} ms/input, {t_ref / t_ort:6.1f}x slower"
        except Exception as error:  # report, do not hide, what the evaluator cannot run
            note = f"ReferenceEvaluator failed: {type(error).__name__}: {str(error)[:80]}"
        print(f"{network.path.name}: onnxruntime {t_ort / len(x) * 1e3:7.2f} ms/input; {note}")


if __name__ == "__main__":
    main(sys.argv[1:] or [datasets.default_model_path(), datasets.mnist_model_path()])
