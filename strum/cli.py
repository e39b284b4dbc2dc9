"""The ``strum`` command line: parse, call the packages, print.

Every verb is a function ``_verb(args) -> int``. :func:`main` is the one place that
turns what can go wrong into what the user sees (``strum VERB: error: ...``, one line):
errors a user can fix (bad parameters, bad or damaged files, unwritable outputs) exit 2,
a failed check (a co-simulation mismatch) or a failed tool exits 1, Ctrl-C exits 130
saying what was interrupted, and no traceback is shown unless ``STRUM_DEBUG=1``.
Output options are declared with :func:`strum.outputs.add_output`: they are checked
before the verb starts and written only when it succeeds (see :mod:`strum.outputs`).
"""

from __future__ import annotations

import sys

try:                                # Ctrl-C while Python is still importing: no traceback
    import argparse
    import json
    import os
    import time
    from pathlib import Path

    from strum.outputs import add_output, final_path
    from strum.quant.config import BLOCK_SIZES, ROUNDINGS, SCHEMES, StrumConfig
except KeyboardInterrupt:
    sys.stderr.write("strum: interrupted while starting; nothing was written\n")
    sys.stderr.flush()
    import os
    os._exit(130)                   # not SystemExit: see the end of main()

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
#: ``simulate pe --vectors`` limit: the blocks are drawn at once (about 1 kB each).
MAX_PE_VECTORS = 2_000_000
#: Largest DPU side: a 256 x 256 array already takes hours to convert.
MAX_ARRAY_SIDE = 256


