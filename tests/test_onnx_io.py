"""Reading weights from ONNX, .npy and .npz files; fetching the Silero VAD model."""

import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from strum.quant import fetch
from strum.quant.errors import FetchError
from strum.quant.fetch import SILERO_VAD_VERSION, cache_root, silero_vad_onnx
from strum.quant.onnx_io import InputError, Layer, find_layer, load_layers

FLOAT = TensorProto.FLOAT


def rand(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def value(name, shape=None):
    return helper.make_tensor_value_info(name, FLOAT, shape)


def const_node(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def save(tmp_path, nodes, inputs, outputs, initializers=(), name="model.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs,
                              [numpy_helper.from_array(a, n) for n, a in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def run(path, **feeds):
    return ReferenceEvaluator(str(path)).run(None, feeds)[0]


# --- Conv -----------------------------------------------------------------------------

def test_conv_initializer_defaults(tmp_path):
    w, b = rand(0, 8, 4, 3, 3), rand(1, 8)
    path = save(tmp_path, [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv0")],
                [value("x", [1, 4, 6, 6])], [value("y")], [("w", w), ("b", b)])
    [layer] = load_layers(path)
    assert (layer.name, layer.op, layer.input, layer.output, layer.graph_path) == \
        ("conv0", "Conv", "x", "y", "")
    assert layer.weight.dtype == np.float64 and layer.shape == (8, 4, 3, 3)
    np.testing.assert_array_equal(layer.weight, w)
    np.testing.assert_array_equal(layer.bias, b)
    assert layer.attrs == {"group": 1, "strides": (1, 1), "pads": (0, 0, 0, 0),
                           "dilations": (1, 1), "kernel_shape": (3, 3)}


def test_conv_explicit_attrs_and_weight_read_only(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", strides=[2, 1],
                            pads=[1, 0, 2, 0], dilations=[1, 2], kernel_shape=[3, 3])
    path = save(tmp_path, [node], [value("x")], [value("y")], [("w", rand(0, 2, 3, 3, 3))])
    [layer] = load_layers(path)
    assert layer.attrs["strides"] == (2, 1) and layer.attrs["pads"] == (1, 0, 2, 0)
    assert layer.attrs["dilations"] == (1, 2) and layer.bias is None
    with pytest.raises(ValueError, match="read-only"):
        layer.weight[0, 0, 0, 0] = 1.0


def test_conv_weight_from_constant_node_named_after_weight(tmp_path):
    w = rand(2, 4, 2, 5)
    nodes = [const_node("wc", w), helper.make_node("Conv", ["x", "wc"], ["y"])]
    path = save(tmp_path, nodes, [value("x")], [value("y")])
    [layer] = load_layers(path)
    assert layer.name == "wc" and layer.shape == (4, 2, 5)
    assert layer.attrs["kernel_shape"] == (5,) and layer.attrs["pads"] == (0, 0)
    np.testing.assert_array_equal(layer.weight, w)


def test_conv_weight_through_identity(tmp_path):
    nodes = [helper.make_node("Identity", ["w"], ["w_alias"]),
             helper.make_node("Conv", ["x", "w_alias"], ["y"], name="c")]
    path = save(tmp_path, nodes, [value("x")], [value("y")], [("w", rand(0, 2, 2, 1, 1))])
    assert [layer.name for layer in load_layers(path)] == ["c"]


def test_conv_in_if_branches_with_outer_scope_weight(tmp_path):
    w_then, w_else = rand(3, 4, 2, 3), rand(4, 6, 2, 3)
    then_graph = helper.make_graph(
        [const_node("wt", w_then), helper.make_node("Conv", ["x", "wt"], ["yt"], name="conv")],
        "then", [], [value("yt")])
    # The else branch uses an initializer of the main graph (outer scope).
    else_graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w_outer"], ["ye"], name="conv")],
        "else", [], [value("ye")])
    node = helper.make_node("If", ["cond"], ["y"], name="If_0",
                            then_branch=then_graph, else_branch=else_graph)
    path = save(tmp_path, [node], [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                                   value("x")], [value("y")], [("w_outer", w_else)])
    layers = load_layers(path)
    by_path = {layer.graph_path: layer for layer in layers}
    assert set(by_path) == {"If_0.then_branch", "If_0.else_branch"}
    np.testing.assert_array_equal(by_path["If_0.then_branch"].weight, w_then)
    np.testing.assert_array_equal(by_path["If_0.else_branch"].weight, w_else)
    # Same node name in both branches: the second in load order gets a suffix.
    assert [layer.name for layer in layers] == ["conv", "conv#2"]
    assert by_path["If_0.then_branch"].output == "yt"
    assert by_path["If_0.else_branch"].input == "x"


def test_subgraph_input_shadows_outer_constant(tmp_path):
    # A Loop body input named like an outer initializer is an activation, not the weight.
    body = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["yb"], name="inner"),
         helper.make_node("Identity", ["c"], ["c_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c", TensorProto.BOOL, []), value("w")],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), value("yb")])
    loop = helper.make_node("Loop", ["n", ""], ["y"], name="loop", body=body)
    conv = helper.make_node("Conv", ["x", "w"], ["z"], name="outer")
    path = save(tmp_path, [loop, conv], [value("x")], [value("z")],
                [("w", rand(0, 2, 2, 1, 1))])
    assert [layer.name for layer in load_layers(path)] == ["outer"]


