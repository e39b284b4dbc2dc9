"""Real networks of other kinds through strum eval: text detection (with ConvTranspose),
recognition and direction classification (PaddleOCR), voice activity detection
(silero-vad, several inputs), plus the digit CNNs; the operators they use between them."""

import json

import numpy as np
import onnx
import pytest

from strum.cli import main
from strum.quant import datasets
from strum.quant.config import StrumConfig
from strum.quant.evaluate import evaluate
from strum.quant.fetch import rapidocr_onnx, silero_vad_onnx
from strum.quant.inference import Network
from text_images import silero_feeds, text_lines, text_pages


def operators(graph) -> set:
    found = set()
    for node in graph.node:
        found.add(node.op_type)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found |= operators(attribute.g)
    return found


def test_mobilenet_style_classifier_bits_and_accuracy():
    """PaddleOCR's MobileNetV3 direction classifier: 8.6 bits per weight under dliq if its
    short reductions were padded to blocks, below 8 with them kept int8 (the default)."""
    x, labels = text_lines(48, seed=1)
    report = evaluate(datasets.ocr_cls_model_path(), x, labels, text_lines(24, seed=2)[0],
                      ["int8", "dliq:h8", "mip2q:h8"], weights_only=False, data_name="text lines")
    rows = report["schemes"]
    assert report["float_top1"] >= 0.9
    for scheme in ("dliq:h8", "mip2q:h8"):       # default short policy: at or below int8
        assert rows[scheme]["bits_per_weight"] < rows["int8"]["bits_per_weight"] == 8
        assert abs(rows[scheme]["top1"] - rows["int8"]["top1"]) <= 0.05
    # Kept int8: exactly the layers whose 15-byte blocks of 16 would cost more than a byte a
    # weight (depthwise 3x3 and 5x5, and thin layers of 8 to 28 input channels).
    short = {layer["name"] for layer in rows["dliq:h8"]["layers"] if layer["scheme"] == "int8"}
    lengths = {layer["name"]: int(np.prod(layer["shape"][1:])) for layer in report["layers"]}
    assert short == {name for name, n in lengths.items() if -(-n // 16) * 15 > n}
    assert {9, 25} <= {lengths[name] for name in short} and len(short) > len(lengths) / 2
    padded = Network(datasets.ocr_cls_model_path()).quantize(StrumConfig(), short="pad")
    weights = sum(q.w_int.size for q in padded.values())
    assert sum(q.bits_per_weight * q.w_int.size for q in padded.values()) / weights > 8.5


def test_recognizer_without_labels_reports_agreement_and_sqnr():
    x, _ = text_lines(4, seed=3, width=320)
    report = evaluate(rapidocr_onnx("rec"), x, None, x, ["int8", "int4"], weights_only=False)
    rows = report["schemes"]
    assert report["float_top1"] is None and rows["int8"]["top1"] is None
    assert report["outputs"] == {"softmax_11.tmp_0": [40, 6625]}
    assert rows["int8"]["outputs"]["softmax_11.tmp_0"]["sqnr_db"] > rows["int4"]["output_sqnr_db"]
    assert rows["int8"]["top1_agreement"] > rows["int4"]["top1_agreement"]
    # Attention's activation-times-activation MatMuls hold no weight: listed, run in float.
    assert {n["op"] for n in report["unquantized_nodes"]} == {"MatMul"}
    json.dumps(report, allow_nan=False)


def test_detector_with_conv_transpose_is_exact():
    network = Network(rapidocr_onnx("det"))
    assert {layer.op for layer in network.layers} == {"Conv", "ConvTranspose"}
    pages = text_pages(2, seed=5)
    config = StrumConfig(scheme="dliq")
    scales = network.calibrate(pages)
    seen = []
    # accumulate="reference" checks every layer against strum.quant.reference.
    network.run_integer(pages[:1], network.quantize(config), scales, config,
                        accumulate="reference", trace=lambda layer, *rest: seen.append(layer.op))
    assert seen.count("ConvTranspose") == 2 and len(seen) == len(network.layers)


def test_several_inputs_with_a_batch_axis_that_is_not_the_first():
    feeds = silero_feeds(24)
    report = evaluate(silero_vad_onnx(variant="silero_vad_16k_op15"), feeds, None, feeds,
                      ["int8", "dliq:h8"], weights_only=False)
    assert report["images"] == 24 and set(report["outputs"]) == {"output", "stateN"}
    assert report["schemes"]["int8"]["outputs"]["stateN"]["sqnr_db"] > 10


def test_face_detector_stages_with_several_outputs():
    """MTCNN's proposal (fully convolutional, any size) and output networks; no face data
    ships with strum, so these are random crops: only agreement and SQNR are checked."""
    rng = np.random.default_rng(9)
    pnet = evaluate(datasets.mtcnn_model_path("pnet"), rng.uniform(-1, 1, (4, 3, 40, 56)).astype(np.float32),
                    None, rng.uniform(-1, 1, (4, 3, 40, 56)).astype(np.float32), ["int8", "dliq:h8"],
                    weights_only=False)
    assert pnet["outputs"] == {"boxes": [4, 15, 23], "face": [2, 15, 23]}
    onet = evaluate(datasets.mtcnn_model_path("onet"), rng.uniform(-1, 1, (16, 3, 48, 48)).astype(np.float32),
                    None, rng.uniform(-1, 1, (16, 3, 48, 48)).astype(np.float32), ["int8", "int4"],
                    weights_only=False)
    rows = onet["schemes"]
    assert set(rows["int8"]["outputs"]) == {"boxes", "landmarks", "face"}
    assert rows["int8"]["outputs"]["landmarks"]["sqnr_db"] > rows["int4"]["outputs"]["landmarks"]["sqnr_db"] > 0


def test_forty_operators_between_the_evaluated_networks():
    paths = [rapidocr_onnx("det"), rapidocr_onnx("rec"), datasets.ocr_cls_model_path(),
             datasets.mtcnn_model_path("onet"),
             silero_vad_onnx(variant="silero_vad_16k_op15"), datasets.mnist_model_path(),
             datasets.default_model_path()]
    found = set().union(*(operators(onnx.load(str(p)).graph) for p in paths))
    assert len(found) >= 40, sorted(found)
    assert {"ConvTranspose", "Resize", "HardSigmoid", "LSTM", "If", "ReduceMean", "Pow", "PRelu",
            "Sqrt", "Slice", "Cast", "Pad", "ConstantOfShape"} <= found


def test_cli_eval_on_an_image_folder(tmp_path, capsys):
    from PIL import Image

    x, labels = text_lines(16, seed=7)
    for index, (line, label) in enumerate(zip(x, labels)):
        folder = tmp_path / "lines" / ("0_upright", "1_rotated")[label]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = ((line.transpose(1, 2, 0) * 0.5 + 0.5) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).resize((96, 24)).save(folder / f"{index}.png")
    report = tmp_path / "r.json"
    assert main(["eval", str(datasets.ocr_cls_model_path()), "--data", str(tmp_path / "lines"),
                 "--size", "48,192", "--mean", "0.5", "--std", "0.5", "--schemes", "int8",
                 "dliq:h8", "--no-weights-only", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["images"] == 16 and data["float_top1"] >= 0.8
    assert "| dliq:h8 |" in capsys.readouterr().out


def test_cli_eval_on_npy_inputs_without_labels(tmp_path, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for index, line in enumerate(text_lines(6, seed=8)[0]):
        np.save(folder / f"{index:02d}.npy", line)
    assert main(["eval", str(datasets.ocr_cls_model_path()), "--data", str(folder),
                 "--schemes", "int8", "--no-weights-only"]) == 0
    out = capsys.readouterr().out
    assert "6 images, float top-1 - %" in out and "| int8 | 8.000 |" in out


def test_inputs_the_model_rejects_at_run_time_are_one_line():
    from strum.quant.errors import InputError

    network = Network(rapidocr_onnx("det"))
    with pytest.raises(InputError, match=r"onnxruntime failed at \w+ node") as error:
        network.run(np.zeros((1, 3, 50, 50), np.float32))    # sides must be multiples of 32
    assert "\n" not in str(error.value)


def test_quantize_lists_weight_nodes_it_does_not_quantize(tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["quantize", str(rapidocr_onnx("rec")), "-o", str(tmp_path / "w.npz"),
                 "--report", str(report)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum("MatMul node 'p2o.MatMul." in line for line in err) == 4
    # The rest: layers with all-zero channels or channels too small for a float32 scale.
    assert all("MatMul node 'p2o.MatMul." in line or "too small for a float32 scale" in line
               or "are all zero" in line for line in err)
    data = json.loads(report.read_text())
    assert [n["op"] for n in data["unquantized_nodes"]] == ["MatMul"] * 4
    assert len(data["layers"]) == 47 and any(layer.get("scheme") == "int8" for layer in data["layers"])


@pytest.mark.parametrize("name", ["det", "rec", "cls", "onet", "pnet", "vad", "mnist", "digits"])
def test_rewritten_graph_with_the_float_weights_is_the_model(name):
    """Float mode is onnxruntime on the model itself; the rewrite machinery (BatchNormalization
    folded, weights back in each operator's layout) with the float weights reproduces it
    within 1e-5 relative on every test model."""
    rng = np.random.default_rng(0)
    path, x = {
        "det": (lambda: rapidocr_onnx("det"), lambda: text_pages(1, seed=1)),
        "rec": (lambda: rapidocr_onnx("rec"), lambda: text_lines(2, seed=1, width=320)[0]),
        "cls": (datasets.ocr_cls_model_path, lambda: text_lines(4, seed=1)[0]),
        "onet": (lambda: datasets.mtcnn_model_path("onet"),
                 lambda: rng.uniform(-1, 1, (4, 3, 48, 48)).astype(np.float32)),
        "pnet": (lambda: datasets.mtcnn_model_path("pnet"),
                 lambda: rng.uniform(-1, 1, (2, 3, 30, 41)).astype(np.float32)),
        "vad": (lambda: silero_vad_onnx(variant="silero_vad_16k_op15"), lambda: silero_feeds(8)),
        "mnist": (datasets.mnist_model_path,
                  lambda: rng.normal(size=(8, 1, 28, 28)).astype(np.float32)),
        "digits": (datasets.default_model_path, lambda: datasets.digits_test()[0][:16]),
    }[name]
    network = Network(path())
    x = x()
    reference = network.run_outputs(x)
    rebuilt = network.run_outputs(x, weights={layer.name: layer.weight for layer in network.layers})
    for output, value in reference.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(rebuilt[output], value, rtol=1e-5, atol=1e-5 * scale, err_msg=output)


def test_cli_simulates_the_detectors_conv_transpose_on_the_dpu(tmp_path):
    report = tmp_path / "r.json"
    assert main(["simulate", "layer", str(rapidocr_onnx("det")), "--layer", "p2o.ConvTranspose.0",
                 "--block", "8", "--rows", "3", "--cols", "5", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    # 24 -> 24 channels, 2x2 kernel, stride 2: an 8x8 input gives 16x16 outputs.
    assert data["mismatches"] == 0 and data["outputs"] == 24 * 16 * 16


def test_layers_only_inside_subgraphs_are_refused_in_one_line():
    """silero-vad's two-rate model keeps all its convs inside an If: eval says so."""
    from strum.quant.errors import InputError

    network = Network(silero_vad_onnx())
    assert network.batch_axes == {"input": 0, "state": 1, "sr": None}   # unnamed dims
    feeds = silero_feeds(4)
    assert network.run_outputs(feeds)["output"].shape == (4, 1)
    with pytest.raises(InputError, match="layers inside subgraphs"):
        evaluate(network, feeds, None, feeds, ["int8"])
