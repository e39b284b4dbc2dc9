"""Real pretrained weights (silero-vad 6.2.3): the SQNR StruM promises over int4."""

import numpy as np
import pytest

from strum.quant.config import StrumConfig
from strum.quant.fetch import silero_vad_onnx
from strum.quant.model import quantize_layers
from strum.quant.onnx_io import load_layers
from strum.quant.quantize import sqnr_db


@pytest.fixture(scope="module")
def silero_layers():
    return load_layers(silero_vad_onnx())


def _pooled_sqnr(layers, scheme):
    quantized = quantize_layers(layers, StrumConfig(scheme=scheme, high_lanes=8, acc_width=48))
    reference = np.concatenate([q.weight.ravel() for q in quantized])
    approximation = np.concatenate([q.quantized.dequantize().ravel() for q in quantized])
    return sqnr_db(reference, approximation), [q.sqnr_db for q in quantized]


def test_dliq_and_mip2q_beat_int4_on_silero_vad(silero_layers):
    assert len(silero_layers) == 12
    dliq, dliq_layers = _pooled_sqnr(silero_layers, "dliq")
    mip2q, mip2q_layers = _pooled_sqnr(silero_layers, "mip2q")
    int4, int4_layers = _pooled_sqnr(silero_layers, "int4")
    int8, _ = _pooled_sqnr(silero_layers, "int8")
    assert dliq >= int4 + 10, (dliq, int4)
    assert mip2q > int4
    # Every trained layer too; the two STFT layers hold a fixed Fourier basis, on which
    # a power-of-two grid is no better than int4.
    trained = [i for i, layer in enumerate(silero_layers) if "stft" not in layer.name]
    assert len(trained) == 10
    assert all(mip2q_layers[i] > int4_layers[i] for i in trained)
    assert all(d > i for d, i in zip(dliq_layers, int4_layers))
    assert int8 > dliq > mip2q