def _bounded(kind=int, low=None, high=None, name="an integer"):
    """An argparse ``type`` that refuses values outside [low, high] (or non-finite)."""
    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {name}, not {text!r}") from None
        if kind is float and not (value == value and abs(value) != float("inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, not {text}")
        return value
    parse.__name__ = name
    return parse


_positive = _bounded(int, 1, name="a positive integer")
_natural = _bounded(int, 0, name="a non-negative integer")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``strum VERB: error: ...`` and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# -- shared options --------------------------------------------------------------------

def _add_config_options(parser: argparse.ArgumentParser, schemes=SCHEMES) -> None:
    group = parser.add_argument_group("quantization config")
    group.add_argument("--scheme", default="dliq", choices=schemes,
                       help="low-lane form (StruM) or comparison scheme (default: dliq)")
    group.add_argument("--block", type=int, default=16, metavar="B",
                       help=f"block size B, one of {', '.join(map(str, BLOCK_SIZES))} (default: 16)")
    group.add_argument("--high", type=int, default=None, metavar="H",
                       help="high (int8) lanes per block (default: B/2)")
    group.add_argument("--group", type=int, default=None, metavar="G",
                       help="selection group size, a divisor of B (default: B)")
    group.add_argument("--rounding", default="haz", choices=ROUNDINGS,
                       help="haz: half away from zero; rne: half to even (default: haz)")
    group.add_argument("--acc-width", type=int, default=32, metavar="W",
                       help="accumulator width in bits (default: 32)")
    group.add_argument("--max-reduction", type=int, default=None, metavar="N",
                       help="longest reduction vector the accumulator must hold "
                            "(default: as long as W allows)")
    group.add_argument("--mask-share", type=int, default=1, metavar="K",
                       help="consecutive output channels sharing one mask (default: 1)")


def _config(args) -> StrumConfig:
    high = args.high if args.high is not None else args.block // 2
    return StrumConfig(scheme=args.scheme, block_size=args.block, high_lanes=high,
                       group_size=args.group, rounding=args.rounding,
                       acc_width=args.acc_width, max_reduction_length=args.max_reduction,
                       mask_share=args.mask_share)


def _add_calibration_options(parser: argparse.ArgumentParser, optional_data: bool = False) -> None:
    group = parser.add_argument_group("calibration (output-aware quantization, per-layer precision)")
    if optional_data:
        group.add_argument("--calibration", nargs="?", const="", default=None, metavar="DATA",
                           help="output-aware quantization and bias correction from calibration "
                                "images: digits, mnist or an .npz ('calibration' or 'images'; "
                                "without DATA: those of --data)")
    else:
        group.add_argument("--calibration", default=None, metavar="DATA",
                           help="output-aware quantization and bias correction from the "
                                "calibration images of DATA: digits, mnist or an .npz")
    group.add_argument("--keep-int8", default=None, metavar="LIST",
                       help="layers kept at H = B: first, last, depthwise and layer names, "
                            "comma-separated")
    budget = group
    budget.add_argument("--budget-bits", type=float, default=None, metavar="BITS",
                        help="per-layer H under this average of stored bits per weight")
    budget.add_argument("--budget-cycles", type=float, default=None, metavar="X",
                        help="per-layer H under X times the static PE's one-pass cycles "
                             "(with --budget-bits: both hold)")


def _policy(args):
    """The per-layer policy of the options, or None."""
    if args.keep_int8 is None and args.budget_bits is None and args.budget_cycles is None:
        return None
    from strum.quant.policy import Policy
    keep = tuple(item.strip() for item in (args.keep_int8 or "").split(",") if item.strip())
    return Policy(keep_int8=keep, budget_bits=args.budget_bits, budget_cycles=args.budget_cycles)


def _add_hardware_options(parser: argparse.ArgumentParser, array: bool = False) -> None:
    from strum.hw.router import ROUTINGS

    _add_config_options(parser, schemes=("dliq", "mip2q", "zero", "int8"))
    group = parser.add_argument_group("hardware")
    group.add_argument("--variant", choices=("static", "dynamic"), default=None,
                       help="StruM PE variant (default: static; scheme int8 builds the int8 PE)")
    group.add_argument("--adder-stages", type=_natural, default=1, metavar="N",
                       help="pipeline registers in the adder tree (default: 1)")
    group.add_argument("--routing", choices=ROUTINGS, default=None,
                       help="activation routing of the static PE (default: the PE's)")
    group.add_argument("--router-register", action="store_true",
                       help="a pipeline register between the routing and the lanes (latency + 1)")
    group.add_argument("--shared", choices=("none", "decode", "route"), default="none",
                       help="static PE: mask decoding (decode) or routing (route) done once per "
                            "DPU row / at the array edge, not in the PE (default: none)")
    if array:
        side = _bounded(int, 1, MAX_ARRAY_SIDE, name="a positive integer")
        group.add_argument("--rows", type=side, default=4, metavar="R", help="array rows (default: 4)")
        group.add_argument("--cols", type=side, default=4, metavar="C", help="array columns (default: 4)")
        group.add_argument("--depthwise-array", action="store_true",
                           help="one activation block per PE, not per column (activations="
                                "per_pe): depthwise and grouped layers fill every row; the "
                                "activation bus is R times as wide")


def _hardware(args) -> dict:
    """Keyword arguments of StrumPE / StrumDPU from the options."""
    options = {"config": _config(args), "variant": args.variant, "adder_stages": args.adder_stages}
    if args.routing is not None:
        options["routing"] = args.routing
    if getattr(args, "router_register", False):
        options["router_register"] = True
    if getattr(args, "shared", "none") != "none":
        options["shared"] = args.shared
    if hasattr(args, "rows"):
        options.update(rows=args.rows, cols=args.cols)
    if getattr(args, "depthwise_array", False):
        options["activations"] = "per_pe"
    return options


def _write_json(path, data) -> None:
    from strum.quant.model import write_report
    write_report(path, data)


# -- verbs -----------------------------------------------------------------------------

def _quantize(args) -> int:
    from strum.quant.model import quantize_layers, report, save_npz
    from strum.quant.onnx_io import load_layers

    from strum.quant.model import coverage_warnings

    config = _config(args)
    policy, policy_report = _policy(args), None
    skipped = []
    layers = load_layers(args.input, skipped=skipped)
    start = time.perf_counter()
    if args.calibration is not None or policy is not None:
        from strum.quant.calibrate import calibration_images, quantize_model

        if args.calibration is None:
            raise ValueError("--keep-int8 and the budgets need --calibration DATA")
        if Path(args.input).suffix.lower() != ".onnx":
            raise ValueError(f"--calibration needs an ONNX model to run, not {args.input}")
        quantized, calibrated = quantize_model(args.input, config,
                                               calibration_images(args.calibration),
                                               policy=policy)
        policy_report = calibrated["policy"]
    else:
        quantized = quantize_layers(layers, config, short=args.short)
    seconds = time.perf_counter() - start
    save_npz(args.output, quantized)
    unquantized = _warn_unquantized(args.input)
    listed = {name for _, name in unquantized}
    data = report(quantized, config, seconds,
                  skipped=[node for node in skipped if node["name"] not in listed])
    if args.calibration is not None:
        data["calibration"] = {"data": args.calibration, "method": "oa", "policy": policy_report}
        for layer in data["layers"]:
            layer["output_sqnr_db"] = calibrated["layer_output_sqnr_db"].get(layer["name"])
    if unquantized:
        data["unquantized_nodes"] = [{"op": op, "node": name} for op, name in unquantized]
    if args.report:
        _write_json(args.report, data)
    _print_layers(data)
    if policy_report is not None:
        _print_policy(policy_report)
    for line in coverage_warnings(data):     # never skipped silently
        print(f"strum quantize: warning: {line}", file=sys.stderr)
    return 0


def _add_short_option(parser) -> None:
    from strum.quant.quantize import SHORT_POLICIES

    parser.add_argument("--short", choices=SHORT_POLICIES, default="int8",
                        help="layers whose StruM blocks would cost more than 8 bits per weight "
                             "(reductions shorter than the block, e.g. depthwise 3x3 at B=16): "
                             "keep them int8, or pad them (default: int8)")


def _warn_unquantized(path) -> list:
    """List on stderr the nodes that may hold weights but are not quantized (run in float)."""
    from strum.quant.onnx_io import load_layers, unquantized_weight_nodes

    if not str(path).lower().endswith(".onnx"):
        return []
    import onnx

    nodes = unquantized_weight_nodes(onnx.load(str(path)), load_layers(path))
    for op, name in nodes:
        print(f"strum: note: {op} node {name!r} is not quantized (no constant weight operand, "
              f"or an operator StruM does not quantize); it runs in float", file=sys.stderr)
    return nodes


def _print_policy(policy) -> None:
    """Each layer's H, static-PE passes and the network's output SQNR with it alone at that H."""
    print(f"per-layer H: {policy['bits_per_weight']:.3f} bits/weight, static PE "
          f"{policy['static_cycles_vs_one_pass']:.2f}x the one-pass cycles")
    for layer in policy["layers"]:
        sqnr = layer["sensitivity_sqnr_db"].get(str(layer["high_lanes"]))
        alone = "" if sqnr is None else f"  output SQNR {sqnr:.2f} dB (alone)"
        print(f"  {layer['name'][:40]:40s} H={layer['high_lanes']:<3d} passes={layer['passes']}{alone}")


def _print_layers(data) -> None:
    output = any("output_sqnr_db" in layer for layer in data["layers"])
    print(f"{'layer':40s} {'shape':>18s} {'SQNR dB':>8s} {'bits/w':>7s}"
          + (f" {'output SQNR dB (calibration)':>30s}" if output else ""))
    for layer in data["layers"]:
        sqnr = "inf" if layer["sqnr_db"] is None else f"{layer['sqnr_db']:.2f}"
        extra = ""
        if output:
            value = layer.get("output_sqnr_db")
            extra = f" {'-' if value is None else f'{value:.2f}':>30s}"
        print(f"{layer['name'][:40]:40s} {'x'.join(map(str, layer['shape'])):>18s} "
              f"{sqnr:>8s} {layer['bits_per_weight']:7.3f}{extra}")


def _inspect(args) -> int:
    import numpy as np

    from strum.quant.errors import InputError
    from strum.quant.image import MAX_IMAGE_BYTES, ImageError, image_to_weights
    from strum.quant.npz import MAX_NPZ_BYTES, read_npz

    path = Path(args.file)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file (expected an image file or an .npz)")
    with open(path, "rb") as stream:
        zipped = stream.read(4).startswith((b"PK\x03\x04", b"PK\x05\x06"))
    limit = MAX_NPZ_BYTES if path.suffix == ".npz" or zipped else MAX_IMAGE_BYTES
    if path.stat().st_size > limit:
        raise InputError(f"{path}: {path.stat().st_size:,} bytes, more than the "
                         f"{limit:,} strum reads")

    def check(name, image, w_int=None, mask=None):
        try:
            config, decoded, decoded_mask = image_to_weights(image)
        except ImageError as error:
            raise InputError(f"{path}: {name}: {error}") from None
        if w_int is not None and not (np.array_equal(decoded, w_int) and mask is not None
                                      and np.array_equal(decoded_mask, mask)):
            raise InputError(f"{path}: the memory image of {name} does not decode to its w_int/mask")
        print(f"{name}: {config.scheme} B={config.block_size} H={config.high_lanes} "
              f"G={config.group_size} shape={'x'.join(map(str, decoded.shape))} ok")

    if path.suffix == ".npz" or zipped:
        archive = read_npz(path)
        names = sorted(key[:-len("/packed")] for key in archive if key.endswith("/packed"))
        if not names:
            raise InputError(f"{path}: holds no NAME/packed memory image")
        for name in names:
            check(f"layer {name}", archive[f"{name}/packed"], archive.get(f"{name}/w_int"),
                  archive.get(f"{name}/mask"))
    else:
        try:
            check(path.name, path.read_bytes())
        except InputError as error:     # the file is the layer: say it once
            raise InputError(str(error).replace(f"{path}: {path.name}: ", f"{path}: ")) from None
    return 0


def _generate(args) -> int:
    from strum.hw.export import write_design

    options = _hardware(args)
    if args.kind == "pe":
        from strum.hw.pe import StrumPE
        component = StrumPE(**options)
    else:
        from strum.hw.dpu import StrumDPU
        from strum.quant.progress import phase
        with phase(f"building a {args.rows}x{args.cols} DPU of {args.rows * args.cols} PEs"):
            component = StrumDPU(**options)
    described = {"config": options["config"].to_dict(), "kind": args.kind,
                 "variant": component.variant, "adder_stages": args.adder_stages,
                 "latency": component.latency, "shared": args.shared}
    if args.kind == "dpu":
        described.update(rows=args.rows, cols=args.cols, activations=component.activations)
    paths = write_design(component, args.kind, Path(args.output), described)
    for path in paths.values():
        print(Path(final_path(args, "output")) / Path(path).relative_to(args.output))
    return 0


def _print_mismatch(report) -> None:
    bad = report.get("first_mismatch")
    if bad is None:
        return
    print(f"first mismatch: {json.dumps({k: v for k, v in bad.items() if k != 'blocks'})}",
          file=sys.stderr)
    for block in bad.get("blocks", []):
        print(f"  {json.dumps(block)}", file=sys.stderr)


def _simulate(args) -> int:
    if args.kind == "pe":
        from strum.hw.pe import StrumPE
        from strum.sim.cosim import simulate_pe

        options = _hardware(args)
        pe = StrumPE(**options)
        report = simulate_pe(options["config"], vectors=args.vectors, seed=args.seed,
                             backend=args.backend, vcd=args.vcd, backpressure=args.backpressure, pe=pe)
        print(f"{report['backend']}: {report['vectors']} blocks, {report['results']} results, "
              f"{report['mismatches']} mismatches, {report['cycles']} cycles, {report['seconds']:.1f} s")
        reports = [report]
    else:
        from strum.sim.layer import simulate_model_layers

        options = _hardware(args)
        quantized = None
        if args.calibration is not None:
            from strum.quant.calibrate import calibration_images, quantize_model
            layers, _ = quantize_model(args.model, options["config"],
                                       calibration_images(args.calibration))
            quantized = {layer.name: layer.quantized for layer in layers}
        reports = simulate_model_layers(args.model, args.layer, options, backend=args.backend,
                                        seed=args.seed, data=args.data, batch=args.batch,
                                        backpressure=args.backpressure, vcd=args.vcd,
                                        short=args.short, quantized=quantized)
        for report in reports:
            print(f"{report['layer']}: {report['macs']} MACs, {report['outputs']} outputs, "
                  f"{report['mismatches']} mismatches, {report['cycles']} cycles, "
                  f"utilization {report['utilization']:.2f} (array {report['array_utilization']:.2f}"
                  f" x lanes {report['lane_utilization']:.2f}), {report['seconds']:.1f} s")
    if args.report:
        _write_json(args.report, reports[0] if args.kind == "pe" or args.layer != "all" else reports)
    for report in reports:
        _print_mismatch(report)
    return 1 if any(report["mismatches"] for report in reports) else 0


def _flow(args) -> int:
    from strum import flow

    config = _config(args)
    skip = set(_comma_list(args.skip)) if args.skip else set()
    if skip - set(flow.STEPS[1:]):
        raise ValueError(f"--skip: steps are among {', '.join(flow.STEPS[1:])}, not "
                         f"{', '.join(sorted(skip - set(flow.STEPS[1:])))}")
    summary = flow.run(config, Path(args.output), model=args.model,
                       steps=tuple(step for step in flow.STEPS if step not in skip),
                       **({"calibration": args.calibration} if args.calibration else {}))
    _print_flow(summary, Path(final_path(args, "output")))
    return 1 if any(summary["steps"].get(step, {}).get("mismatches") for step in ("pe", "layer")) else 0


def _print_flow(summary, out_dir: Path) -> None:
    steps = summary["steps"]
    print(f"strum flow: {summary['model']}, {summary['config']['scheme']} B={summary['config']['block_size']} "
          f"H={summary['config']['high_lanes']} G={summary['config']['group_size']} -> {out_dir}/")
    for scheme, row in steps["quantize"].items():
        print(f"  weights   {scheme:8s} SQNR {row['weight_sqnr_db']:6.2f} dB  {row['bits_per_weight']:.2f} bits/weight")
    accuracy = steps.get("accuracy", {})
    for label, row in accuracy.get("schemes", {}).items():
        print(f"  accuracy  {label:8s} top-1 {100 * row['top1']:6.2f}%  output SQNR "
              f"{row['output_sqnr_db']:6.2f} dB  ({accuracy['data']}, float {100 * accuracy['float_top1']:.2f}%)")
    for step in ("pe", "layer"):
        row = steps.get(step, {})
        if "skipped" in row:
            print(f"  {step:9s} skipped: {row['skipped']}")
        elif row:
            what = (f"{row['vectors']} blocks" if step == "pe"
                    else f"{row['layer']} on {row['array']}, {row['macs']} MACs, {row['input']} input")
            print(f"  {step:9s} {what}: {row['mismatches']} mismatches in {row['cycles']} cycles")
    area = steps.get("area", {})
    if "skipped" in area:               # a scheme without a PE skips the whole step
        print(f"  area      skipped: {area['skipped']}")
        area = {}
    for flow_name, metrics in area.items():
        if "skipped" in metrics:
            print(f"  area      {flow_name}: skipped: {metrics['skipped']}")
            continue
        for metric, row in metrics.items():
            print(f"  area      {flow_name:7s} {metric:12s} int8 {row['int8']:>10} PE {row['pe']:>10} "
                  f"({-row['reduction_pct']:+.1f}% vs int8)")
    power = steps.get("power", {})
    if "skipped" in power:
        print(f"  energy    skipped: {power['skipped']}")
    elif power:
        for kind, label in (("zero_delay", "zero delay"), ("timed", "timed")):
            print(f"  energy    {label:10s} pJ/block int8 {power['int8'][kind]:8.1f} PE "
                  f"{power['pe'][kind]:8.1f} ({-power['reduction_pct'][kind]:+.1f}% vs int8; "
                  f"{power['blocks'] if kind == 'zero_delay' else power['timed_blocks']} blocks of "
                  f"{power['layer']}, {power['input']} input)")


def _numbers(text: str, what: str, convert=float) -> tuple:
    try:
        return tuple(convert(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, not {text!r}") from None


def _eval(args) -> int:
    from strum.quant.evaluate import evaluate, format_table, load_data, plot_report
    from strum.quant.inference import Network
    from strum.quant.user_data import Preprocess

    schemes = [spec for item in args.schemes for spec in item.split(",") if spec]
    if args.data == "speech":
        return _eval_speech(args, schemes)
    network = Network(args.model)
    size = _numbers(args.size, "--size", int) if args.size else None
    preprocess = Preprocess(size=(size * 2)[:2] if size else None,
                            mean=_numbers(args.mean, "--mean"), std=_numbers(args.std, "--std"),
                            layout=args.layout, color=args.color)
    data = load_data(args.data, preprocess, list(network.inputs))
    _warn_unquantized(args.model)
    base = StrumConfig(rounding=args.rounding, acc_width=args.acc_width)
    calibration = data.calibration
    if args.calibration:
        from strum.quant.calibrate import calibration_images
        calibration = calibration_images(args.calibration)
        data = type(data)(data.name, data.images, data.labels, calibration,
                          f"{args.calibration}'s calibration images")
    report = evaluate(network, data.images, data.labels, calibration, schemes,
                      base=base, percentile=args.percentile,
                      weights_only=not args.no_weights_only, data_name=data.name,
                      short=args.short,
                      method="oa" if args.calibration is not None else "plain",
                      policy=_policy(args))
    report["calibration_source"] = data.calibration_source
    if args.report:
        _write_json(args.report, report)
    if args.plot:
        plot_report(report, args.plot)
    print(format_table(report))
    return 0



def _eval_speech(args, schemes) -> int:
    """``strum eval silero --data speech``: the VAD task of :mod:`strum.quant.speech`."""
    from strum.quant.speech import evaluate_vad, format_vad_table

    model = args.model
    if model == "silero":
        from strum.quant.fetch import silero_vad_onnx
        model = silero_vad_onnx(variant="silero_vad_16k_op15")
    if args.calibration:
        raise ValueError("--data speech calibrates on its own held-out streams: give "
                         "--calibration without DATA")
    base = StrumConfig(rounding=args.rounding, acc_width=args.acc_width)
    report = evaluate_vad(model, schemes, base=base,
                          method="oa" if args.calibration is not None else "plain",
                          policy=_policy(args))
    if args.report:
        _write_json(args.report, report)
    print(format_vad_table(report))
    return 0


def _add_synth_options(parser: argparse.ArgumentParser) -> None:
    from strum.synth.flows import DEFAULT_SEEDS, DEFAULT_TARGET_MHZ, FLOWS

    group = parser.add_argument_group("synthesis")
    group.add_argument("--flow", choices=FLOWS, default="generic",
                       help="generic: cells, transistors; asic: um^2 on a Liberty library; "
                            "ice40/ecp5: LUTs and Fmax (default: generic)")
    group.add_argument("--liberty", default=None, metavar="FILE",
                       help="Liberty library of the asic flow (default: OSU 0.18 um from the "
                            "Debian package qflow-tech-osu018)")
    group.add_argument("--seeds", type=_bounded(int, 1, 100, name="a positive integer"),
                       default=DEFAULT_SEEDS, metavar="N",
                       help=f"nextpnr seeds of the FPGA flows (default: {DEFAULT_SEEDS})")
    group.add_argument("--target-mhz", type=_bounded(float, 1e-3, 1e4, name="a number"),
                       default=DEFAULT_TARGET_MHZ, metavar="F",
                       help=f"nextpnr target clock (default: {DEFAULT_TARGET_MHZ})")
    group.add_argument("--flatten", action="store_true",
                       help="optimise across the hierarchy (no breakdown by part)")
    group.add_argument("--booth", action="store_true",
                       help="Booth multipliers (generic, asic); same as --multiplier booth")
    group.add_argument("--multiplier", choices=("best", "array", "booth"), default="best",
                       help="compare, sweep: the int8 baseline's multipliers, used by the StruM "
                            "design too; best: the smaller int8 design (default: best)")
    group.add_argument("--no-cache", action="store_true", help="synthesize even if cached")


def _synth_options(args) -> dict:
    return {"liberty": args.liberty, "seeds": args.seeds, "target_mhz": args.target_mhz,
            "flatten": args.flatten, "booth": args.booth or args.multiplier == "booth",
            "cache": not args.no_cache}


def _comparison_options(args) -> dict:
    """compare and sweep: the multiplier kind instead of a fixed booth flag."""
    options = _synth_options(args)
    del options["booth"]
    return dict(options, multiplier="booth" if args.booth else args.multiplier)


def _synth(args) -> int:
    from strum.synth.compare import comparison_table, compare
    from strum.synth.designs import Design
    from strum.synth.reports import breakdown_markdown
    from strum.synth.flows import synthesize
    from strum.synth.tools import SynthError
    from strum.quant.files import write_text

    data_out = getattr(args, "format", "markdown") != "markdown" or getattr(args, "board", None)
    if data_out and not getattr(args, "_data_stdout", False):
        from strum.quant.progress import to_stderr
        args._data_stdout = True        # stdout carries the JSON/CSV table: progress to stderr
        with to_stderr():
            return _synth(args)
    options = _hardware(args)
    design = Design(kind="dpu" if args.kind == "dpu" else "pe", config=options["config"],
                    variant=args.variant, adder_stages=args.adder_stages, routing=args.routing,
                    rows=getattr(args, "rows", 1), cols=getattr(args, "cols", 1),
                    router_register=args.router_register, shared=args.shared,
                    activations=options.get("activations", "per_column"))
    try:
        if getattr(args, "board", None):
            from strum.synth.boards import build_board
            summary = build_board(design, args.board, Path(args.output), seed=args.seeds)
            # Built in a staging folder (strum.outputs): record the path it will have.
            summary["bitstream"] = str(Path(final_path(args, "output")) / Path(summary["bitstream"]).name)
            write_text(Path(args.output) / "board.json", json.dumps(summary, indent=1) + "\n")
            print(json.dumps({key: summary[key] for key in ("board", "device", "bitstream",
                                                             "fmax_mhz", "utilization")}, indent=1))
            return 0
        if args.kind == "compare":
            result = compare(design, args.flow, **_comparison_options(args))
            if args.report:
                _write_json(args.report, result)
            text = comparison_table(result, args.format)
            if args.output:
                write_text(args.output, text)
            print(text, end="")
            return 0
        report = synthesize(design, args.flow, **_synth_options(args))
    except SynthError:
        raise                           # main() reports it: exit 2 for bad input, 1 if a tool failed
    if args.report:
        _write_json(args.report, report)
    print(breakdown_markdown(report), end="")
    return 0


def _comma_list(text, convert=str):
    if text is None:
        return [None]
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    try:
        return [None if item == "default" else convert(item) for item in items]
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of {convert.__name__}") from None


def _array_size(text: str) -> tuple[int, int]:
    rows, _, cols = text.lower().partition("x")
    if not (rows.isdigit() and cols.isdigit()) or not (
            0 < int(rows) <= MAX_ARRAY_SIDE and 0 < int(cols) <= MAX_ARRAY_SIDE):
        raise ValueError(f"--array: an array size must be RxC with 1 <= R, C <= "
                         f"{MAX_ARRAY_SIDE}, like 4x4, not {text!r}")
    return int(rows), int(cols)


def _sweep(args) -> int:
    from strum.synth.sweep import grid, model_layers, plot_front, run_sweep, write_csv
    from strum.synth.tools import SynthError

    designs, skipped = grid(
        schemes=_comma_list(args.scheme), blocks=_comma_list(args.block, int),
        highs=_comma_list(args.high, int), groups=_comma_list(args.group, int),
        variants=_comma_list(args.variant), routings=_comma_list(args.routing),
        arrays=[_array_size(a) for a in _comma_list(args.array)], rounding=args.rounding,
        acc_width=args.acc_width, adder_stages=args.adder_stages,
        shareds=_comma_list(args.shared), mask_shares=_comma_list(args.mask_share, int))
    if not designs:
        raise ValueError(f"the sweep's grid holds no valid design"
                         f"{f' (first: {skipped[0]})' if skipped else ''}")
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    layers = None if args.model == "none" else model_layers(args.model)
    client = executor = None
    try:
        if args.dask:
            from distributed import Client, LocalCluster
            client = (Client(LocalCluster(n_workers=args.workers or 2, threads_per_worker=1))
                      if args.dask == "local" else Client(args.dask))
            executor = client.get_executor()
        result = run_sweep(designs, args.flow, layers=layers, executor=executor,
                           workers=args.workers, progress=not args.no_progress,
                           **_comparison_options(args))
    except SynthError:
        raise                           # main() reports it: exit 2 for bad input, 1 if a tool failed
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None and args.dask == "local":
                cluster.close()
    if args.power:
        _sweep_power(args, designs, result)
    elif args.power_plot or args.power_model or args.power_layer:
        raise ValueError("--power-plot, --power-model and --power-layer need --power")
    write_csv(args.csv, result)
    if args.plot:
        plot_front(args.plot, result, model=args.model)
    if args.power_plot:
        from strum.power.sweep import plot_energy_front
        plot_energy_front(args.power_plot, result, model=args.model)
    for row in result["rows"]:
        print(f"{row['kind']} {row['scheme']} B={row['block_size']} H={row['high_lanes']} "
              f"G={row['group_size']} {row['variant']}: {result['metric']} "
              f"{row[result['metric']]} ({row['reduction_pct']}% vs int8), "
              f"weight SQNR {row['weight_sqnr_db']} dB"
              + (f", energy {row['energy_zero_delay_pj']} pJ/block zero delay "
                 f"({row['energy_zero_delay_reduction_pct']}%), {row['energy_timed_pj']} timed "
                 f"({row['energy_timed_reduction_pct']}%)"
                 if row.get("energy_zero_delay_pj") is not None else ""))
    return 0


def _sweep_power(args, designs, result) -> None:
    """``strum sweep --power``: energy columns on the PE rows (:mod:`strum.power.sweep`)."""
    from strum.power.cli import packaged_model
    from strum.power.run import DataSource
    from strum.power.sweep import add_power_columns
    from strum.quant.progress import phase

    if (args.power_model is None) != (args.power_layer is None):
        raise ValueError("--power-model and --power-layer go together")
    if args.power_model is None:
        source = DataSource("random", seed=args.power_seed)
    else:
        source = DataSource("layer", seed=args.power_seed, model=str(packaged_model(args.power_model)),
                            layer=args.power_layer, data=args.power_data)
    if not any(d.kind == "pe" for d in designs):
        raise ValueError("--power: the sweep has no PE (1x1) design; energy is measured per PE")
    with phase(f"measuring the energy of {sum(d.kind == 'pe' for d in designs)} PE(s), "
               f"{args.power_blocks} + {args.power_timed_blocks} timed blocks"):
        add_power_columns(result, designs, source, blocks=args.power_blocks,
                          timed_blocks=args.power_timed_blocks, liberty=args.liberty)

def _prove(args) -> int:
    from strum.formal.prove import prove_pe
    from strum.hw.pe import StrumPE

    options = _hardware(args)
    pe = StrumPE(**options)
    verilog, interface_json = None, None
    if args.verilog:
        verilog = Path(args.verilog).read_text()
        beside = Path(args.verilog).with_name("interface.json")
        interface_json = args.interface or (beside if beside.exists() else None)
    from strum.formal.tools import ProofToolError, ProofToolMissing

    parts = _comma_list(args.parts) if args.parts else None
    try:
        report = prove_pe(pe, verilog=verilog, interface_json=interface_json, parts=parts)
    except (ProofToolError, ProofToolMissing) as error:
        print(f"strum prove: error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, ProofToolMissing) else 1
    for part in report.parts:
        print(f"{part.part:6s} {part.status:8s} {part.cpu_seconds:6.1f} s CPU  {part.detail}")
    if args.report:
        _write_json(args.report, report.to_dict())
    failed = [part for part in report.parts if part.status != "proven"]
    for part in failed:
        if part.counterexample is not None:
            print(f"counterexample ({part.part}):", file=sys.stderr)
            for key, value in part.counterexample.items():
                if isinstance(value, list) and value and isinstance(value[0], dict):
                    print(f"  {key}:", file=sys.stderr)
                    for item in value:
                        print(f"    {json.dumps(item)}", file=sys.stderr)
                else:
                    print(f"  {key}: {json.dumps(value)}", file=sys.stderr)
    print("proven: the PE equals the specification for every input" if not failed else
          f"NOT proven: {', '.join(part.part for part in failed)}")
    return 1 if failed else 0


# -- parser ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from strum import __version__

    parser = _Parser(
        prog="strum", description="StruM structured mixed-precision: quantizer, hardware, "
                                  "co-simulation and synthesis")
    parser.add_argument("--version", action="version", version=f"strum {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    flow = verbs.add_parser("flow", help="run the whole pipeline on a model (default: the "
                                         "embedded digits CNN)")
    flow.add_argument("--model", default=None, help="ONNX model (default: embedded digits CNN)")
    add_output(flow, "-o", "--output", kind="folder", default="strum-flow",
               help="output folder (default: strum-flow)")
    _add_config_options(flow)
    flow.add_argument("--calibration", default=None, metavar="DATA",
                      help="output-aware quantization from DATA's calibration images "
                           "(digits, mnist or an .npz)")
    flow.add_argument("--skip", default=None, metavar="STEP,...",
                      help="steps to leave out: accuracy, pe, layer, area, power")
    flow.set_defaults(run=_flow)

    quantize = verbs.add_parser("quantize", help="quantize a model's weights")
    quantize.add_argument("input", help="ONNX model, .npy tensor or .npz of tensors")
    add_output(quantize, "-o", "--output", required=True, help="OUT.npz")
    add_output(quantize, "--report", help="REPORT.json")
    _add_config_options(quantize)
    _add_short_option(quantize)
    _add_calibration_options(quantize)
    quantize.set_defaults(run=_quantize)

    inspect = verbs.add_parser("inspect", help="verify and describe memory images (an image "
                                               "file, or the OUT.npz of strum quantize)")
    inspect.add_argument("file")
    inspect.set_defaults(run=_inspect)

    generate = verbs.add_parser("generate", help="write the Verilog of a PE or a DPU")
    kinds = generate.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=_Parser)
    for kind, text in (("pe", "one processing element"), ("dpu", "an R x C array of PEs")):
        sub = kinds.add_parser(kind, help=text)
        _add_hardware_options(sub, array=kind == "dpu")
        add_output(sub, "-o", "--output", kind="folder", required=True, metavar="DIR",
                   help=f"writes DIR/strum_{kind}.v, DIR/interface.json, DIR/config.json")
        sub.set_defaults(run=_generate)

    simulate = verbs.add_parser("simulate", help="co-simulate the RTL against the golden model")
    kinds = simulate.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=_Parser)
    pe = kinds.add_parser("pe", help="random blocks through one PE")
    _add_hardware_options(pe)
    pe.add_argument("--vectors", type=_bounded(int, 1, MAX_PE_VECTORS, name="a positive integer"),
                    default=10000, metavar="N",
                    help=f"blocks (default: 10000, at most {MAX_PE_VECTORS:,})")
    layer = kinds.add_parser("layer", help="whole layers of an ONNX model through a DPU")
    layer.add_argument("model", help="ONNX model")
    layer.add_argument("--layer", required=True, metavar="NAME", help="a layer name, or all")
    layer.add_argument("--data", default=None,
                       help="real inputs: digits, mnist or an .npz of images (default: random int8)")
    layer.add_argument("--batch", type=_positive, default=1, metavar="N",
                       help="images (or random inputs) per layer (default: 1)")
    _add_short_option(layer)
    layer.add_argument("--calibration", default=None, metavar="DATA",
                       help="co-simulate output-aware weights calibrated on DATA (digits, "
                            "mnist or an .npz)")
    _add_hardware_options(layer, array=True)
    for sub in (pe, layer):
        sub.add_argument("--backend", choices=("amaranth", "verilator"), default="verilator")
        sub.add_argument("--seed", type=_natural, default=0)
        sub.add_argument("--backpressure", action="store_true",
                         help="random valid gaps and ready drops on both streams, from the seed")
        add_output(sub, "--vcd", default=None, metavar="FILE", help="write a waveform")
        add_output(sub, "--report", default=None, metavar="R.json")
        sub.set_defaults(run=_simulate)

    prove = verbs.add_parser("prove", help="prove the PE equal to the specification for every input")
    kinds = prove.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=_Parser)
    prove_pe = kinds.add_parser("pe", help="one processing element (route, lanes, sum, hold)")
    _add_hardware_options(prove_pe)
    prove_pe.add_argument("--verilog", default=None, metavar="FILE",
                          help="prove this Verilog (top strum_pe, the generated lane instances) "
                               "instead of the generated one")
    prove_pe.add_argument("--interface", default=None, metavar="JSON",
                          help="its interface.json (default: the one beside FILE, if any)")
    prove_pe.add_argument("--parts", default=None, metavar="P,...",
                          help="route, lanes, sum, hold, and edge with --shared (default: all)")
    add_output(prove_pe, "--report", default=None, metavar="R.json")
    prove_pe.set_defaults(run=_prove)

    from strum.quant.evaluate import DEFAULT_SCHEMES
    evaluate = verbs.add_parser("eval", help="accuracy of a model under every scheme, with "
                                             "integer inference as the hardware computes")
    evaluate.add_argument("model", help="ONNX model ('silero': silero-vad 6.2.3, 16 kHz)")
    evaluate.add_argument("--data", required=True,
                          help="'digits', 'mnist', an .npz (images or one array per model "
                               "input, optional labels and calibration), a folder of images "
                               "by class (ImageFolder), a folder of images, a folder of "
                               ".npy inputs, or 'speech' (silero-vad on espeak-ng speech in "
                               "noise, weights only)")
    prep = evaluate.add_argument_group("image folders")
    prep.add_argument("--size", default=None, metavar="H,W", help="resize to H,W (or one side)")
    prep.add_argument("--mean", default="0", metavar="M[,M,M]",
                      help="per-channel mean on the [0, 1] scale (default: 0)")
    prep.add_argument("--std", default="1", metavar="S[,S,S]",
                      help="per-channel std on the [0, 1] scale (default: 1)")
    prep.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW")
    prep.add_argument("--color", choices=("rgb", "grey"), default="rgb")
    _add_short_option(evaluate)
    evaluate.add_argument("--schemes", nargs="+", default=list(DEFAULT_SCHEMES), metavar="SPEC",
                          help="scheme specs like int8, 2:4, dliq:h8, mip2q:h4:g4; a suffix "
                               "+oa (output-aware), +bc (bias correction) or +policy (per-layer "
                               "H) calibrates one scheme "
                               f"(default: {' '.join(DEFAULT_SCHEMES)})")
    add_output(evaluate, "--report", help="R.json")
    add_output(evaluate, "--plot", help="P.png: top-1 and output SQNR against bits per weight")
    evaluate.add_argument("--rounding", default="haz", choices=ROUNDINGS,
                          help="weight and activation rounding (default: haz)")
    evaluate.add_argument("--acc-width", type=int, default=32, metavar="W",
                          help="accumulator width in bits (default: 32)")
    evaluate.add_argument("--percentile", type=_bounded(float, 0.0, 100.0, name="a number"),
                          default=None, metavar="P",
                          help="calibrate activations to this percentile of |x| (default: max)")
    evaluate.add_argument("--no-weights-only", action="store_true",
                          help="skip the weights-only onnxruntime runs")
    _add_calibration_options(evaluate, optional_data=True)
    evaluate.set_defaults(run=_eval)

    synth = verbs.add_parser("synth", help="area, cells, LUTs and Fmax of a PE or a DPU "
                                           "(Yosys, nextpnr)")
    kinds = synth.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=_Parser)
    for kind, text in (("pe", "one processing element"), ("dpu", "an R x C array of PEs"),
                       ("compare", "a StruM PE beside the int8 PE of the same B")):
        sub = kinds.add_parser(kind, help=text)
        _add_hardware_options(sub, array=kind == "dpu")
        _add_synth_options(sub)
        add_output(sub, "--report", default=None, metavar="R.json", help="the full report")
        if kind != "compare":
            from strum.synth.boards import BOARDS
            sub.add_argument("--board", choices=sorted(BOARDS), default=None,
                             help="instead of a flow: build for this board, through to a bitstream")
            add_output(sub, "-o", "--output", kind="folder", default="strum-board", metavar="DIR",
                       help="the board build's folder (default: strum-board)")
        if kind == "compare":
            sub.add_argument("--format", choices=("markdown", "json", "csv"), default="markdown")
            add_output(sub, "-o", "--output", default=None, metavar="FILE",
                       help="also write the table here")
        sub.set_defaults(run=_synth)

    sweep = verbs.add_parser("sweep", help="synthesize a grid of designs beside their int8 PEs: "
                                           "CSV and area / accuracy plot")
    grid = sweep.add_argument_group("grid (comma-separated lists)")
    grid.add_argument("--scheme", default="dliq,mip2q", help="(default: dliq,mip2q)")
    grid.add_argument("--block", default="16", metavar="B,...", help="(default: 16)")
    grid.add_argument("--high", default=None, metavar="H,...", help="(default: B/2)")
    grid.add_argument("--group", default=None, metavar="G,...", help="(default: B)")
    grid.add_argument("--variant", default="static", help="static, dynamic (default: static)")
    grid.add_argument("--routing", default=None, help="static PE routings (default: the PE's)")
    grid.add_argument("--array", default="1x1", metavar="RxC,...",
                      help="1x1 is a PE, larger a DPU (default: 1x1)")
    grid.add_argument("--rounding", default="haz", choices=ROUNDINGS)
    grid.add_argument("--acc-width", type=int, default=32, metavar="W")
    grid.add_argument("--adder-stages", type=_natural, default=1, metavar="N")
    grid.add_argument("--shared", default="none", help="none, decode, route (default: none)")
    grid.add_argument("--mask-share", default="1", metavar="K,...", help="(default: 1)")
    _add_synth_options(sweep)
    sweep.add_argument("--model", default="mnist",
                       help="weight SQNR on: mnist, digits, silero, a model file, or none "
                            "(default: mnist)")
    add_output(sweep, "--csv", required=True, metavar="OUT.csv")
    add_output(sweep, "--plot", default=None, metavar="OUT.png", help="area / accuracy front")
    sweep.add_argument("--workers", type=_positive, default=None, metavar="N",
                       help="parallel syntheses (default: CPU count)")
    sweep.add_argument("--dask", default=None, metavar="ADDRESS",
                       help="run on a Dask scheduler at ADDRESS, or 'local' for a local cluster")
    sweep.add_argument("--no-progress", action="store_true")
    energy = sweep.add_argument_group("energy (strum power on every PE row, array multipliers)")
    energy.add_argument("--power", action="store_true",
                        help="add energy columns: zero-delay and timed pJ per block, reduction "
                             "against the int8 PE on the same blocks")
    energy.add_argument("--power-blocks", type=_positive, default=200, metavar="N",
                        help="zero-delay blocks (default: 200)")
    energy.add_argument("--power-timed-blocks", type=_natural, default=100, metavar="M",
                        help="timed (glitch) blocks, 0 for none (default: 100)")
    energy.add_argument("--power-model", default=None, metavar="M.onnx",
                        help="real data: a layer of this model (mnist, digits or a file; "
                             "default: random blocks)")
    energy.add_argument("--power-layer", default=None, metavar="NAME", help="the layer of --power-model")
    energy.add_argument("--power-data", default=None,
                        help="images for the layer's int8 inputs (digits, mnist or .npz; "
                             "default: random int8 inputs)")
    energy.add_argument("--power-seed", type=int, default=0, help="random data seed (default: 0)")
    add_output(sweep, "--power-plot", default=None, metavar="OUT.png",
               help="energy / accuracy front (needs --power)")
    sweep.set_defaults(run=_sweep)

    power = verbs.add_parser("power", help="energy per block of a PE from gate-level activity "
                                           "(Verilator, Icarus, Liberty tables)")
    kinds = power.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=_Parser)
    for kind, text in (("pe", "one processing element"),
                       ("compare", "a StruM PE beside the int8 and Booth int8 PEs, same data"),
                       ("dpu", "an R x C array (per step: R x C blocks); --compare: beside the int8 DPU")):
        sub = kinds.add_parser(kind, help=text)
        _add_hardware_options(sub, array=kind == "dpu")
        from strum.power.cli import add_power_options
        add_power_options(sub)
        if kind == "dpu":
            sub.add_argument("--compare", action="store_true",
                             help="the int8 DPU of the same size first, on the same data")
        add_output(sub, "--report", default=None, metavar="R.json", help="the full report")
        sub.set_defaults(run=_power)
    return parser


