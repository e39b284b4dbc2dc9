"""The strum command line: outputs, reports, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from strum.cli import main
from strum.quant.config import SCHEMES, STRUM_SCHEMES


@pytest.fixture
def weights_npy(tmp_path):
    path = tmp_path / "conv.npy"
    np.save(path, np.random.default_rng(0).normal(size=(12, 20, 3, 3)))
    return path


@pytest.mark.parametrize("scheme", SCHEMES)
def test_quantize_writes_npz_and_report(tmp_path, weights_npy, scheme, capsys):
    out, report = tmp_path / "out.npz", tmp_path / "report.json"
    assert main(["quantize", str(weights_npy), "-o", str(out), "--scheme", scheme,
                 "--report", str(report)]) == 0
    with np.load(out) as archive:
        assert archive["conv/w_int"].dtype == np.int16 and archive["conv/w_int"].shape == (12, 20, 3, 3)
        assert archive["conv/scale"].dtype == np.float32 and archive["conv/scale"].shape == (12,)
        assert archive["conv/mask"].dtype == bool
        assert ("conv/packed" in archive.files) == (scheme in STRUM_SCHEMES)
    data = json.loads(report.read_text())
    assert set(data) == {"scheme", "config", "layers", "seconds"} and data["scheme"] == scheme
    (layer,) = data["layers"]
    assert set(layer) == {"name", "shape", "weights", "sqnr_db", "bits_per_weight"}
    assert layer["shape"] == [12, 20, 3, 3] and layer["weights"] == 2160 and layer["sqnr_db"] > 5
    assert "conv" in capsys.readouterr().out


def test_quantize_options_reach_the_config(tmp_path, weights_npy):
    report = tmp_path / "r.json"
    assert main(["quantize", str(weights_npy), "-o", str(tmp_path / "o.npz"), "--scheme", "mip2q",
                 "--block", "8", "--high", "2", "--group", "4", "--rounding", "rne",
                 "--report", str(report)]) == 0
    config = json.loads(report.read_text())["config"]
    assert (config["scheme"], config["block_size"], config["high_lanes"], config["group_size"],
            config["rounding"]) == ("mip2q", 8, 2, 4, "rne")
    with np.load(tmp_path / "o.npz") as archive:
        assert archive["conv/mask"].reshape(12, -1).sum() == 12 * 180 // 4


def test_inspect_verifies_images(tmp_path, weights_npy, capsys):
    out = tmp_path / "o.npz"
    main(["quantize", str(weights_npy), "-o", str(out)])
    assert main(["inspect", str(out)]) == 0
    assert "conv: dliq B=16 H=8" in capsys.readouterr().out
    with np.load(out) as archive:
        image = archive["conv/packed"].tobytes()
    (tmp_path / "good.bin").write_bytes(image)
    assert main(["inspect", str(tmp_path / "good.bin")]) == 0
    (tmp_path / "bad.bin").write_bytes(b"XXXXXXXX" + image[8:])
    assert main(["inspect", str(tmp_path / "bad.bin")]) == 2
    assert "magic" in capsys.readouterr().err


def _empty_model(path):
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph), path)


def _cases(tmp_path, weights_npy):
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([[1.0, np.nan]]))
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3)))
    text = tmp_path / "text.onnx"
    text.write_text("not a model")
    nothing = tmp_path / "relu.onnx"
    _empty_model(nothing)
    good = str(weights_npy)
    return [
        ([good, "--scheme", "int3"], "--scheme"),
        ([good, "--block", "12"], "block_size"),
        ([good, "--high", "17"], "high_lanes"),
        ([str(nan), ], "NaN or Inf"),
        ([str(empty)], "empty"),
        ([str(text)], "text.onnx"),
        ([str(nothing)], "nothing to quantize"),
        ([str(tmp_path / "missing.onnx")], "missing.onnx"),
    ]


def test_bad_input_one_line_exit_2_and_no_output(tmp_path, weights_npy):
    for arguments, expected in _cases(tmp_path, weights_npy):
        out = tmp_path / "out.npz"
        result = subprocess.run([sys.executable, "-m", "strum", "quantize", *arguments, "-o", str(out),
                                 "--report", str(tmp_path / "r.json")], capture_output=True, text=True)
        assert result.returncode == 2, (arguments, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (arguments, result.stderr)
        assert not out.exists() and not (tmp_path / "r.json").exists()
        assert not list(tmp_path.glob(".out.npz.*"))       # no temp file left behind
