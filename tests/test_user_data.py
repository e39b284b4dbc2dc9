"""Users' data for strum eval: image folders (grey, NHWC, resizing), .npz with several inputs."""

import numpy as np
import pytest

from strum.quant import datasets
from strum.quant.errors import InputError
from strum.quant.evaluate import evaluate, load_data
from strum.quant.user_data import Preprocess


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """The packaged digits test images as grey PNGs in one folder per class."""
    from PIL import Image

    root = tmp_path_factory.mktemp("digits")
    images, labels = datasets.digits_test()
    for index, (image, label) in enumerate(zip(images[:120], labels[:120])):
        folder = root / f"class_{label}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.round(image[0] * 255).astype(np.uint8)).resize((16, 16)).save(
            folder / f"{index}.png")
    return root


def test_grey_image_folder_gives_the_packaged_accuracy(digit_folder):
    data = load_data(digit_folder, Preprocess(size=(8, 8), color="grey"))
    assert data.images.shape == (120, 1, 8, 8) and data.labels.max() == 9
    assert data.calibration_source.endswith("seed 0")
    report = evaluate(datasets.default_model_path(), data.images, data.labels, data.calibration,
                      ["int8"], weights_only=False)
    reference = datasets.digits_test()
    expected = evaluate(datasets.default_model_path(), reference[0][:120], reference[1][:120],
                        reference[0][:120], ["int8"], weights_only=False)
    # 16x16 PNGs resized back to 8x8: close to, not exactly, the packaged arrays.
    assert abs(report["float_top1"] - expected["float_top1"]) <= 0.05
    assert report["float_top5"] is not None and report["float_top5"] >= report["float_top1"]


def test_layout_and_normalisation(digit_folder):
    nchw = load_data(digit_folder, Preprocess(size=(8, 8), color="rgb", mean=(0.5,), std=(0.25,)))
    nhwc = load_data(digit_folder, Preprocess(size=(8, 8), color="rgb", mean=(0.5,), std=(0.25,),
                                              layout="NHWC"))
    assert nchw.images.shape == (120, 3, 8, 8) and nhwc.images.shape == (120, 8, 8, 3)
    np.testing.assert_array_equal(nchw.images.transpose(0, 2, 3, 1), nhwc.images)
    assert nchw.images.min() >= -2 and nchw.images.max() <= 2 and nchw.images.min() < -1.5


@pytest.mark.parametrize("options, message", [
    (dict(layout="CHW"), "--layout"), (dict(color="cmyk"), "--color"),
    (dict(mean=(0.1, 0.2)), "--mean needs 1 or 3"), (dict(std=(0.0,)), "non-zero"),
])
def test_bad_preprocessing_is_refused(options, message):
    with pytest.raises(InputError, match=message):
        Preprocess(**options)


def test_images_of_different_sizes_need_a_size(tmp_path):
    from PIL import Image

    for index, side in enumerate((8, 9)):
        Image.new("L", (side, side)).save(tmp_path / f"{index}.png")
    with pytest.raises(InputError, match="give --size"):
        load_data(tmp_path, Preprocess(color="grey"))
    data = load_data(tmp_path, Preprocess(color="grey", size=(8, 8)))
    assert data.labels is None and data.images.shape == (2, 1, 8, 8)


def test_npz_with_one_array_per_model_input(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, x=np.zeros((5, 3, 9, 9), np.float32), y=np.ones((5, 4, 7, 7), np.float32))
    data = load_data(path, inputs=["x", "y"])
    assert set(data.images) == {"x", "y"} and data.labels is None
    with pytest.raises(InputError, match="do not match the model inputs"):
        load_data(path, inputs=["a"])