def _power(args) -> int:
    from strum.power.cli import run_power

    return run_power(args, _hardware(args))


# -- the error layer ------------------------------------------------------------------

#: Parameter names that library errors use, and the option (dest) the user set them with.
_PARAMETER_OPTIONS = {
    "block_size": "block", "high_lanes": "high", "group_size": "group", "rounding": "rounding",
    "acc_width": "acc_width", "max_reduction_length": "max_reduction", "rows": "rows",
    "cols": "cols", "seeds": "seeds", "target_mhz": "target_mhz", "adder_stages": "adder_stages",
    "variant": "variant", "routing": "routing", "vectors": "vectors", "n": "vectors",
    "batch": "batch", "seed": "seed", "percentile": "percentile", "workers": "workers",
}


def _chosen_parsers(parser, args):
    """The parser and the subparsers of the verb that was parsed, outermost first."""
    chain = [parser]
    while True:
        subs = [action for action in chain[-1]._actions
                if isinstance(action, argparse._SubParsersAction)]
        if not subs:
            return chain
        chosen = getattr(args, subs[0].dest, None)
        if chosen not in subs[0].choices:
            return chain
        chain.append(subs[0].choices[chosen])


def _typed_options(parser, args, argv) -> dict[str, str]:
    """``{dest: option string}``, as typed on the command line (else the long form)."""
    typed = {}
    for sub in _chosen_parsers(parser, args):
        for action in sub._actions:
            if not action.option_strings:
                continue
            typed.setdefault(action.dest, max(action.option_strings, key=len))
            for token in argv:
                name = token.split("=", 1)[0]
                if name in action.option_strings or (
                        name.startswith("--") and len(name) > 2 and any(
                            option.startswith(name) for option in action.option_strings
                            if option.startswith("--"))):
                    typed[action.dest] = name
                    break
    return typed


