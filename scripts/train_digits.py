"""Train the packaged digits CNN and export it to ONNX (run once, offline).

Writes two files that are committed to the repository, so nothing here runs at
install or test time:

- ``strum/data/digits_cnn.onnx``: the embedded default model. Input ``input``
  ``[N, 1, 8, 8]`` float32, pixel values scaled to [0, 1] (scikit-learn's
  0..16 grey levels divided by 16); output ``logits`` ``[N, 10]``.
- ``strum/data/digits_split.npz``: ``test_images`` / ``test_labels`` (the
  held-out 30 %, 540 images) and ``calibration_images`` /
  ``calibration_labels`` (200 images, 20 per class, from the training split),
  images float32 ``[N, 1, 8, 8]`` in [0, 1], labels int64.

Data: ``sklearn.datasets.load_digits`` (1,797 images bundled with scikit-learn,
no download), split 70/30 stratified with a fixed seed. Training uses a fixed
recipe (no model selection on the test split).

Architecture (15,096 weights + 106 biases; module names as in the ONNX file)::

    conv1    Conv 1->12, 3x3, pad 1                        ReLU  [12, 8, 8]    108 weights
    dwconv2  Conv 12->12, 3x3, pad 1, stride 2, group 12   ReLU  [12, 4, 4]    108 (depthwise)
    conv3    Conv 12->24, 3x3, pad 1                       ReLU  [24, 4, 4]   2592
    conv4    Conv 24->48, 3x3, pad 1                       ReLU  [48, 4, 4]  10368
    pool4    MaxPool 2x2                                         [48, 2, 2]
    fc       Flatten, Gemm 192->10                               [10]          1920

Float top-1 on the 540 test images, measured with onnxruntime on the exported
file: 97.78 % (528 / 540). Torch and onnxruntime agree on every image.

Rerun (torch is NOT a dependency of strum; install it only for this script)::

    pip install torch==2.13.0 scikit-learn onnxruntime
    python scripts/train_digits.py

The CPU build of torch 2.13.0 with one thread gives the committed file; another
torch version or thread count may give slightly different weights.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

SEED = 0
TEST_FRACTION = 0.3
CALIBRATION_PER_CLASS = 20
EPOCHS = 120
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
OPSET = 17
# The graph may hold only these ops, so that the quantizer sees a plain CNN.
PLAIN_OPS = {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"}

DATA_DIR = Path(__file__).resolve().parent.parent / "strum" / "data"
MODEL_PATH = DATA_DIR / "digits_cnn.onnx"
SPLIT_PATH = DATA_DIR / "digits_split.npz"


def load_split():
    """Return (train_x, train_y, test_x, test_y), images [N, 1, 8, 8] in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SEED)
    return train_x, train_y, test_x, test_y


def pick_calibration(train_x, train_y):
    """Pick CALIBRATION_PER_CLASS training images of each class, in a seeded order."""
    rng = np.random.default_rng(SEED)
    index = np.concatenate([
        rng.choice(np.flatnonzero(train_y == label), CALIBRATION_PER_CLASS, replace=False)
        for label in range(10)
    ])
    index = rng.permutation(index)
    return train_x[index], train_y[index]


def build_model():
    from collections import OrderedDict

    from torch import nn

    # Named modules give the ONNX initializers readable names (conv1.weight, ...).
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 12, kernel_size=3, padding=1)),
        ("relu1", nn.ReLU()),
        ("dwconv2", nn.Conv2d(12, 12, kernel_size=3, padding=1, stride=2, groups=12)),
        ("relu2", nn.ReLU()),
        ("conv3", nn.Conv2d(12, 24, kernel_size=3, padding=1)),
        ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(24, 48, kernel_size=3, padding=1)),
        ("relu4", nn.ReLU()),
        ("pool4", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(48 * 2 * 2, 10)),
    ]))


def train(model, train_x, train_y):
    import torch
    from torch import nn

    x = torch.from_numpy(train_x)
    y = torch.from_numpy(train_y)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = -(-len(x) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=LEARNING_RATE, epochs=EPOCHS, steps_per_epoch=steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            optimiser.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        if (epoch + 1) % 20 == 0:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(x):.4f}")
    model.eval()


def export(model, path: Path):
    """Export with the TorchScript exporter (plain ops, no onnxscript), via a temp file."""
    import torch

    dummy = torch.zeros(1, 1, 8, 8)
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

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    train_x, train_y, test_x, test_y = load_split()
    calib_x, calib_y = pick_calibration(train_x, train_y)
    model = build_model()
    weights = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))
    biases = sum(p.numel() for name, p in model.named_parameters() if name.endswith("bias"))
    print(f"train {len(train_x)}  test {len(test_x)}  weights {weights}  biases {biases}")
    train(model, train_x, train_y)

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    export(model, MODEL_PATH)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=DATA_DIR)
    os.close(fd)
    with open(tmp, "wb") as f:
        np.savez_compressed(
            f, test_images=test_x, test_labels=test_y,
            calibration_images=calib_x, calibration_labels=calib_y)
    os.replace(tmp, SPLIT_PATH)

    with torch.no_grad():
        torch_logits = model(torch.from_numpy(test_x)).numpy()
    logits = onnx_logits(MODEL_PATH, test_x)
    agree = int(np.sum(logits.argmax(1) == torch_logits.argmax(1)))
    correct = int(np.sum(logits.argmax(1) == test_y))
    print(f"torch vs onnxruntime: max |logit diff| {np.abs(logits - torch_logits).max():.2e}, "
          f"same prediction on {agree} / {len(test_y)}")
    print(f"onnxruntime test top-1 {correct / len(test_y):.4f} ({correct} / {len(test_y)})")
    print(f"wrote {MODEL_PATH} ({MODEL_PATH.stat().st_size} bytes), "
          f"{SPLIT_PATH} ({SPLIT_PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
