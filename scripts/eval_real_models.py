"""The tables of docs/accuracy.md "Other real networks": strum eval on PaddleOCR's three
networks (synthetic printed text, tests/text_images.py) and silero-vad (synthetic audio).

    python scripts/eval_real_models.py [--json DIR]
"""

import argparse
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from text_images import silero_feeds, text_lines, text_pages  # noqa: E402

from strum.quant import datasets  # noqa: E402
from strum.quant.evaluate import DEFAULT_SCHEMES, evaluate, format_table  # noqa: E402
from strum.quant.fetch import rapidocr_onnx, silero_vad_onnx  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default=None, metavar="DIR")
    args = parser.parse_args()
    lines, labels = text_lines(200, seed=1)
    feeds = silero_feeds(200)
    cases = [
        ("cls", datasets.ocr_cls_model_path(), lines, labels, text_lines(64, seed=2)[0], "text lines"),
        ("rec", rapidocr_onnx("rec"), text_lines(50, seed=3, width=320)[0], None,
         text_lines(32, seed=4, width=320)[0], "text lines"),
        ("det", rapidocr_onnx("det"), text_pages(50, seed=5, height=160, width=160), None,
         text_pages(16, seed=6, height=160, width=160), "text pages"),
        ("vad", silero_vad_onnx(variant="silero_vad_16k_op15"), feeds, None, feeds, "tones in noise"),
    ]
    for name, path, x, y, calibration, data in cases:
        report = evaluate(path, x, y, calibration, DEFAULT_SCHEMES, data_name=data)
        print(format_table(report), f"\n({report['seconds']:.0f} s)\n", flush=True)
        if args.json:
            Path(args.json).mkdir(parents=True, exist_ok=True)
            (Path(args.json) / f"{name}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
