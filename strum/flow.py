"""``strum flow``: the most complete pipeline that exists, on one model.

Steps: quantize every layer with the chosen config and with the int8 and int4
baselines beside it; on the default model, the accuracy of the chosen config and int8
with integer inference on the digits test split; the config's PE as Verilog, and its
co-simulation against the golden model on Verilator; one layer of the model through a
4 x 4 DPU, every output compared with the golden model; the area of the config's PE
beside the int8 PE of the same block size, and its energy per block (zero delay and
timed, on the largest layer's blocks) beside the int8 PE's. Each step writes its file into the output
folder and adds its figures to ``flow.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

from strum.quant.config import StrumConfig
from strum.quant.model import quantize_layers, report, save_npz, write_report
from strum.quant.onnx_io import load_layers
from strum.quant.progress import phase

BASELINES = ("int8", "int4")


def default_model() -> Path:
    from strum.quant.datasets import default_model_path
    return Path(default_model_path())


def _weighted_sqnr(data) -> float | None:
    """Weight-count-weighted mean of the per-layer SQNR (dB), skipping exact layers."""
    rows = [(layer["sqnr_db"], layer["weights"]) for layer in data["layers"] if layer["sqnr_db"] is not None]
    total = sum(weights for _, weights in rows)
    return sum(sqnr * weights for sqnr, weights in rows) / total if total else None


#: The steps of the flow, in order; ``quantize`` always runs.
STEPS = ("quantize", "accuracy", "pe", "layer", "area", "power")


def run(config: StrumConfig, out_dir: Path, model=None, steps=STEPS, calibration=None) -> dict:
    """Run ``steps`` on ``model``; ``calibration`` (a data spec: digits, mnist or an .npz)
    turns on output-aware quantization and bias correction of the weights and accuracy."""
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ValueError(f"steps must be among {', '.join(STEPS)}, not {', '.join(unknown)}")
    out_dir = Path(out_dir)
    model = Path(model) if model else default_model()
    skipped = []
    layers = load_layers(model, skipped=skipped)   # a bad model is refused before the folder exists
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"model": model.name, "config": config.to_dict(), "steps": {}}

    start = time.perf_counter()
    if calibration is not None:
        from strum.quant.calibrate import calibration_images, quantize_model
        quantized, _ = quantize_model(model, config, calibration_images(calibration))
        summary["calibration"] = {"data": str(calibration), "method": "oa"}
    else:
        quantized = quantize_layers(layers, config, short="int8")   # as quantize and eval
    data = report(quantized, config, time.perf_counter() - start, skipped=skipped)
    summary["not_quantized"] = data.get("not_quantized", [])
    save_npz(out_dir / "weights.npz", quantized)
    write_report(out_dir / "quantize.json", data)
    schemes = {config.scheme: data}
    for scheme in BASELINES:
        if scheme != config.scheme:
            baseline = config.replace(scheme=scheme)
            schemes[scheme] = report(quantize_layers(layers, baseline), baseline, 0.0)
    summary["steps"]["quantize"] = {
        scheme: {
            "weight_sqnr_db": _weighted_sqnr(data),
            "bits_per_weight": sum(l["bits_per_weight"] * l["weights"] for l in data["layers"])
            / sum(l["weights"] for l in data["layers"]),
        } for scheme, data in schemes.items()
    }
    if "accuracy" in steps:
        with phase("measuring accuracy with integer inference"):
            summary["steps"]["accuracy"] = _accuracy(config, model, out_dir,
                                                     "plain" if calibration is None else "oa")
    if "pe" in steps:
        with phase(f"generating the PE and co-simulating {FLOW_PE_BLOCKS:,} blocks"):
            summary["steps"]["pe"] = _pe(config, out_dir)
    if "layer" in steps:
        with phase(f"co-simulating the largest layer on a {FLOW_ARRAY[0]}x{FLOW_ARRAY[1]} DPU"):
            summary["steps"]["layer"] = _layer(config, model, layers, out_dir)
    if "area" in steps:
        with phase("synthesizing the PE beside the int8 PE"):
            summary["steps"]["area"] = _area(config, out_dir)
    if "power" in steps:
        with phase(f"estimating the energy of the PE beside the int8 PE ({FLOW_POWER_BLOCKS} "
                   f"zero-delay and {FLOW_POWER_TIMED_BLOCKS} timed blocks)"):
            summary["steps"]["power"] = _power(config, model, layers, out_dir)
    write_report(out_dir / "flow.json", summary)
    return summary


def _accuracy(config: StrumConfig, model: Path, out_dir: Path, method: str = "plain") -> dict:
    """Top-1 of the config and of int8 on the digits test split (default model only)."""
    from strum.quant.datasets import digits_calibration, digits_test
    from strum.quant.evaluate import evaluate

    if model.resolve() != default_model().resolve():
        return {"skipped": f"no evaluation data for {model.name}; run strum eval {model.name} "
                           f"--data DATA"}
    images, labels = digits_test()
    schemes = [config] + ([config.replace(scheme="int8")] if config.scheme != "int8" else [])
    data = evaluate(model, images, labels, digits_calibration()[0], schemes,
                    base=config, weights_only=False, data_name="digits", method=method)
    write_report(out_dir / "accuracy.json", data)
    return {
        "data": "digits",
        "images": data["images"],
        "float_top1": data["float_top1"],
        "schemes": {label: {key: row[key] for key in
                            ("top1", "top1_agreement", "output_sqnr_db", "bits_per_weight")}
                    for label, row in data["schemes"].items()},
    }


#: PE co-simulation of the flow: random golden blocks through the generated PE.
FLOW_PE_BLOCKS = 20_000
#: The DPU of the flow and the layer it runs (the largest of the model, by MACs).
FLOW_ARRAY = (4, 4)


def _pe(config: StrumConfig, out_dir: Path) -> dict:
    """The config's PE as Verilog (``pe/``) and its co-simulation on Verilator."""
    from strum.hw.export import write_design
    from strum.hw.pe import StrumPE
    from strum.quant.config import HARDWARE_SCHEMES
    from strum.sim.cosim import simulate_pe

    if config.scheme not in HARDWARE_SCHEMES:
        return {"skipped": f"scheme {config.scheme!r} has no PE"}
    pe = StrumPE(config=config)
    write_design(pe, "pe", out_dir / "pe", {"config": config.to_dict(), "kind": "pe",
                                             "variant": pe.variant, "latency": pe.latency})
    result = simulate_pe(config, vectors=FLOW_PE_BLOCKS, seed=0, pe=StrumPE(config=config))
    write_report(out_dir / "simulate_pe.json", result)
    return {key: result[key] for key in ("backend", "variant", "vectors", "results", "mismatches",
                                         "cycles", "seconds")}


