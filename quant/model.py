"""Quantizing every layer of a model, and the files that result (OUT.npz, REPORT.json)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np

from .config import StrumConfig
from .files import atomic_writer, write_text
from .quantize import QuantizedTensor, quantize, short_config, sqnr_db

__all__ = ["QuantizedLayer", "quantize_layers", "save_npz", "report", "write_report",
           "coverage_warnings"]


@dataclass(frozen=True)
class QuantizedLayer:
    name: str
    weight: np.ndarray          # the float weight it came from
    quantized: QuantizedTensor

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(self.weight, self.quantized.dequantize())


def quantize_layers(layers, config: StrumConfig, short: str = "pad") -> list[QuantizedLayer]:
    """Quantize every layer (objects with ``name`` and ``weight``) with one config.

    ``short`` is the short-reduction policy (:data:`.quantize.SHORT_POLICIES`); with
    ``"int8"`` a layer StruM's blocks would store in more than 8 bits per weight is int8.
    """
    return [QuantizedLayer(layer.name, layer.weight,
                           quantize(layer.weight, short_config(config, layer.weight, short),
                                    name=layer.name))
            for layer in layers]


def save_npz(path, layers: list[QuantizedLayer]) -> None:
    """OUT.npz: ``NAME/w_int``, ``NAME/scale``, ``NAME/mask`` and ``NAME/packed`` per layer,
    and ``NAME/bias`` where calibration corrected the bias."""
    arrays = {}
    for layer in layers:
        q = layer.quantized
        arrays[f"{layer.name}/w_int"] = q.w_int
        arrays[f"{layer.name}/scale"] = q.scale
        arrays[f"{layer.name}/mask"] = q.mask
        if q.packed is not None:
            arrays[f"{layer.name}/packed"] = q.packed
        if q.bias is not None:
            arrays[f"{layer.name}/bias"] = q.bias      # corrected from calibration
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_writer(path, "wb") as stream:
        stream.write(buffer.getvalue())


def _finite(value: float):
    return value if math.isfinite(value) else None     # JSON has no Infinity


def report(layers: list[QuantizedLayer], config: StrumConfig, seconds: float,
           skipped: list | None = None) -> dict:
    """REPORT.json; ``skipped`` (from :func:`.onnx_io.load_layers`) adds ``not_quantized``:
    the model's weight-bearing nodes the quantizer does not handle."""
    def entry(layer):
        row = {"name": layer.name, "shape": list(layer.weight.shape),
               "weights": int(layer.weight.size), "sqnr_db": _finite(layer.sqnr_db),
               "bits_per_weight": layer.quantized.bits_per_weight}
        if layer.quantized.config.scheme != config.scheme:
            row["scheme"] = layer.quantized.config.scheme     # kept int8 (short reduction)
        if layer.quantized.notes:
            row["notes"] = list(layer.quantized.notes)
        return row

    extra = {"not_quantized": list(skipped)} if skipped else {}
    return {
        **extra,
        "scheme": config.scheme,
        "config": config.to_dict(),
        "layers": [entry(layer) for layer in layers],
        "seconds": seconds,
    }


def coverage_warnings(data: dict) -> list[str]:
    """One line per thing a quantization report says was not quantized as asked."""
    lines = []
    skipped = data.get("not_quantized", [])
    if skipped:
        shown = ", ".join(f"{item['name']!r} ({item['op']}"
                          f"{', ' + 'x'.join(map(str, item['shape'])) if item.get('shape') else ''})"
                          for item in skipped[:6])
        lines.append(f"{len(skipped)} weight-bearing node(s) not quantized (operator not "
                     f"supported): {shown}{', ...' if len(skipped) > 6 else ''}")
    for layer in data["layers"]:
        for note in layer.get("notes", []):
            lines.append(f"layer {layer['name']!r}: {note}")
    return lines


def write_report(path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")

