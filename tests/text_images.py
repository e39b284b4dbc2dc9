"""Synthetic inputs for the real-model tests and benchmark (no data files): printed-text
images for the OCR networks, tone bursts in noise for silero-vad.

Words drawn with Pillow's default font on light backgrounds, seeded. PaddleOCR's own
preprocessing: the classifier and recogniser take 48-pixel-high RGB lines scaled to
[-1, 1]; the detector takes ImageNet-normalised RGB pages whose sides are multiples of 32.
"""

import numpy as np

WORDS = ("strum", "mixed", "precision", "block", "lane", "shift", "hardware", "integer",
         "weights", "accuracy", "area", "power", "tensor", "reduction", "silicon", "layer",
         "2025", "INT8", "DLIQ", "MIP2Q", "Conv", "Gemm", "Yosys", "ONNX")
DET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
DET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _font(size):
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def _line(rng, height, width):
    from PIL import Image, ImageDraw

    text = " ".join(rng.choice(WORDS, rng.integers(1, 4)))
    shade = int(rng.integers(200, 256))
    image = Image.new("RGB", (width, height), (shade,) * 3)
    ImageDraw.Draw(image).text((int(rng.integers(2, 12)), int(rng.integers(2, 8))), text,
                               fill=(int(rng.integers(0, 60)),) * 3, font=_font(int(height * 0.6)))
    return np.asarray(image, np.float32) / 255


def text_lines(count, seed=0, width=192, rotated=None):
    """``[N, 3, 48, width]`` lines in [-1, 1] and labels (1 = rotated by 180 degrees)."""
    rng = np.random.default_rng(seed)
    lines, labels = [], []
    for index in range(count):
        line = _line(rng, 48, width)
        flip = bool(index % 2) if rotated is None else rotated
        lines.append(line[::-1, ::-1] if flip else line)
        labels.append(int(flip))
    x = (np.stack(lines) - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32), np.array(labels, np.int64)


def text_pages(count, seed=0, height=96, width=160):
    """``[N, 3, height, width]`` pages holding a few text lines, ImageNet-normalised."""
    rng = np.random.default_rng(seed)
    pages = []
    for _ in range(count):
        page = np.ones((height, width, 3), np.float32) * rng.uniform(0.8, 1.0)
        for top in range(4, height - 28, 30):
            page[top:top + 24, 4:width - 4] = _line(rng, 24, width - 8)
        pages.append((page - DET_MEAN) / DET_STD)
    return np.ascontiguousarray(np.stack(pages).transpose(0, 3, 1, 2), np.float32)


def silero_feeds(count, seed=0):
    """Chunks of 512 samples at 16 kHz: silence, noise and tone bursts; zero state."""
    rng = np.random.default_rng(seed)
    t = np.arange(512) / 16000
    chunks = [rng.normal(0, 0.01, 512) + (i % 3 == 1) * 0.3 * np.sin(2 * np.pi * rng.uniform(120, 300) * t)
              for i in range(count)]
    return {"input": np.asarray(chunks, np.float32), "state": np.zeros((2, count, 128), np.float32),
            "sr": np.array(16000, np.int64)}
