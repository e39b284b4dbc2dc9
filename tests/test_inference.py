"""Inference engine: float equals onnxruntime, integer mode equals the golden reference."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from strum.quant import datasets, reference
from strum.quant.activation import activation_scale, quantize_activations
from strum.quant.config import StrumConfig
from strum.quant.errors import InputError
from strum.quant.integer_graph import accumulator_bound
from strum.quant.inference import EngineError, Network, layer_reference, trace_layers
from strum.quant.onnx_io import load_layers
from strum.quant.quantize import sqnr_db

FLOAT = TensorProto.FLOAT


def rand(seed, *shape, scale=0.3):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def value(name, shape=None):
    return helper.make_tensor_value_info(name, FLOAT, shape)


def save(path, nodes, initializers, input_shape=("N", 3, 9, 9), output_shape=("N", 10)):
    graph = helper.make_graph(nodes, "g", [value("x", list(input_shape))],
                              [value("out", list(output_shape))],
                              [numpy_helper.from_array(np.asarray(a), n) for n, a in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def many_ops(tmp_path_factory):
    """A small CNN using every supported operator family, with odd shapes on purpose."""
    n = helper.make_node
    bn_var = np.abs(rand(5, 8)) + 0.5
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-3),
        n("Relu", ["bn"], ["r1"]),
        n("Conv", ["r1", "w2"], ["c2"], name="depthwise", group=8, strides=[2, 2],
          pads=[1, 1, 1, 1]),
        n("LeakyRelu", ["c2"], ["l2"], alpha=0.1),
        n("Conv", ["l2", "w3", "b3"], ["c3"], name="dilated", dilations=[2, 2], pads=[2, 2, 2, 2]),
        n("Add", ["l2", "c3"], ["s"]),
        n("Clip", ["s", "zero", "six"], ["cl"]),
        n("MaxPool", ["cl"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        n("Shape", ["mp"], ["shape"]),
        n("Gather", ["shape", "zero_index"], ["batch"], axis=0),
        n("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        n("Concat", ["batch1", "minus_one"], ["flat_shape"], axis=0),
        n("Reshape", ["mp", "flat_shape"], ["flat"]),
        n("Gemm", ["flat", "w4", "b4"], ["g"], name="fc1", alpha=0.5, beta=2.0),
        n("Dropout", ["g"], ["gd"]),
        n("Sigmoid", ["gd"], ["gs"]),
        n("Transpose", ["gs"], ["gt"], perm=[1, 0]),
        n("MatMul", ["w5", "gt"], ["m_t"], name="left_matmul"),
        n("Transpose", ["m_t"], ["m"], perm=[1, 0]),
        n("AveragePool", ["cl"], ["ap"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
          count_include_pad=0),
        n("AveragePool", ["cl"], ["ap2"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1,
          count_include_pad=1),
        n("Add", ["ap", "ap2"], ["aps"]),
        n("GlobalAveragePool", ["aps"], ["gap"]),
        n("GlobalMaxPool", ["cl"], ["gmp"]),
        n("Sub", ["gap", "gmp"], ["gd2"]),
        n("Squeeze", ["gd2", "axes23"], ["pooled"]),
        n("Identity", ["pooled"], ["pooled_i"]),
        n("MatMul", ["pooled_i", "w6"], ["m2"], name="right_matmul"),
        n("Add", ["m", "m2"], ["logits0"]),
        n("Mul", ["logits0", "three"], ["logits1"]),
        n("Div", ["logits1", "two"], ["logits"]),
        n("Softmax", ["logits"], ["out"]),
    ]
    initializers = [
        ("w1", rand(1, 8, 3, 3, 3)), ("b1", rand(2, 8)),
        ("gamma", 1 + rand(3, 8)), ("beta", rand(4, 8)), ("mean", rand(6, 8)), ("var", bn_var),
        ("w2", rand(7, 8, 1, 3, 3)), ("w3", rand(8, 8, 8, 3, 3, scale=0.1)), ("b3", rand(9, 8)),
        ("zero", np.float32(0)), ("six", np.float32(6)),
        ("zero_index", np.int64(0)), ("axes0", np.array([0], np.int64)),
        ("minus_one", np.array([-1], np.int64)), ("axes23", np.array([2, 3], np.int64)),
        ("w4", rand(10, 72, 16, scale=0.2)), ("b4", rand(11, 16)),
        ("w5", rand(12, 10, 16)), ("w6", rand(13, 8, 10)),
        ("three", np.float32(3)), ("two", np.float32(2)),
    ]
    return save(tmp_path_factory.mktemp("models") / "many_ops.onnx", nodes, initializers)


@pytest.fixture(scope="module")
def digits():
    return Network(datasets.default_model_path()), *datasets.digits_test(), \
        datasets.digits_calibration()[0]


def images(seed, count=40, shape=(3, 9, 9)):
    return np.random.default_rng(seed).uniform(-1, 2, (count,) + shape).astype(np.float32)


# --- float mode -------------------------------------------------------------------------

def test_float_engine_equals_onnxruntime_on_every_operator(many_ops):
    network = Network(many_ops)
    x = images(0)
    ours, ort = network.run(x, batch_size=16), network.run_onnxruntime(x)
    assert ours.shape == ort.shape == (40, 10)
    np.testing.assert_allclose(ours, ort, rtol=1e-5, atol=1e-7)
    # The check can fail: a different input gives a different output.
    assert np.abs(network.run(images(1)) - ort).max() > 1e-2


def test_batch_norm_is_folded_into_the_conv(many_ops):
    network = Network(many_ops)
    assert [layer.name for layer in network.layers] == \
        ["conv1", "depthwise", "dilated", "fc1", "left_matmul", "right_matmul"]
    assert network._placement["conv1"][1]            # the BatchNormalization node is absorbed
    raw = {layer.name: layer for layer in load_layers(many_ops)}
    assert not np.allclose(network.layers[0].weight, raw["conv1"].weight)


@pytest.mark.parametrize("path", [datasets.default_model_path(), datasets.mnist_model_path()],
                         ids=["digits", "mnist"])
def test_float_engine_equals_onnxruntime_on_the_packaged_models(path):
    network = Network(path)
    x = datasets.digits_test()[0] if path == datasets.default_model_path() else \
        np.random.default_rng(0).normal(size=(300, 1, 28, 28)).astype(np.float32)
    ours, ort = network.run(x), network.run_onnxruntime(x)
    np.testing.assert_allclose(ours, ort, rtol=1e-5, atol=1e-6)
    assert np.array_equal(ours.argmax(1), ort.argmax(1))


def test_weights_only_puts_weights_back_in_place(many_ops):
    """Original weights in Layer orientation (BN folded) give the original model back."""
    network = Network(many_ops)
    x = images(2)
    same = network.run_onnxruntime(x, {layer.name: layer.weight for layer in network.layers})
    np.testing.assert_allclose(same, network.run_onnxruntime(x), rtol=1e-4, atol=1e-6)
    changed = {layer.name: layer.weight * 1.5 for layer in network.layers[:1]}
    assert not np.allclose(network.run_onnxruntime(x, changed), same, rtol=1e-3)


# --- integer mode -------------------------------------------------------------------------

def test_int8_integer_inference_is_close_to_float(digits):
    network, x, labels, calibration = digits
    config = StrumConfig(scheme="int8")
    scales = network.calibrate(calibration)
    logits = network.run_integer(x, network.quantize(config), scales, config)
    reference_logits = network.run_onnxruntime(x)
    assert sqnr_db(reference_logits, logits) > 35
    assert np.mean(logits.argmax(1) == reference_logits.argmax(1)) > 0.99
    # Coarse activations must hurt: the check can fail.
    coarse = {name: scale * 16 for name, scale in scales.items()}
    assert sqnr_db(reference_logits, network.run_integer(x, network.quantize(config), coarse,
                                                         config)) < 30


@pytest.mark.parametrize("scheme", ["int8", "dliq", "mip2q", "int4-g16", "2:4", "pot"])
def test_fast_accumulation_equals_the_reference_bit_for_bit(digits, scheme):
    network, x, _, calibration = digits
    config = StrumConfig(scheme=scheme, high_lanes=4)
    scales, quantized = network.calibrate(calibration), network.quantize(config)
    fast = network.run_integer(x[:100], quantized, scales, config)
    golden = network.run_integer(x[:100], quantized, scales, config, accumulate="reference")
    assert np.array_equal(fast, golden)


def test_fast_accumulation_on_every_layer_kind(many_ops):
    network = Network(many_ops)
    config = StrumConfig(scheme="dliq", rounding="rne")
    scales, quantized = network.calibrate(images(3)), network.quantize(config)
    fast = network.run_integer(images(4), quantized, scales, config, batch_size=7)
    golden = network.run_integer(images(4), quantized, scales, config, accumulate="reference")
    assert np.array_equal(fast, golden)
    assert sqnr_db(network.run_onnxruntime(images(4)), fast) > 15


def test_engine_wraps_and_slices_long_reductions_like_the_reference(many_ops):
    """Weights large enough to need float32 slices, value splits (2**20: one input channel
    alone passes 2**24), double and a 16/24-bit wrap stay exact."""
    import dataclasses

    network = Network(many_ops)
    scales = network.calibrate(images(3))
    rng = np.random.default_rng(5)
    for width, high in ((16, 127), (24, 6000), (40, 6000), (48, 2 ** 20)):
        config = StrumConfig(scheme="int8", acc_width=width)
        quantized = {name: dataclasses.replace(q, w_int=rng.integers(-high, high + 1, q.w_int.shape))
                     for name, q in network.quantize(StrumConfig(scheme="int8")).items()}
        seen = []
        network.run_integer(images(4), quantized, scales, config, accumulate="reference",
                            trace=lambda layer, x, s, acc: seen.append(np.abs(acc).max()))
        if width == 16:
            assert max(seen) >= 2 ** 14                 # the 16-bit accumulators do wrap
        else:                                           # and float32 alone would not be exact
            assert max(accumulator_bound(q.w_int).max() for q in quantized.values()) >= 2 ** 24


def test_reference_check_catches_a_wrong_accumulator(many_ops, monkeypatch):
    from strum.quant import inference

    network = Network(many_ops)
    config = StrumConfig(scheme="int8")
    scales, quantized = network.calibrate(images(3)), network.quantize(config)
    monkeypatch.setattr(inference, "layer_reference",
                        lambda *args: layer_reference(*args) + 1)
    with pytest.raises(EngineError, match="differ from the reference"):
        network.run_integer(images(4), quantized, scales, config, accumulate="reference")


def test_high_lanes_equal_block_size_is_int8(digits):
    network, x, _, calibration = digits
    scales = network.calibrate(calibration)
    results = []
    for config in (StrumConfig(scheme="int8"), StrumConfig(scheme="dliq", high_lanes=16),
                   StrumConfig(scheme="mip2q", high_lanes=16)):
        results.append(network.run_integer(x, network.quantize(config), scales, config))
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])
    config = StrumConfig(scheme="dliq", high_lanes=8)
    assert not np.array_equal(results[0], network.run_integer(x, network.quantize(config),
                                                              scales, config))


# --- traces: what the layer simulation must reproduce -------------------------------------

@pytest.mark.parametrize("path", [datasets.default_model_path(), datasets.mnist_model_path()],
                         ids=["digits", "mnist"])
def test_traces_hold_the_golden_accumulators(path):
    network = Network(path)
    x = images(6, 8, network.input_shape[1:])
    config = StrumConfig(scheme="dliq")
    traces = trace_layers(network, config, x, images(7, 20, network.input_shape[1:]))
    assert [t.name for t in traces] == [layer.name for layer in load_layers(path)]
    for trace, layer in zip(traces, network.layers):
        assert trace.x_int8.dtype == np.int8 and len(trace.x_int8) == 8
        assert trace.acc.dtype == np.int64
        np.testing.assert_array_equal(trace.w_int, network.quantize(config)[layer.name].w_int)
        if trace.op == "Conv":
            assert trace.x_int8.ndim == 4          # raw input, no padding
            golden = reference.conv(trace.x_int8, trace.w_int, 32, stride=trace.attrs["strides"],
                                    padding=trace.attrs["pads"],
                                    dilation=trace.attrs["dilations"],
                                    groups=trace.attrs["group"])
        else:
            golden = reference.linear(trace.x_int8, trace.w_int, 32)
        np.testing.assert_array_equal(trace.acc, golden)
        # The int8 input is the activation rule applied to the float input.
        assert trace.act_scale > 0 and np.abs(trace.x_int8).max() > 64
    # The first layer's input is the image itself, quantized.
    scale = traces[0].act_scale
    np.testing.assert_array_equal(traces[0].x_int8, quantize_activations(x, scale, "haz"))


def test_trace_dequantizes_to_the_next_layer_input(digits):
    network, x, _, calibration = digits
    config = StrumConfig(scheme="int4")
    first, second = trace_layers(network, config, x[:5], calibration)[:2]
    # conv1 -> ReLU -> dwconv2: requantizing relu(acc * s_act * s_w + b) gives the next input.
    y = first.acc * (first.act_scale * first.w_scale.astype(np.float64))[:, None, None] \
        + first.bias[:, None, None]
    np.testing.assert_array_equal(
        quantize_activations(np.maximum(y, 0), second.act_scale, "haz"), second.x_int8)


def test_layer_reference_handles_every_layer_kind():
    rng = np.random.default_rng(8)
    x = rng.integers(-128, 128, (3, 5, 4)).astype(np.int8)
    w = rng.integers(-127, 128, (6, 5))
    right = layer_reference("MatMul", {"weight_operand": 1}, np.swapaxes(x, 1, 2), w, 32)
    left = layer_reference("MatMul", {"weight_operand": 0}, x, w, 32)
    np.testing.assert_array_equal(right, np.swapaxes(left, 1, 2))
    gemm = layer_reference("Gemm", {"transA": 1}, x[0], w, 32)
    np.testing.assert_array_equal(gemm, x[0].T.astype(np.int64) @ w.T)
    with pytest.raises(ValueError, match="LSTM"):
        layer_reference("LSTM", {}, x, w, 32)


# --- activation rule ----------------------------------------------------------------------

def test_activation_rule():
    assert activation_scale(np.array([-2.54, 1.0])) == pytest.approx(0.02)
    assert activation_scale(np.zeros(4)) == 1.0
    assert activation_scale(np.arange(101.0), percentile=50) == pytest.approx(50 / 127)
    x = np.array([0.5, 1.5, -0.5, -2.5, 126.6, 300.0, -300.0])
    assert quantize_activations(x, 1.0, "haz").tolist() == [1, 2, -1, -3, 127, 127, -128]
    assert quantize_activations(x, 1.0, "rne").tolist() == [0, 2, -0, -2, 127, 127, -128]
    assert quantize_activations(x, 1.0, "haz").dtype == np.int8
    for bad in (dict(samples=[]), dict(samples=[np.nan]), dict(samples=[1.0], percentile=0)):
        with pytest.raises(ValueError):
            activation_scale(**bad)
    with pytest.raises(ValueError, match="positive"):
        quantize_activations(x, 0.0, "haz")


# --- errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 3, 8, 8), np.float32), r"3 channels instead of 1.*\[N, 1, 8, 8\]"),
    (np.zeros((4, 1, 28, 28), np.float32), r"28 size on axis 2 instead of 8"),
    (np.zeros((4, 64), np.float32), r"2 axes"),
    (np.zeros((4, 1, 8, 8), np.int64), r"dtype int64"),
    (np.full((4, 1, 8, 8), np.nan, np.float32), r"256 NaN"),
    (np.zeros((0, 1, 8, 8), np.float32), r"no images"),
])
def test_images_that_do_not_fit_the_model(digits, bad, message):
    network = digits[0]
    with pytest.raises(InputError, match=message):
        network.check_images(bad, "test images")
    with pytest.raises(InputError, match=message):
        network.run(bad)


def test_labels_that_do_not_fit_the_model(digits):
    network = digits[0]
    assert network.num_classes == 10
    with pytest.raises(InputError, match=r"labels span 0\.\.12 .* 10 outputs \(classes 0\.\.9\)"):
        network.check_labels(np.array([0, 12, 3]), 3)
    with pytest.raises(InputError, match="-1"):
        network.check_labels(np.array([0, -1]), 2)
    with pytest.raises(InputError, match="2 labels for 3 images"):
        network.check_labels(np.array([0, 1]), 3)
    with pytest.raises(InputError, match="integer"):
        network.check_labels(np.array([0.0, 1.0]), 2)
    assert network.check_labels(np.array([0, 9], np.uint8), 2).dtype == np.int64


@pytest.mark.parametrize("domain, op", [("", "FooBar"), ("com.example", "Frobnicate")])
def test_unsupported_operator_is_one_line_naming_it_and_its_node(tmp_path, domain, op):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node(op, ["c"], ["t"], name="the_node", domain=domain),
             helper.make_node("Flatten", ["t"], ["out"])]
    graph = helper.make_graph(nodes, "g", [value("x", ["N", 3, 9, 9])], [value("out", ["N", 196])],
                              [numpy_helper.from_array(rand(0, 4, 3, 3, 3), "w")])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    with pytest.raises(InputError, match=rf"unsupported operator {op} \(node 'the_node'") as error:
        Network(path)
    assert "\n" not in str(error.value)


def test_conv_without_constant_weight_runs_in_float_and_is_listed(tmp_path):
    n = helper.make_node
    path = save(tmp_path / "m.onnx", [
        n("Conv", ["x", "w1"], ["c"], name="fixed", pads=[1, 1, 1, 1]),
        n("Mul", ["w2", "two"], ["w2x"]),
        n("Conv", ["c", "w2x"], ["c2"], name="computed"),
        n("Flatten", ["c2"], ["out"])],
        [("w1", rand(0, 4, 3, 3, 3)), ("w2", rand(1, 4, 4, 3, 3)), ("two", np.float32(2))],
        output_shape=("N", 196))
    network = Network(path)
    assert [layer.name for layer in network.layers] == ["fixed"]
    assert network.unquantized == [("Conv", "computed")]
    config = StrumConfig(scheme="int8")
    x = images(0)
    y = network.run_integer(x, network.quantize(config), network.calibrate(x), config)
    assert sqnr_db(network.run(x), y) > 30


def test_model_with_two_inputs_takes_a_dict(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "y"], ["out"])],
        "g", [value("x", ["N", 3, 9, 9]), value("y", ["N", 4, 7, 7])],
        [value("out", ["N", 4, 7, 7])], [numpy_helper.from_array(rand(0, 4, 3, 3, 3), "w")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    network = Network(path)
    with pytest.raises(InputError, match=r"2 inputs \(x, y\)"):
        network.run(images(0))
    feeds = {"x": images(0, 6), "y": images(1, 6, (4, 7, 7))}
    config = StrumConfig(scheme="dliq")
    y = network.run_integer(feeds, network.quantize(config), network.calibrate(feeds), config,
                            accumulate="reference")
    assert y.shape == (6, 4, 7, 7) and sqnr_db(network.run(feeds), y) > 20
    with pytest.raises(InputError, match="no values for model input 'y'"):
        network.run({"x": images(0)})


def test_run_integer_needs_every_weight_and_scale(digits):
    network, x, _, calibration = digits
    config = StrumConfig(scheme="int8")
    quantized, scales = network.quantize(config), network.calibrate(calibration)
    with pytest.raises(ValueError, match="no quantized weight for layer '/conv1/Conv'"):
        network.run_integer(x, {}, scales, config)
    with pytest.raises(ValueError, match="no activation scale for tensor 'input'"):
        network.run_integer(x, quantized, {}, config)
    with pytest.raises(ValueError, match="accumulate"):
        network.run_integer(x, quantized, scales, config, accumulate="approximate")


@pytest.mark.parametrize("channels, out, group, kernel, stride, pads, dilation, extra", [
    (4, 6, 2, (3, 3), (2, 2), (1, 0, 1, 1), (1, 1), (1, 0)),
    (3, 5, 1, (4, 4), (2, 2), (1, 1, 1, 1), (1, 1), (0, 0)),
    (2, 4, 2, (3,), (3,), (0, 2), (2,), (1,)),
    (6, 6, 6, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), (0, 0)),
])
def test_conv_transpose_reference_and_layout_equal_onnxruntime(tmp_path, channels, out, group,
                                                                kernel, stride, pads, dilation,
                                                                extra):
    """reference.conv_transpose (a stride-1 conv of the upsampled input with the equivalent
    weight) equals onnxruntime's ConvTranspose on integers; load_layers reads that weight."""
    from strum.quant.onnx_io import conv_as_conv_transpose

    rng = np.random.default_rng(sum(kernel) + channels)
    x = rng.integers(-128, 128, (2, channels) + (5,) * len(kernel))
    w = rng.integers(-127, 128, (channels, out // group) + kernel)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["out"], name="up", group=group,
                            strides=list(stride), pads=list(pads), dilations=list(dilation),
                            output_padding=list(extra))
    graph = helper.make_graph([node], "g", [value("x")], [value("out")],
                              [numpy_helper.from_array(w.astype(np.float32), "w")])
    path = tmp_path / "t.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    (layer,) = load_layers(path)
    assert layer.op == "ConvTranspose" and layer.weight.shape == (out, channels // group) + kernel
    np.testing.assert_array_equal(conv_as_conv_transpose(layer.weight, group), w)
    ours = layer_reference("ConvTranspose", layer.attrs, x.astype(np.int8), layer.weight.astype(np.int64), 48)
    import onnxruntime
    ort = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_array_equal(ours, ort.astype(np.int64))