@pytest.mark.parametrize("group", [2, 6])
def test_grouped_and_depthwise_conv(tmp_path, group):
    channels, out = 6, 12
    w = rand(5, out, channels // group, 3, 3)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="g", group=group, pads=[1] * 4)
    path = save(tmp_path, [node], [value("x", [1, channels, 5, 5])], [value("y")], [("w", w)])
    [layer] = load_layers(path)
    assert layer.attrs["group"] == group and layer.shape == (out, channels // group, 3, 3)
    # Input channel c of group j meets weight[j*out/g:(j+1)*out/g, c - j*C/g].
    x = rand(6, 1, channels, 5, 5)
    windows = np.lib.stride_tricks.sliding_window_view(
        np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    windows = windows.reshape(1, group, channels // group, 5, 5, 3, 3)
    weight = layer.weight.reshape(group, out // group, channels // group, 3, 3)
    expected = np.einsum("ngchwrs,gkcrs->ngkhw", windows, weight).reshape(1, out, 5, 5)
    np.testing.assert_allclose(run(path, x=x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode, expected", [("SAME_UPPER", (1, 0, 2, 1)),
                                            ("SAME_LOWER", (2, 1, 1, 0))])
def test_auto_pad_same_stride_one(tmp_path, mode, expected):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad=mode)
    path = save(tmp_path, [node], [value("x")], [value("y")], [("w", rand(0, 2, 2, 4, 2))])
    assert load_layers(path)[0].attrs["pads"] == expected


def test_auto_pad_same_strided_uses_static_shape(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad="SAME_UPPER",
                            strides=[2, 2])
    path = save(tmp_path, [node], [value("x", [1, 2, 7, 8])], [value("y")],
                [("w", rand(0, 2, 2, 3, 3))])
    # in=7: out 4, total (4-1)*2+3-7 = 2; in=8: out 4, total (4-1)*2+3-8 = 1.
    assert load_layers(path)[0].attrs["pads"] == (1, 0, 1, 1)


def test_auto_pad_same_strided_without_shape_is_refused(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad="SAME_LOWER",
                            strides=[2, 2])
    path = save(tmp_path, [node], [value("x")], [value("y")], [("w", rand(0, 2, 2, 3, 3))])
    with pytest.raises(InputError, match=r"model\.onnx: layer 'c' \(Conv\).*static input shape"):
        load_layers(path)


def test_auto_pad_valid(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad="VALID")
    path = save(tmp_path, [node], [value("x")], [value("y")], [("w", rand(0, 2, 2, 3))])
    assert load_layers(path)[0].attrs["pads"] == (0, 0)


# --- Gemm and MatMul ------------------------------------------------------------------

@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_orientation(tmp_path, trans_b):
    out, inp = 5, 7
    w = rand(7, out, inp)                      # [out, in]
    stored = w if trans_b else w.T.copy()
    c = rand(8, out)
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="fc", transB=trans_b,
                            alpha=0.5, beta=2.0)
    path = save(tmp_path, [node], [value("x", [3, inp])], [value("y")],
                [("B", stored), ("C", c)])
    [layer] = load_layers(path)
    assert layer.shape == (out, inp) and layer.op == "Gemm"
    assert layer.attrs == {"alpha": 0.5, "beta": 2.0, "transA": 0, "transB": trans_b}
    x = rand(9, 3, inp)
    expected = layer.attrs["alpha"] * x @ layer.weight.T + layer.attrs["beta"] * layer.bias
    np.testing.assert_allclose(run(path, x=x), expected, rtol=1e-5, atol=1e-5)


def test_gemm_scalar_bias_broadcast(tmp_path):
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="fc", transB=1)
    path = save(tmp_path, [node], [value("x")], [value("y")],
                [("B", rand(0, 4, 3)), ("C", np.array([1.5], np.float32))])
    np.testing.assert_array_equal(load_layers(path)[0].bias, np.full(4, 1.5))


def test_matmul_constant_right_operand(tmp_path):
    b = rand(10, 6, 4)                          # [in, out]
    path = save(tmp_path, [helper.make_node("MatMul", ["x", "B"], ["y"], name="mm")],
                [value("x", [2, 6])], [value("y")], [("B", b)])
    [layer] = load_layers(path)
    assert layer.shape == (4, 6) and layer.attrs == {"weight_operand": 1}
    assert layer.input == "x" and layer.bias is None
    x = rand(11, 2, 6)
    np.testing.assert_allclose(run(path, x=x), x @ layer.weight.T, rtol=1e-5, atol=1e-5)


def test_matmul_constant_left_operand(tmp_path):
    path = save(tmp_path, [helper.make_node("MatMul", ["A", "x"], ["y"], name="mm")],
                [value("x", [6, 2])], [value("y")], [("A", rand(12, 4, 6))])
    [layer] = load_layers(path)
    assert layer.shape == (4, 6) and layer.attrs == {"weight_operand": 0}
    assert layer.input == "x"
    x = rand(13, 6, 2)
    np.testing.assert_allclose(run(path, x=x), layer.weight @ x, rtol=1e-5, atol=1e-5)


def test_matmul_without_constant_and_small_constants_are_skipped(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "x2"], ["s"], name="scores"),
             helper.make_node("MatMul", ["s", "v"], ["t"], name="vector"),
             helper.make_node("MatMul", ["t", "B"], ["y"], name="kept")]
    path = save(tmp_path, nodes, [value("x"), value("x2")], [value("y")],
                [("v", rand(0, 3)), ("B", rand(1, 3, 2))])
    assert [layer.name for layer in load_layers(path)] == ["kept"]