def _layer(config: StrumConfig, model: Path, layers, out_dir: Path) -> dict:
    """The model's largest conv or linear layer through a 4 x 4 DPU on Verilator, with
    its real int8 input on the default model (a digits test image), random otherwise."""
    from strum.quant.config import HARDWARE_SCHEMES
    from strum.sim.layer import simulate_model_layers

    if config.scheme not in HARDWARE_SCHEMES:
        return {"skipped": f"scheme {config.scheme!r} has no PE"}
    largest = max(layers, key=lambda layer: layer.weight.size)
    data = "digits" if model.resolve() == default_model().resolve() else None
    rows, cols = FLOW_ARRAY
    (result,) = simulate_model_layers(model, largest.name, {"config": config, "rows": rows, "cols": cols},
                                      data=data, progress=False)
    write_report(out_dir / "simulate_layer.json", result)
    return dict(result, array=f"{rows}x{cols}")


def _area(config: StrumConfig, out_dir: Path) -> dict:
    """The config's PE beside the int8 PE of the same B: generic flow, and asic when the
    OSU 0.18 um library is installed. Each comparison goes to ``area_<flow>.json``."""
    from strum.quant.config import HARDWARE_SCHEMES
    from strum.synth.compare import compare
    from strum.synth.designs import Design
    from strum.synth.liberty import find_liberty
    from strum.synth.reports import METRICS
    from strum.synth.tools import ToolMissing

    if config.scheme not in HARDWARE_SCHEMES:
        return {"skipped": f"scheme {config.scheme!r} has no PE"}
    flows = ["generic"]
    try:
        find_liberty()
        flows.append("asic")
    except ToolMissing:
        pass
    steps = {}
    for flow in flows:
        try:
            result = compare(Design(config=config), flow)
        except ToolMissing as error:
            steps[flow] = {"skipped": str(error)}
            continue
        write_report(out_dir / f"area_{flow}.json", result)
        steps[flow] = {row["metric"]: {"int8": row["int8"], "pe": row["strum"],
                                       "reduction_pct": row["reduction_pct"]}
                       for row in result["rows"] if row["metric"] in METRICS}
    return steps


