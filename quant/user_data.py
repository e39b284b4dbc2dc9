"""Users' own evaluation data: image folders, ``.npz`` archives and folders of ``.npy`` inputs.

:func:`load_user_data` returns the inputs (one array, or a dict by model input name for
a model with several inputs), the labels when the data has them (else None) and a
calibration set.

- **image folder** in the ImageFolder layout (``ROOT/<class>/<image>``, classes sorted
  by name are labels 0, 1, ...), or a flat folder of images (no labels). Each image is
  read with Pillow, converted to RGB or grey, resized to ``size`` (bilinear), scaled to
  [0, 1], normalised ``(x - mean) / std`` per channel and laid out ``NCHW`` or ``NHWC``.
- **folder of .npy files**: one input per file (sorted by name), stacked; no labels.
- **.npz**: ``images`` (or, for a model with several inputs, one array per input name;
  or a single array under any name), an optional ``labels`` ``[N]`` and an optional
  ``calibration`` array (or ``calibration/<input>`` per input).

Without a calibration set, :data:`CALIBRATION_INPUTS` inputs drawn with seed 0
calibrate (they stay in the test, as before).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["Preprocess", "load_user_data", "IMAGE_SUFFIXES", "CALIBRATION_INPUTS"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CALIBRATION_INPUTS = 200
SEED = 0


@dataclass(frozen=True)
class Preprocess:
    """How image files become model inputs.

    Attributes
    ----------
    size : (height, width) or None
        Resize to this (None: keep, then every image must have the same size).
    mean, std : tuple of float
        Per channel (one value for all channels when of length 1), on the [0, 1] scale.
    layout : "NCHW" or "NHWC"
    color : "rgb" or "grey"
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"
    color: str = "rgb"

    def __post_init__(self):
        if self.layout not in ("NCHW", "NHWC"):
            raise InputError(f"--layout must be NCHW or NHWC, not {self.layout!r}")
        if self.color not in ("rgb", "grey"):
            raise InputError(f"--color must be rgb or grey, not {self.color!r}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise InputError(f"--size must be H,W (or one number) of positive integers, "
                             f"not {self.size!r}")
        channels = 3 if self.color == "rgb" else 1
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise InputError(f"--{name} needs 1 or {channels} values for {self.color} "
                                 f"images, not {len(values)}")
        if any(v == 0 for v in self.std):
            raise InputError("--std values must be non-zero")


def load_user_data(path, preprocess: Preprocess | None = None, inputs=None):
    """``(name, inputs, labels or None, calibration, calibration source)`` from a user path.

    ``inputs`` is the model's input names (to match ``.npz`` arrays to them).

    Raises
    ------
    InputError
        A missing path, an empty folder, unreadable files or arrays that do not stack.
    """
    path = Path(path)
    preprocess = preprocess or Preprocess()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        npy = [p for p in files if p.suffix.lower() == ".npy"]
        if npy:
            data = np.stack([_load_npy(p) for p in npy]) if _same_shape(npy) else None
            if data is None:
                raise InputError(f"{path}: the .npy files have different shapes; expected one "
                                 f"input of the same shape per file")
            return _with_calibration(path.name, data, None, None, f"{len(npy)} .npy files")
        if classes:
            images, labels = [], []
            for label, name in enumerate(classes):
                found = _image_files(path / name)
                images += found
                labels += [label] * len(found)
            if not images:
                raise InputError(f"{path}: no image files in its class folders "
                                 f"({', '.join(classes[:5])}); expected {', '.join(IMAGE_SUFFIXES[:4])}, ...")
            return _with_calibration(path.name, _read_images(images, preprocess),
                                     np.asarray(labels, np.int64), None,
                                     f"{len(images)} images in {len(classes)} classes")
        found = _image_files(path)
        if not found:
            raise InputError(f"{path}: no images, class folders or .npy files in the folder")
        return _with_calibration(path.name, _read_images(found, preprocess), None, None,
                                 f"{len(found)} images")
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".npz":
        return _load_npz(path, inputs)
    raise InputError(f"--data {path}: expected a folder (images by class, images, or .npy "
                     f"inputs) or an .npz archive")


def _same_shape(files) -> bool:
    return len({np.load(p, mmap_mode="r", allow_pickle=False).shape for p in files}) == 1


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{path}: not a valid .npy file ({error})") from None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_images(files, preprocess: Preprocess) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading image folders needs Pillow: pip install pillow") from None
    arrays = []
    for path in files:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB" if preprocess.color == "rgb" else "L")
                if preprocess.size is not None:
                    height, width = preprocess.size
                    image = image.resize((width, height), Image.Resampling.BILINEAR)
                arrays.append(np.asarray(image, dtype=np.float32))
        except OSError as error:
            raise InputError(f"{path}: cannot read the image ({error})") from None
    if len({a.shape for a in arrays}) != 1:
        raise InputError(f"{files[0].parent}: the images have different sizes; give --size H,W")
    x = np.stack(arrays) / np.float32(255)
    if x.ndim == 3:
        x = x[..., None]                                       # grey: [N, H, W, 1]
    x = (x - np.asarray(preprocess.mean, np.float32)) / np.asarray(preprocess.std, np.float32)
    return np.ascontiguousarray(x if preprocess.layout == "NHWC" else x.transpose(0, 3, 1, 2),
                                dtype=np.float32)


def _load_npz(path: Path, inputs):
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: not a valid .npz archive ({error})") from None
    labels = arrays.pop("labels", None)
    calibration = {key[len("calibration/"):]: arrays.pop(key) for key in list(arrays)
                   if key.startswith("calibration/")}
    if "calibration" in arrays:
        calibration = arrays.pop("calibration")
    names = list(inputs or [])
    if "images" in arrays:
        data = arrays["images"]
    elif names and all(name in arrays for name in names):
        data = {name: arrays[name] for name in names}
        if len(names) == 1:
            data = data[names[0]]
    elif len(arrays) == 1:
        data = next(iter(arrays.values()))
    else:
        wanted = ", ".join(repr(n) for n in names) or "'images'"
        raise InputError(f"{path}: no 'images' array and the arrays ({', '.join(arrays) or 'none'}) "
                         f"do not match the model inputs ({wanted})")
    if isinstance(data, np.ndarray) and isinstance(calibration, dict):
        calibration = calibration or None
    if labels is not None:
        count = len(next(iter(data.values()))) if isinstance(data, dict) else len(data)
        if labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) != count:
            raise InputError(f"{path}: 'labels' has dtype {labels.dtype} and shape "
                             f"{list(labels.shape)}, expected {count} integer class indices")
    return _with_calibration(path.name, data, labels, calibration or None,
                             "the archive's 'calibration' array")


def _with_calibration(name, data, labels, calibration, described):
    if isinstance(data, np.ndarray) and data.dtype.kind == "f":
        data = data.astype(np.float32)
    if calibration is not None:
        return name, data, labels, calibration, described
    if isinstance(data, dict):      # batch axes differ between inputs: calibrate on the test
        return name, data, labels, data, "the test inputs themselves (several model inputs)"
    count = len(data)
    if count == 0:
        raise InputError(f"{name}: the data set is empty")
    chosen = np.sort(np.random.default_rng(SEED).choice(count, min(CALIBRATION_INPUTS, count),
                                                        replace=False))
    calibration = data[chosen]
    return name, data, labels, calibration, f"{len(chosen)} inputs drawn with seed {SEED}"