def test_other_ops_are_left_alone(tmp_path):
    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["h"], name="lstm", hidden_size=2)
    path = save(tmp_path, [lstm, helper.make_node("MatMul", ["x", "B"], ["y"], name="mm")],
                [value("x")], [value("y")],
                [("W", rand(0, 1, 8, 3)), ("R", rand(1, 1, 8, 2)), ("B", rand(2, 3, 3))])
    assert [layer.name for layer in load_layers(path)] == ["mm"]


# --- NumPy files ----------------------------------------------------------------------

def test_npy(tmp_path):
    w = rand(0, 16, 3, 3, 3)
    np.save(tmp_path / "conv1.npy", w)
    [layer] = load_layers(tmp_path / "conv1.npy")
    assert (layer.name, layer.op, layer.attrs, layer.bias, layer.input) == \
        ("conv1", "tensor", {}, None, "")
    np.testing.assert_array_equal(layer.weight, w)


def test_npz_keys_in_file_order_and_integer_dtype(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, zeta=rand(0, 4, 8), alpha=np.arange(12, dtype=np.int8).reshape(3, 4),
             mid=rand(1, 2, 2, 2))
    layers = load_layers(path)
    assert [layer.name for layer in layers] == ["zeta", "alpha", "mid"]
    assert layers[1].weight.dtype == np.float64 and layers[1].weight[2, 3] == 11.0


# --- errors ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.onnx: no such file"):
        load_layers(tmp_path / "nope.onnx")


def test_unknown_extension(tmp_path):
    (tmp_path / "w.txt").write_text("1 2 3")
    with pytest.raises(InputError, match=r"w\.txt: unknown extension '\.txt'"):
        load_layers(tmp_path / "w.txt")