def _one_line(error: BaseException, typed: dict, args) -> str:
    """The error's message on one line, led by the option it is about when it names one."""
    from strum.synth.tools import SynthError

    message = str(error).strip()
    if isinstance(error, SynthError) and not isinstance(error, ValueError):
        message = message.split("\n", 1)[0]       # a tool's log tail stays in its log file
    text = " ".join(message.split()) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    first = text.split(" ", 1)[0].split("=", 1)[0].rstrip(":,")
    dest = _PARAMETER_OPTIONS.get(first)
    if dest in typed and hasattr(args, dest) and not text.startswith("-"):
        value = getattr(args, dest)
        text = f"{typed[dest]}{'' if value is None else f' {value}'}: {text}"
    return text


def _classify(error: BaseException) -> int:
    """Exit code of an error: 2 for input the user can fix, 1 for a failed tool or check."""
    from strum.synth.tools import SynthError, ToolMissing

    if isinstance(error, (ValueError, OSError, ToolMissing, MemoryError, RecursionError)):
        return EXIT_USAGE
    if isinstance(error, SynthError):
        return EXIT_FAILED
    return EXIT_FAILED


def _label(args) -> str:
    return f"strum {args.verb}"


def _interrupt(number, frame):
    """SIGINT handler: KeyboardInterrupt, delivered again until main() has it.

    Python swallows an exception raised in a finalizer ("Exception ignored in ..."), and
    elaborating Amaranth designs runs finalizers all the time (``MustUse.__del__``);
    some library code catches everything (a bare ``except:``); a C extension being
    imported may abort on it. So it is held off out of finalizers and imports, and a
    timer raises it again until :func:`_run` reports it and stops the timer.
    """
    import signal

    signal.signal(signal.SIGALRM, _interrupt)
    while frame is not None:
        # Not in a finalizer (it would be swallowed) nor in an import (a C extension's
        # init, pybind11's above all, may abort or crash on it): a moment later.
        if frame.f_code.co_name == "__del__" or frame.f_code.co_filename.startswith("<frozen importlib"):
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            return
        frame = frame.f_back
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    raise KeyboardInterrupt


