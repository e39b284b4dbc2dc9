"""Sweeps: many designs through one flow, beside their int8 baselines, on any executor.

A sweep is a grid over scheme, B, H, G, variant, routing and array size
(:func:`grid`). Every design and the int8 design of each (B, array size) is
synthesized by :func:`~strum.synth.flows.synthesize` through a
``concurrent.futures.Executor``: local processes by default, or a Dask cluster's
executor (``distributed.Client.get_executor()``): the same code runs on both. Repeated
sweeps read the synthesis cache and finish at once.

The result is one row per design (:data:`ROW_FIELDS`) with its reduction against the
int8 design and the weight SQNR its config gives on a real model (pooled over all the
model's weights), written as CSV, and the area / accuracy front as a plot.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
from pathlib import Path

import numpy as np

from strum.quant.config import StrumConfig
from strum.quant.files import atomic_writer, write_text

from .compare import resolve_multiplier, int8_baseline, multiplier_candidates
from .designs import Design
from .flows import synthesize
from .reports import reduction_pct, rows_csv

__all__ = ["grid", "run_sweep", "weight_sqnr", "model_layers", "write_csv", "plot_front",
           "ROW_FIELDS", "MODELS", "main_metric"]

#: Columns of the sweep CSV, in order.
ROW_FIELDS = ("kind", "rows", "cols", "scheme", "block_size", "high_lanes", "group_size", "variant",
              "routing", "shared", "mask_share", "flow", "multiplier", "area_um2", "cells", "transistors", "luts", "ffs", "fmax_mhz",
              "int8_metric", "reduction_pct", "weight_sqnr_db", "bits_per_weight", "cached",
              "seconds")
#: Named models for the SQNR axis; any other value is a path to an ONNX/.npy/.npz file.
MODELS = ("mnist", "digits", "silero")


def main_metric(flow: str) -> str:
    """The size a flow measures best: transistors, area_um2 or luts."""
    return {"generic": "transistors", "asic": "area_um2"}.get(flow, "luts")


def grid(*, schemes=("dliq",), blocks=(16,), highs=(None,), groups=(None,), variants=(None,),
         routings=(None,), arrays=((1, 1),), rounding: str = "haz", acc_width: int = 32,
         adder_stages: int = 1, shareds=("none",), mask_shares=(1,)) -> tuple[list[Design], list[str]]:
    """All valid designs of a grid, and a note for each combination skipped.

    ``None`` in ``highs`` means B/2 and in ``groups`` means B; an array of (1, 1) is a
    PE, anything larger a DPU. A combination the config or the PE refuses (G not
    dividing B, a variant that does not fit the scheme, ...) is skipped with its reason.
    """
    designs, skipped = [], []
    for scheme, B, H, G, variant, routing, (rows, cols), shared, K in itertools.product(
            schemes, blocks, highs, groups, variants, routings, arrays, shareds, mask_shares):
        high = B // 2 if H is None else H
        if scheme == "int8":
            high, G, routing, shared, K = B, None, None, "none", 1
        try:
            config = StrumConfig(scheme=scheme, block_size=B, high_lanes=high, group_size=G,
                                 rounding=rounding, acc_width=acc_width, mask_share=K)
            kind = "pe" if (rows, cols) == (1, 1) else "dpu"
            design = Design(kind=kind, config=config, variant=variant, routing=routing,
                            adder_stages=adder_stages, rows=rows, cols=cols, shared=shared)
        except ValueError as error:
            skipped.append(f"{scheme} B={B} H={high} G={G} {variant or ''}: {error}")
            continue
        if design not in designs:
            designs.append(design)
    return designs, skipped


def model_layers(model: str):
    """The layers of a named model (:data:`MODELS`) or of a model file."""
    from strum.quant.onnx_io import load_layers

    if model == "mnist":
        from strum.quant.datasets import mnist_model_path
        return load_layers(mnist_model_path())
    if model == "digits":
        from strum.quant.datasets import default_model_path
        return load_layers(default_model_path())
    if model == "silero":
        from strum.quant.fetch import silero_vad_onnx
        return load_layers(silero_vad_onnx())
    return load_layers(Path(model))


def weight_sqnr(layers, config: StrumConfig) -> tuple[float, float]:
    """Weight SQNR (dB) pooled over every weight of ``layers``, and bits per weight."""
    from strum.quant.quantize import quantize, sqnr_db

    reference, approximation, bits, count = [], [], 0.0, 0
    for layer in layers:
        quantized = quantize(layer.weight, config, name=layer.name)
        reference.append(np.asarray(layer.weight, dtype=np.float64).ravel())
        approximation.append(np.asarray(quantized.dequantize(), dtype=np.float64).ravel())
        bits += quantized.bits_per_weight * layer.weight.size
        count += layer.weight.size
    return sqnr_db(np.concatenate(reference), np.concatenate(approximation)), bits / count


def _quiet_worker() -> None:
    """Worker processes leave Ctrl-C to the parent (no worker tracebacks); the parent
    stops them with SIGTERM, which also ends the tool they run."""
    import signal

    from .tools import stop_running_tools

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda number, frame: stop_running_tools(exit_code=143))


def _stop_workers(executor) -> None:
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, AttributeError):
            pass


def _synth_task(design: Design, flow: str, options: dict) -> dict:
    """One synthesis, run by a worker; returns the report without its long script."""
    report = synthesize(design, flow, **options)
    return {key: value for key, value in report.items() if key != "script"}


def run_sweep(designs: list[Design], flow: str, *, layers=None, executor=None, workers=None,
              progress: bool = True, multiplier: str | None = None, **options) -> dict:
    """Synthesize ``designs`` and their strongest int8 baselines; one row per design.

    The int8 design of each B and array size is built with array and (generic, asic)
    Booth multipliers; the smaller is the baseline, and the designs compared with it
    use the same multiplier kind (``multiplier``: see :func:`~strum.synth.compare.compare`).

    Parameters
    ----------
    designs : list of Design
        From :func:`grid`.
    flow : str
    layers : list or None
        A model's layers (:func:`model_layers`) for the SQNR column; None leaves it empty.
    executor : concurrent.futures.Executor or None
        Where the syntheses run, e.g. ``distributed.Client(...).get_executor()``.
        Default: a ``ProcessPoolExecutor`` of ``workers`` processes.
    progress : bool
        A tqdm progress bar on stderr.
    **options
        For :func:`~strum.synth.flows.synthesize` (liberty, seeds, flatten, booth, cache, ...).

    Returns
    -------
    dict
        ``{"rows": [...], "int4_sqnr_db": float or None, "int8_sqnr_db": float or None}``;
        rows have :data:`ROW_FIELDS` (int8 designs are rows too, with reduction 0).
    """
    from tqdm import tqdm

    metric = main_metric(flow)
    multiplier, options = resolve_multiplier(options, multiplier)
    candidates = multiplier_candidates(flow, multiplier)
    baselines = [int8_baseline(d) for d in designs]
    tasks = list(dict.fromkeys([*baselines, *designs]))        # unique, in order
    options = {"jobs": 1, **options}      # workers already run in parallel: one seed each
    from strum.quant.progress import interactive, phase

    own = executor is None
    if own:
        executor = concurrent.futures.ProcessPoolExecutor(max_workers=workers,
                                                          initializer=_quiet_worker)
    runs = {}                             # (design, booth) -> report
    try:
        def run_all(jobs, bar):
            futures = {executor.submit(_synth_task, design, flow, {**options, "booth": booth}):
                       (design, booth) for design, booth in jobs}
            for future in concurrent.futures.as_completed(futures):
                runs[futures[future]] = future.result()
                bar.update()

        unique_baselines = list(dict.fromkeys(baselines))
        others = [d for d in tasks if d not in unique_baselines]
        with phase(f"running the sweep's {len(unique_baselines) * len(candidates) + len(others)} "
                   f"syntheses ({flow} flow)"), \
                tqdm(total=len(unique_baselines) * len(candidates) + len(others),
                     desc=f"strum sweep ({flow})", unit="design",
                     disable=not (progress and interactive()), leave=False) as bar:
            run_all([(b, booth) for b in unique_baselines for booth in candidates], bar)
            booth_of = {b: min(candidates, key=lambda booth: (runs[b, booth][metric], booth))
                        for b in unique_baselines}
            run_all([(d, booth_of[int8_baseline(d)]) for d in others], bar)
    except BaseException:
        if own:             # Ctrl-C or a failure: stop the running syntheses, not wait for them
            _stop_workers(executor)
        raise
    finally:
        if own:
            executor.shutdown(cancel_futures=True)
    reports = {d: runs[d, booth_of[int8_baseline(d)]] for d in tasks}

    sqnr_cache = {}

    def sqnr_of(config):
        if layers is not None and config not in sqnr_cache:
            sqnr_cache[config] = weight_sqnr(layers, config)
        return sqnr_cache.get(config, (None, None))

    rows = []
    for design in tasks:
        report = reports[design]
        baseline = reports[int8_baseline(design)]
        sqnr, bits = sqnr_of(design.config)
        c = design.config
        resolved = report["design"]
        rows.append({
            "kind": design.kind, "rows": design.rows, "cols": design.cols, "scheme": c.scheme,
            "block_size": c.block_size, "high_lanes": c.high_lanes, "group_size": c.group_size,
            "variant": resolved["variant"], "routing": resolved["routing"],
            "shared": design.shared, "mask_share": c.mask_share, "flow": flow,
            "multiplier": "booth" if booth_of[int8_baseline(design)] else "array",
            **{key: report[key] for key in ("area_um2", "cells", "transistors", "luts", "ffs")},
            "fmax_mhz": report["fmax_mhz"]["median"] if report["fmax_mhz"] else None,
            "int8_metric": baseline[metric],
            "reduction_pct": reduction_pct(baseline[metric], report[metric]),
            "weight_sqnr_db": None if sqnr is None or not math.isfinite(sqnr) else round(sqnr, 3),
            "bits_per_weight": None if bits is None else round(bits, 4),
            "cached": report["cached"], "seconds": report["seconds"],
        })
    int4 = int8 = None
    if layers is not None:
        int4 = round(weight_sqnr(layers, StrumConfig(scheme="int4"))[0], 3)
        int8 = round(weight_sqnr(layers, StrumConfig(scheme="int8", high_lanes=16))[0], 3)
    return {"flow": flow, "metric": metric, "rows": rows, "int4_sqnr_db": int4, "int8_sqnr_db": int8}


def write_csv(path, result: dict) -> None:
    """The sweep's rows as CSV (written to a temp file, then renamed)."""
    write_text(path, rows_csv(result["rows"], result.get("fields", ROW_FIELDS)))


