"""Export MTCNN's three networks (facenet-pytorch 2.6.0) to ONNX (run once, offline).

Source: the ``facenet-pytorch`` 2.6.0 wheel on PyPI (MIT licence, Copyright (c) 2019
Timothy Esler) ships ``facenet_pytorch/data/{pnet,rnet,onet}.pt``, the ``state_dict`` of
MTCNN's proposal, refinement and output networks (``facenet_pytorch/models/mtcnn.py``;
the weights are those of Zhang et al.'s MTCNN face detector). This script downloads the
wheel with pip, checks its SHA-256, rebuilds the three modules in torch exactly as
``mtcnn.py`` defines them, loads the weights with ``strict=True`` and writes
``strum/data/mtcnn_{pnet,rnet,onet}.onnx`` (opset 17, TorchScript exporter).

- PNet: fully convolutional face proposals on any image size (input ``[N, 3, H, W]``),
  outputs box regression ``[N, 4, h, w]`` and face probability ``[N, 2, h, w]``.
- RNet: 24 x 24 crops; box regression ``[N, 4]``, face probability ``[N, 2]``.
- ONet: 48 x 48 crops; box ``[N, 4]``, five landmarks ``[N, 10]``, face probability ``[N, 2]``.

Input normalisation as facenet-pytorch: ``(pixel - 127.5) / 128``, RGB, NCHW.

Rerun (torch is NOT a dependency of strum; install it only for this script)::

    pip install torch==2.13.0 onnxruntime
    python scripts/export_mtcnn.py
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

WHEEL_REQUIREMENT = "facenet-pytorch==2.6.0"
WHEEL_NAME = "facenet_pytorch-2.6.0-py3-none-any.whl"
WHEEL_SHA256 = "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca"
OPSET = 17
DATA_DIR = Path(__file__).resolve().parent.parent / "strum" / "data"


def fetch_checkpoints() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        WHEEL_REQUIREMENT, "-d", tmp], check=True)
        wheel = Path(tmp) / WHEEL_NAME
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise RuntimeError(f"{WHEEL_NAME}: sha256 {digest}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as archive:
            return {name: archive.read(f"facenet_pytorch/data/{name}.pt")
                    for name in ("pnet", "rnet", "onet")}


def build(name):
    """PNet, RNet and ONet as facenet_pytorch/models/mtcnn.py defines them."""
    from torch import nn

    class PNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
            self.prelu1 = nn.PReLU(10)
            self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
            self.prelu2 = nn.PReLU(16)
            self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
            self.prelu3 = nn.PReLU(32)
            self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
            self.softmax4_1 = nn.Softmax(dim=1)
            self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

        def forward(self, x):
            x = self.prelu3(self.conv3(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x)))))))
            return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))

    class RNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
            self.prelu1 = nn.PReLU(28)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
            self.prelu2 = nn.PReLU(48)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
            self.prelu3 = nn.PReLU(64)
            self.dense4 = nn.Linear(576, 128)
            self.prelu4 = nn.PReLU(128)
            self.dense5_1 = nn.Linear(128, 2)
            self.softmax5_1 = nn.Softmax(dim=1)
            self.dense5_2 = nn.Linear(128, 4)

        def forward(self, x):
            x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
            x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
            return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))

    class ONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.softmax6_1 = nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool2(self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x))))))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    return {"pnet": PNet, "rnet": RNet, "onet": ONet}[name]()


SHAPES = {"pnet": (3, 48, 64), "rnet": (3, 24, 24), "onet": (3, 48, 48)}
OUTPUTS = {"pnet": ["boxes", "face"], "rnet": ["boxes", "face"],
           "onet": ["boxes", "landmarks", "face"]}


def export(model, name, path: Path):
    import torch

    dummy = torch.zeros((1,) + SHAPES[name])
    axes = {"input": {0: "N"} if name != "pnet" else {0: "N", 2: "H", 3: "W"}}
    axes.update({out: {0: "N"} for out in OUTPUTS[name]})
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (dummy,), tmp, dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=OUTPUTS[name],
                              dynamic_axes=axes)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main():
    import onnxruntime
    import torch

    for name, blob in fetch_checkpoints().items():
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        model = build(name)
        model.load_state_dict(state, strict=True)
        model.eval()
        path = DATA_DIR / f"mtcnn_{name}.onnx"
        export(model, name, path)
        x = np.random.default_rng(0).uniform(-1, 1, (8,) + SHAPES[name]).astype(np.float32)
        with torch.no_grad():
            expected = [t.numpy() for t in model(torch.from_numpy(x))]
        got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
        diff = max(float(np.abs(a - b).max()) for a, b in zip(expected, got))
        weights = sum(v.numel() for k, v in state.items() if k.endswith("weight") and v.dim() > 1)
        print(f"{path.name}: {weights} weights, torch vs onnxruntime max diff {diff:.1e}, "
              f"{path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