def _stop_interrupt_timer() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(argv=None) -> int:
    """Run one ``strum`` command; returns the exit code (see the module docstring)."""
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if program:
        import signal
        signal.signal(signal.SIGINT, _interrupt)
    code = _run(argv)
    if code != 0 and program and "amaranth._unused" in sys.modules:
        # Half-built components die with the process: silence their warnings (as
        # Amaranth's own excepthook does after a crash).
        sys.modules["amaranth._unused"].MustUse._MustUse__silence = True
    elif code == EXIT_INTERRUPTED:
        _quiet_exit()           # called in-process: collect them now, quietly
    if program:
        # The verb is over and its outputs are in place (or discarded): a Ctrl-C now,
        # while Python shuts down, must not turn a finished run into "killed by SIGINT".
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_interrupt_timer()
    if program and code == EXIT_INTERRUPTED:
        # Ctrl-C inside a C extension's import (pybind11 modules evaluate Python code
        # there) leaves CPython set to kill itself with SIGINT at exit, which would turn
        # exit code 130 into "killed by signal". Outputs are already discarded: leave now.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code


def _run(argv) -> int:
    debug = os.environ.get("STRUM_DEBUG", "") not in ("", "0")
    label, typed, args = "strum", {}, None
    if argv and not argv[0].startswith("-"):
        label = f"strum {argv[0]}"
    try:
        from strum.quant import progress
        progress.reset()
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:      # --help, --version, usage errors: argparse printed
            return stop.code if isinstance(stop.code, int) else EXIT_USAGE
        label = _label(args)
        typed = _typed_options(parser, args, argv)
        from strum.outputs import Staging

        with Staging(args, typed=lambda dest: typed.get(dest, dest)):
            return args.run(args)
    except KeyboardInterrupt:
        return _interrupted(label, debug)
    except Exception as error:          # noqa: BLE001: the one place errors become exit codes
        if _caused_by_interrupt(error):     # e.g. ImportError from a C extension's init
            return _interrupted(label, debug)
        if debug:
            import traceback
            traceback.print_exc()
        code = _classify(error)
        text = _one_line(error, typed, args)
        if code == EXIT_FAILED and not _is_tool_failure(error):
            text = (f"internal error: {type(error).__name__}: {text} "
                    f"(STRUM_DEBUG=1 shows where; please report it)")
        print(f"{label}: error: {text}", file=sys.stderr)
        return code