_SCHEME_STYLE = {"dliq": ("o", "tab:blue"), "mip2q": ("s", "tab:orange"), "zero": ("^", "tab:green"),
                 "int8": ("*", "black")}


def plot_front(path, result: dict, *, model: str = "", xlabel: str | None = None,
               title: str = "StruM area / accuracy front") -> None:
    """The area / accuracy front: reduction against the int8 design vs weight SQNR.

    One point per design; int8 is the star at 0 %, int4 per channel (no PE built for
    it) a dashed line at its SQNR. Needs the SQNR column (a sweep with a model).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in result["rows"] if row["weight_sqnr_db"] is not None
            and row["reduction_pct"] is not None]
    if not rows:
        raise ValueError("the sweep has no rows with both a reduction and a weight SQNR to plot "
                         "(give it a model)")
    figure, axes = plt.subplots(figsize=(7, 4.5), layout="constrained")
    seen = set()
    for row in rows:
        marker, color = _SCHEME_STYLE.get(row["scheme"], ("x", "gray"))
        label = row["scheme"] if row["scheme"] not in seen else None
        seen.add(row["scheme"])
        hollow = row["kind"] == "dpu" or row["variant"] == "dynamic"
        axes.scatter(row["reduction_pct"], row["weight_sqnr_db"], marker=marker,
                     s=120 if row["scheme"] == "int8" else 45, label=label,
                     facecolors="none" if hollow else color, edgecolors=color, zorder=3)
        if row["scheme"] != "int8":
            text = f"B{row['block_size']} G{row['group_size']}"
            if row["high_lanes"] != row["block_size"] // 2:
                text += f" H{row['high_lanes']}"
            if row["kind"] == "dpu":
                text += f" {row['rows']}x{row['cols']}"
            if row["variant"] == "dynamic":
                text += " dyn"
            if row.get("shared", "none") != "none":
                text += f" {row['shared']}" + (f" K{row['mask_share']}" if row["mask_share"] > 1 else "")
            axes.annotate(text, (row["reduction_pct"], row["weight_sqnr_db"]), fontsize=7,
                          xytext=(4, 3), textcoords="offset points")
    if result.get("int4_sqnr_db") is not None:
        axes.axhline(result["int4_sqnr_db"], color="gray", linestyle="--", linewidth=1,
                     label="int4 per channel (no PE)")
    axes.axvline(0, color="black", linewidth=0.5)
    axes.set_xlabel(xlabel or f"PE {result['metric']} reduction against the int8 PE, % ({result['flow']} flow)")
    axes.set_ylabel(f"weight SQNR, dB{' (' + model + ')' if model else ''}")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    suffix = Path(path).suffix.lstrip(".") or "png"
    with atomic_writer(path, "wb") as stream:
        figure.savefig(stream, format=suffix, dpi=150)
    plt.close(figure)
