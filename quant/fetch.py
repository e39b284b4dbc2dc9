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
           "silero_vad_onnx"]

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
    target = folder / f"{variant}.onnx"
    if target.is_file() and _sha256(target) == member_sha256:
        return target

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="strum-fetch-") as scratch:
        wheel = _download_wheel(Path(scratch))
        # Extract next to the target, then rename: readers never see half a file.
        fd, partial = tempfile.mkstemp(prefix=f".{variant}-", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheel) as archive:
                with archive.open(member) as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
            got = _sha256(Path(partial))
            if got != member_sha256:
                raise FetchError(f"{member} in {_WHEEL_NAME} has sha256 {got}, "
                                 f"expected {member_sha256}")
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    return target


def _download_wheel(scratch: Path) -> Path:
    requirement = f"silero-vad=={SILERO_VAD_VERSION}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", requirement, "-d", str(scratch)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = scratch / _WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines()
                 if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("ERROR")),
                      lines[-1] if lines else f"exit status {result.returncode}")
        raise FetchError(f"pip could not download {requirement} (needed for the reference "
                         f"model; is PyPI reachable?): {reason}")
    got = _sha256(wheel)
    if got != _WHEEL_SHA256:
        raise FetchError(f"{_WHEEL_NAME} has sha256 {got}, expected {_WHEEL_SHA256}")
    return wheel