def _interrupted(label: str, debug: bool) -> int:
    _stop_interrupt_timer()
    if debug:
        import traceback
        traceback.print_exc()
    from strum.quant import progress
    doing = progress.current()
    print(f"{label}: interrupted{f' while {doing}' if doing else ''}; nothing was written",
          file=sys.stderr)
    return EXIT_INTERRUPTED


def _caused_by_interrupt(error: BaseException) -> bool:
    for _ in range(16):
        if error is None:
            return False
        if isinstance(error, KeyboardInterrupt):
            return True
        error = error.__cause__ or error.__context__
    return False


def _is_tool_failure(error) -> bool:
    """A tool or check that failed (exit 1, said as it is): SynthError, VerilatorError and
    any RuntimeError a strum package defines (a new package's ``XError(RuntimeError)``)."""
    from strum.sim.verilator_backend import VerilatorError
    from strum.synth.tools import SynthError
    return isinstance(error, (SynthError, VerilatorError)) or (
        isinstance(error, RuntimeError) and type(error).__module__.startswith("strum."))


def _quiet_exit() -> None:
    """After a failure or Ctrl-C: drop the half-built Amaranth components without their
    thousands of "created but never used" warnings, as Amaranth's own excepthook does."""
    import gc
    import warnings

    unused = sys.modules.get("amaranth._unused")
    if unused is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", unused.UnusedMustUse)
        gc.collect()


if __name__ == "__main__":
    sys.exit(main())