@pytest.mark.parametrize("name, content", [
    ("random.onnx", np.random.default_rng(0).bytes(300)),
    ("text.onnx", b"this is not a model\nat all\n"),
    ("empty.onnx", b""),
    ("random.npy", np.random.default_rng(1).bytes(300)),
    ("text.npz", b"hello"),
    ("broken.npz", b"PK\x03\x04" + bytes(40)),
])
def test_invalid_files(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')}: not a valid"):
        load_layers(tmp_path / name)


def test_npz_and_npy_swapped(tmp_path):
    np.savez(tmp_path / "a.npz", w=rand(0, 2, 2))
    shutil.copy(tmp_path / "a.npz", tmp_path / "b.npy")
    np.save(tmp_path / "c.npy", rand(0, 2, 2))
    shutil.copy(tmp_path / "c.npy", tmp_path / "d.npz")
    with pytest.raises(InputError, match=r"b\.npy: is an \.npz archive"):
        load_layers(tmp_path / "b.npy")
    with pytest.raises(InputError, match=r"d\.npz: is an \.npy file"):
        load_layers(tmp_path / "d.npz")


def test_nothing_to_quantize(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("MatMul", ["r", "x"], ["y"])]
    path = save(tmp_path, nodes, [value("x")], [value("y")])
    with pytest.raises(InputError, match=r"model\.onnx: .*nothing to quantize.*MatMul, Relu"):
        load_layers(path)


def test_nan_in_onnx_weight_names_layer(tmp_path):
    w = rand(0, 2, 2, 3, 3)
    w[1, 0, 2, 2] = np.nan
    path = save(tmp_path, [helper.make_node("Conv", ["x", "w"], ["y"], name="bad_conv")],
                [value("x")], [value("y")], [("w", w)])
    with pytest.raises(InputError, match=r"model\.onnx: weight of layer 'bad_conv' \(Conv\) "
                                         r"has 1 NaN or Inf"):
        load_layers(path)


def test_inf_in_onnx_bias_names_layer(tmp_path):
    b = np.array([0.0, np.inf], np.float32)
    path = save(tmp_path, [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")],
                [value("x")], [value("y")], [("w", rand(0, 3, 2)), ("b", b)])
    with pytest.raises(InputError, match=r"bias of layer 'fc' \(Gemm\) has 1 NaN or Inf"):
        load_layers(path)


def test_inf_in_npz_names_key(tmp_path):
    bad = rand(0, 3, 3)
    bad[0, 0] = -np.inf
    np.savez(tmp_path / "w.npz", good=rand(1, 2, 2), bad=bad)
    with pytest.raises(InputError, match=r"w\.npz: tensor 'bad' has 1 NaN or Inf"):
        load_layers(tmp_path / "w.npz")


def test_empty_tensors(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), np.float32))
    with pytest.raises(InputError, match=r"empty\.npy: tensor 'empty' is empty \(shape \(0, 4\)\)"):
        load_layers(tmp_path / "empty.npy")
    path = save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                [value("x")], [value("y")], [("w", np.zeros((3, 0), np.float32))])
    with pytest.raises(InputError, match=r"weight of layer 'mm' \(MatMul\) is empty"):
        load_layers(path)


def test_too_few_axes(tmp_path):
    np.save(tmp_path / "vec.npy", rand(0, 5))
    with pytest.raises(InputError, match=r"vec\.npy: tensor 'vec' has shape \(5,\), "
                                         r"expected at least 2 axes"):
        load_layers(tmp_path / "vec.npy")
    np.savez(tmp_path / "s.npz", ok=rand(0, 2, 2), scalar=np.float32(3))
    with pytest.raises(InputError, match=r"s\.npz: tensor 'scalar' has shape \(\)"):
        load_layers(tmp_path / "s.npz")


@pytest.mark.parametrize("array", [np.ones((2, 2), bool), np.ones((2, 2), np.complex64),
                                   np.array([["a", "b"], ["c", "d"]])])
def test_bad_dtype_npy(tmp_path, array):
    np.save(tmp_path / "t.npy", array)
    with pytest.raises(InputError, match=rf"t\.npy: tensor 't' has dtype {array.dtype}, "
                                         r"expected a float or integer"):
        load_layers(tmp_path / "t.npy")


def test_bad_dtype_onnx(tmp_path):
    path = save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
                [value("x")], [value("y")], [("w", np.ones((2, 2), bool))])
    with pytest.raises(InputError, match=r"weight of layer 'mm' \(MatMul\) has dtype bool"):
        load_layers(path)