#: Energy of the flow: a short sample (``strum power compare`` for the settled figure).
FLOW_POWER_BLOCKS = 200
FLOW_POWER_TIMED_BLOCKS = 100


def _power(config: StrumConfig, model: Path, layers, out_dir: Path, *,
           blocks: int = FLOW_POWER_BLOCKS, timed_blocks: int = FLOW_POWER_TIMED_BLOCKS) -> dict:
    """The config's PE beside the int8 PE (array multipliers, the strongest int8 PE in
    energy) on the blocks PE (0, 0) of a 4 x 4 DPU sees running the model's largest
    layer: real inputs on the default model (digits images), random int8 inputs
    otherwise. Asic flow's netlist (OSU 0.18 um), Icarus for both runs; the report goes
    to ``power.json``. Skipped when the library or Icarus is missing."""
    import shutil

    from strum.power.run import DataSource, compare, write_report as write_power
    from strum.power.simulate import SimulationError
    from strum.quant.config import HARDWARE_SCHEMES
    from strum.synth.compare import int8_baseline
    from strum.synth.designs import Design
    from strum.synth.liberty import find_liberty
    from strum.synth.tools import ToolMissing

    if config.scheme not in HARDWARE_SCHEMES:
        return {"skipped": f"scheme {config.scheme!r} has no PE"}
    try:
        find_liberty()
    except ToolMissing as error:
        return {"skipped": str(error)}
    if shutil.which("iverilog") is None:
        return {"skipped": "needs Icarus Verilog (Debian package iverilog)"}
    largest = max(layers, key=lambda layer: layer.weight.size)
    default = model.resolve() == default_model().resolve()
    source = DataSource("layer", model=str(model), layer=largest.name,
                        data="digits" if default else None)
    design = Design(config=config)
    designs = [int8_baseline(design), design] if config.scheme != "int8" else [design]
    try:
        result = compare(designs, source, blocks=blocks, timed_blocks=timed_blocks, settle=False,
                         zero_delay_engine="icarus")
    except (ToolMissing, SimulationError) as error:
        return {"skipped": str(error)}
    write_power(result, out_dir / "power.json")
    entries = result["designs"]
    return {
        "layer": largest.name, "input": "real" if default else "random",
        "blocks": blocks, "timed_blocks": timed_blocks,
        "int8": {kind: entries[0][kind]["pj_per_block"] for kind in ("zero_delay", "timed")},
        "pe": {kind: entries[-1][kind]["pj_per_block"] for kind in ("zero_delay", "timed")},
        "reduction_pct": {kind: entries[-1][kind]["reduction_vs_first_pct"]
                          for kind in ("zero_delay", "timed")},
        "glitch_factor": entries[-1]["glitch_factor"]["all"],
    }
