"""The reference model: Silero VAD, taken from its pinned PyPI wheel.

:func:`silero_vad_onnx` returns a cached ``.onnx`` file, downloading the wheel with
pip and extracting the model the first time. The wheel and every model file are
checked against sha256 sums measured once and pinned here, so a cached file can
never silently be another model.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .files import cache_root
from .errors import FetchError

__all__ = ["FetchError", "SILERO_VAD_VERSION", "SILERO_VAD_VARIANTS", "cache_root",
           "silero_vad_onnx", "RAPIDOCR_VERSION", "RAPIDOCR_MODELS", "rapidocr_onnx"]

SILERO_VAD_VERSION = "6.2.3"
_WHEEL_NAME = f"silero_vad-{SILERO_VAD_VERSION}-py3-none-any.whl"
_WHEEL_SHA256 = "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
#: Variant name -> (member in the wheel, sha256 of the member).
SILERO_VAD_VARIANTS = {
    # 8 kHz and 16 kHz models in the two branches of one If; weights in Constant nodes.
    "silero_vad": (
        "silero_vad/data/silero_vad.onnx",
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
    # 16 kHz only, opset 15, weights as initializers.
    "silero_vad_16k_op15": (
        "silero_vad/data/silero_vad_16k_op15.onnx",
        "7ed98ddbad84ccac4cd0aeb3099049280713df825c610a8ed34543318f1b2c49"),
}




def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def silero_vad_onnx(cache_dir=None, *, variant: str = "silero_vad") -> Path:
    """Path of a Silero VAD ONNX model from the ``silero-vad==6.2.3`` wheel.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Where models are kept; see :func:`cache_root`. The file lands in
        ``<cache_dir>/silero-vad-6.2.3/<variant>.onnx``.
    variant : str
        A key of :data:`SILERO_VAD_VARIANTS`: ``"silero_vad"`` (both sample rates, 12
        Conv layers) or ``"silero_vad_16k_op15"`` (16 kHz, 6 Conv layers).

    Raises
    ------
    ValueError
        Unknown ``variant``.
    FetchError
        pip could not download the wheel, or the wheel or model does not match its
        pinned sha256.
    """
    if variant not in SILERO_VAD_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(SILERO_VAD_VARIANTS)}, "
                         f"not {variant!r}")
    member, member_sha256 = SILERO_VAD_VARIANTS[variant]
    folder = cache_root(cache_dir) / f"silero-vad-{SILERO_VAD_VERSION}"
    return _wheel_member(folder / f"{variant}.onnx", member, member_sha256,
                         lambda scratch: _download_wheel(scratch), _WHEEL_NAME)


def _wheel_member(target: Path, member: str, member_sha256: str, download, wheel_name: str) -> Path:
    """``target``, extracted from ``member`` of the wheel ``download(scratch)`` fetches,
    unless a file with the pinned sha256 is already there. Extracted next to the target,
    then renamed: readers never see half a file."""
    if target.is_file() and _sha256(target) == member_sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="strum-fetch-") as scratch:
        wheel = download(Path(scratch))
        fd, partial = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheel) as archive:
                with archive.open(member) as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
            got = _sha256(Path(partial))
            if got != member_sha256:
                raise FetchError(f"{member} in {wheel_name} has sha256 {got}, "
                                 f"expected {member_sha256}")
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


RAPIDOCR_VERSION = "1.4.4"
_RAPIDOCR_WHEEL = (f"rapidocr_onnxruntime-{RAPIDOCR_VERSION}-py3-none-any.whl",
                   "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf")
#: PaddleOCR's networks as shipped (Apache-2.0) in the rapidocr_onnxruntime wheel:
#: name -> (member, sha256). Text detection (DBNet, MobileNetV3-style backbone, a
#: ConvTranspose head), recognition (PP-OCRv4 SVTR-LCNet, CTC over 6,625 symbols) and
#: text-direction classification (MobileNetV3 small); see strum/data/README.md.
RAPIDOCR_MODELS = {
    "det": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
            "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
    "rec": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
            "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
    "cls": ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
}


def rapidocr_onnx(name: str, cache_dir=None) -> Path:
    """Path of one of PaddleOCR's ONNX networks from the pinned ``rapidocr_onnxruntime`` wheel.

    ``name`` is a key of :data:`RAPIDOCR_MODELS` (``det``, ``rec`` or ``cls``); the file
    lands in ``<cache>/rapidocr-1.4.4/<name>.onnx``, checked like :func:`silero_vad_onnx`.
    """
    if name not in RAPIDOCR_MODELS:
        raise ValueError(f"name must be one of {', '.join(RAPIDOCR_MODELS)}, not {name!r}")
    member, member_sha256 = RAPIDOCR_MODELS[name]
    folder = cache_root(cache_dir) / f"rapidocr-{RAPIDOCR_VERSION}"
    return _wheel_member(folder / f"{name}.onnx", member, member_sha256,
                         lambda scratch: _download_wheel(
                             scratch, f"rapidocr_onnxruntime=={RAPIDOCR_VERSION}", *_RAPIDOCR_WHEEL),
                         _RAPIDOCR_WHEEL[0])


def _download_wheel(scratch: Path, requirement: str | None = None, wheel_name: str = _WHEEL_NAME,
                    wheel_sha256: str = _WHEEL_SHA256) -> Path:
    requirement = requirement or f"silero-vad=={SILERO_VAD_VERSION}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", requirement, "-d", str(scratch)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = scratch / wheel_name
    if result.returncode != 0 or not wheel.is_file():
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines()
                 if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("ERROR")),
                      lines[-1] if lines else f"exit status {result.returncode}")
        raise FetchError(f"pip could not download {requirement} (needed for the reference "
                         f"model; is PyPI reachable?): {reason}")
    got = _sha256(wheel)
    if got != wheel_sha256:
        raise FetchError(f"{wheel_name} has sha256 {got}, expected {wheel_sha256}")
    return wheel