def test_find_layer(tmp_path):
    layers = [Layer(name=n, op="tensor", weight=np.ones((2, 2)))
              for n in ["/encoder/0/conv", "/encoder/1/conv", "/decoder/conv"]]
    assert find_layer(layers, "/decoder/conv") is layers[2]
    with pytest.raises(InputError, match=r"no layer named 'encoder/1' among 3 layers; "
                                         r"closest: '/encoder/1/conv'"):
        find_layer(layers, "encoder/1")
    with pytest.raises(InputError, match=r"no layer named 'zzz'.*available: '/encoder/0/conv'"):
        find_layer(layers, "zzz")


# --- fetching the reference model -----------------------------------------------------

@pytest.fixture(scope="module")
def silero_path():
    return silero_vad_onnx()


def test_silero_vad_layers(silero_path):
    layers = load_layers(silero_path)
    assert len(layers) == 12 and all(layer.op == "Conv" for layer in layers)
    assert len({layer.name for layer in layers}) == 12
    branches = {"If_0.then_branch": [], "If_0.else_branch": []}
    for layer in layers:
        branches[layer.graph_path].append(layer.shape)
    # 16 kHz branch (258 STFT bins) and 8 kHz branch (130).
    assert branches["If_0.then_branch"] == [(258, 1, 256), (128, 129, 3), (64, 128, 3),
                                            (64, 64, 3), (128, 64, 3), (1, 128, 1)]
    assert branches["If_0.else_branch"] == [(130, 1, 128), (128, 65, 3), (64, 128, 3),
                                            (64, 64, 3), (128, 64, 3), (1, 128, 1)]
    encoder = find_layer(layers, "If_0_then_branch__Inline_0__/encoder/1/reparam_conv/Conv")
    assert encoder.attrs["strides"] == (2,) and encoder.attrs["pads"] == (1, 1)
    assert encoder.bias.shape == (64,)


def test_silero_constant_nodes_match_initializers(silero_path):
    # The If-with-Constant-nodes model and the initializer model hold the same 16 kHz weights.
    in_branch = [layer for layer in load_layers(silero_path)
                 if layer.graph_path == "If_0.then_branch"]
    flat = load_layers(silero_vad_onnx(variant="silero_vad_16k_op15"))
    assert [layer.graph_path for layer in flat] == [""] * 6
    for a, b in zip(in_branch, flat, strict=True):
        np.testing.assert_array_equal(a.weight, b.weight)


def _no_pip(*args, **kwargs):
    raise AssertionError("pip must not run on a cache hit")


def test_fetch_cache_hit_skips_pip(silero_path, tmp_path, monkeypatch):
    cached = tmp_path / f"silero-vad-{SILERO_VAD_VERSION}" / "silero_vad.onnx"
    cached.parent.mkdir()
    shutil.copy(silero_path, cached)
    monkeypatch.setattr(fetch.subprocess, "run", _no_pip)
    assert silero_vad_onnx(tmp_path) == cached


def _failed_pip(command, **kwargs):
    return subprocess.CompletedProcess(
        command, 1, stdout="", stderr="ERROR: Could not find a version that satisfies\n")


def test_fetch_corrupt_cache_refetches_and_reports_pip_error(tmp_path, monkeypatch):
    cached = tmp_path / f"silero-vad-{SILERO_VAD_VERSION}" / "silero_vad.onnx"
    cached.parent.mkdir()
    cached.write_bytes(b"truncated")
    monkeypatch.setattr(fetch.subprocess, "run", _failed_pip)
    with pytest.raises(FetchError, match=r"pip could not download silero-vad==6\.2\.3 .*"
                                         r"ERROR: Could not find a version"):
        silero_vad_onnx(tmp_path)
    assert cached.read_bytes() == b"truncated"
    assert [p.name for p in cached.parent.iterdir()] == ["silero_vad.onnx"]


def test_fetch_arguments(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"variant must be one of .* not 'silero_vad_8k'"):
        silero_vad_onnx(tmp_path, variant="silero_vad_8k")
    monkeypatch.setenv("STRUM_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("STRUM_CACHE")
    assert cache_root().parts[-2:] == (".cache", "strum")
