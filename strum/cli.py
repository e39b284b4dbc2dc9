"""The ``strum`` command line: parse, call the packages, print.

Every verb is a function ``_verb(args) -> int``; errors a user can fix (bad parameters,
bad files) are ``ValueError``/``OSError`` and end the program with one line on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from strum.quant.config import BLOCK_SIZES, ROUNDINGS, SCHEMES, StrumConfig

EXIT_USAGE = 2


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


def _config(args) -> StrumConfig:
    high = args.high if args.high is not None else args.block // 2
    return StrumConfig(scheme=args.scheme, block_size=args.block, high_lanes=high,
                       group_size=args.group, rounding=args.rounding,
                       acc_width=args.acc_width, max_reduction_length=args.max_reduction)


def _add_hardware_options(parser: argparse.ArgumentParser, array: bool = False) -> None:
    from strum.hw.router import ROUTINGS

    _add_config_options(parser, schemes=("dliq", "mip2q", "zero", "int8"))
    group = parser.add_argument_group("hardware")
    group.add_argument("--variant", choices=("static", "dynamic"), default=None,
                       help="StruM PE variant (default: static; scheme int8 builds the int8 PE)")
    group.add_argument("--adder-stages", type=int, default=1, metavar="N",
                       help="pipeline registers in the adder tree (default: 1)")
    group.add_argument("--routing", choices=ROUTINGS, default=None,
                       help="activation routing of the static PE (default: the PE's)")
    if array:
        group.add_argument("--rows", type=int, default=4, metavar="R", help="array rows (default: 4)")
        group.add_argument("--cols", type=int, default=4, metavar="C", help="array columns (default: 4)")


def _hardware(args) -> dict:
    """Keyword arguments of StrumPE / StrumDPU from the options."""
    options = {"config": _config(args), "variant": args.variant, "adder_stages": args.adder_stages}
    if args.routing is not None:
        options["routing"] = args.routing
    if hasattr(args, "rows"):
        options.update(rows=args.rows, cols=args.cols)
    return options


def _write_json(path, data) -> None:
    from strum.quant.model import write_report
    write_report(path, data)


# -- verbs -----------------------------------------------------------------------------

def _quantize(args) -> int:
    from strum.quant.model import quantize_layers, report, save_npz
    from strum.quant.onnx_io import load_layers

    config = _config(args)
    layers = load_layers(args.input)
    start = time.perf_counter()
    quantized = quantize_layers(layers, config)
    seconds = time.perf_counter() - start
    save_npz(args.output, quantized)
    data = report(quantized, config, seconds)
    if args.report:
        _write_json(args.report, data)
    _print_layers(data)
    return 0


def _print_layers(data) -> None:
    print(f"{'layer':40s} {'shape':>18s} {'SQNR dB':>8s} {'bits/w':>7s}")
    for layer in data["layers"]:
        sqnr = "inf" if layer["sqnr_db"] is None else f"{layer['sqnr_db']:.2f}"
        print(f"{layer['name'][:40]:40s} {'x'.join(map(str, layer['shape'])):>18s} "
              f"{sqnr:>8s} {layer['bits_per_weight']:7.3f}")


def _inspect(args) -> int:
    import numpy as np

    from strum.quant.image import image_to_weights

    path = Path(args.file)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            names = sorted(key[:-len("/packed")] for key in archive.files if key.endswith("/packed"))
            if not names:
                raise ValueError(f"{path}: holds no NAME/packed memory image")
            for name in names:
                config, w_int, mask = image_to_weights(archive[f"{name}/packed"])
                if f"{name}/w_int" in archive.files and not (
                        np.array_equal(w_int, archive[f"{name}/w_int"])
                        and np.array_equal(mask, archive[f"{name}/mask"])):
                    raise ValueError(f"{path}: the memory image of {name} does not decode to its w_int/mask")
                print(f"{name}: {config.scheme} B={config.block_size} H={config.high_lanes} "
                      f"G={config.group_size} shape={'x'.join(map(str, w_int.shape))} ok")
    else:
        config, w_int, mask = image_to_weights(path.read_bytes())
        print(f"{path.name}: {config.scheme} B={config.block_size} H={config.high_lanes} "
              f"G={config.group_size} shape={'x'.join(map(str, w_int.shape))} ok")
    return 0


def _generate(args) -> int:
    from strum.hw.export import write_design

    options = _hardware(args)
    if args.kind == "pe":
        from strum.hw.pe import StrumPE
        component = StrumPE(**options)
    else:
        from strum.hw.dpu import StrumDPU
        component = StrumDPU(**options)
    described = {"config": options["config"].to_dict(), "kind": args.kind,
                 "variant": component.variant, "adder_stages": args.adder_stages,
                 "latency": component.latency}
    if args.kind == "dpu":
        described.update(rows=args.rows, cols=args.cols)
    paths = write_design(component, args.kind, Path(args.output), described)
    for path in paths.values():
        print(path)
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
        reports = simulate_model_layers(args.model, args.layer, options, backend=args.backend,
                                        seed=args.seed, data=args.data, batch=args.batch,
                                        backpressure=args.backpressure, vcd=args.vcd)
        for report in reports:
            print(f"{report['layer']}: {report['macs']} MACs, {report['outputs']} outputs, "
                  f"{report['mismatches']} mismatches, {report['cycles']} cycles, "
                  f"utilization {report['utilization']:.2f}, {report['seconds']:.1f} s")
    if args.report:
        _write_json(args.report, reports[0] if args.kind == "pe" or args.layer != "all" else reports)
    for report in reports:
        _print_mismatch(report)
    return 1 if any(report["mismatches"] for report in reports) else 0


def _flow(args) -> int:
    from strum import flow

    config = _config(args)
    summary = flow.run(config, Path(args.output), model=args.model)
    _print_flow(summary, Path(args.output))
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
    for flow_name, metrics in steps.get("area", {}).items():
        if "skipped" in metrics:
            print(f"  area      {flow_name}: skipped: {metrics['skipped']}")
            continue
        for metric, row in metrics.items():
            print(f"  area      {flow_name:7s} {metric:12s} int8 {row['int8']:>10} PE {row['pe']:>10} "
                  f"({-row['reduction_pct']:+.1f}% vs int8)")


def _eval(args) -> int:
    from strum.quant.evaluate import evaluate, format_table, load_data, plot_report

    data = load_data(args.data)
    schemes = [spec for item in args.schemes for spec in item.split(",") if spec]
    base = StrumConfig(rounding=args.rounding, acc_width=args.acc_width)
    report = evaluate(args.model, data.images, data.labels, data.calibration, schemes,
                      base=base, percentile=args.percentile,
                      weights_only=not args.no_weights_only, data_name=data.name)
    report["calibration_source"] = data.calibration_source
    if args.report:
        _write_json(args.report, report)
    if args.plot:
        plot_report(report, args.plot)
    print(format_table(report))
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
    group.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, metavar="N",
                       help=f"nextpnr seeds of the FPGA flows (default: {DEFAULT_SEEDS})")
    group.add_argument("--target-mhz", type=float, default=DEFAULT_TARGET_MHZ, metavar="F",
                       help=f"nextpnr target clock (default: {DEFAULT_TARGET_MHZ})")
    group.add_argument("--flatten", action="store_true",
                       help="optimise across the hierarchy (no breakdown by part)")
    group.add_argument("--booth", action="store_true", help="Booth multipliers (generic, asic)")
    group.add_argument("--no-cache", action="store_true", help="synthesize even if cached")


def _synth_options(args) -> dict:
    return {"liberty": args.liberty, "seeds": args.seeds, "target_mhz": args.target_mhz,
            "flatten": args.flatten, "booth": args.booth, "cache": not args.no_cache}


def _synth(args) -> int:
    from strum.synth.compare import comparison_table, compare
    from strum.synth.designs import Design
    from strum.synth.reports import breakdown_markdown
    from strum.synth.flows import synthesize
    from strum.synth.tools import SynthError, ToolMissing
    from strum.quant.files import write_text

    options = _hardware(args)
    design = Design(kind="dpu" if args.kind == "dpu" else "pe", config=options["config"],
                    variant=args.variant, adder_stages=args.adder_stages, routing=args.routing,
                    rows=getattr(args, "rows", 1), cols=getattr(args, "cols", 1))
    try:
        if getattr(args, "board", None):
            from strum.synth.boards import build_board
            summary = build_board(design, args.board, Path(args.output), seed=args.seeds)
            print(json.dumps({key: summary[key] for key in ("board", "device", "bitstream",
                                                             "fmax_mhz", "utilization")}, indent=1))
            return 0
        if args.kind == "compare":
            result = compare(design, args.flow, **_synth_options(args))
            if args.report:
                _write_json(args.report, result)
            text = comparison_table(result, args.format)
            if args.output:
                write_text(args.output, text)
            print(text, end="")
            return 0
        report = synthesize(design, args.flow, **_synth_options(args))
    except SynthError as error:
        print(f"strum synth: error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, ToolMissing) else 1
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
    if not (rows.isdigit() and cols.isdigit()):
        raise ValueError(f"array size must be RxC like 4x4, not {text!r}")
    return int(rows), int(cols)


def _sweep(args) -> int:
    from strum.synth.sweep import grid, model_layers, plot_front, run_sweep, write_csv
    from strum.synth.tools import SynthError, ToolMissing

    designs, skipped = grid(
        schemes=_comma_list(args.scheme), blocks=_comma_list(args.block, int),
        highs=_comma_list(args.high, int), groups=_comma_list(args.group, int),
        variants=_comma_list(args.variant), routings=_comma_list(args.routing),
        arrays=[_array_size(a) for a in _comma_list(args.array)], rounding=args.rounding,
        acc_width=args.acc_width, adder_stages=args.adder_stages)
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    if not designs:
        raise ValueError("the sweep's grid holds no valid design")
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
                           **_synth_options(args))
    except SynthError as error:
        print(f"strum sweep: error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, ToolMissing) else 1
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            if cluster is not None and args.dask == "local":
                cluster.close()
    write_csv(args.csv, result)
    if args.plot:
        plot_front(args.plot, result, model=args.model)
    for row in result["rows"]:
        print(f"{row['kind']} {row['scheme']} B={row['block_size']} H={row['high_lanes']} "
              f"G={row['group_size']} {row['variant']}: {result['metric']} "
              f"{row[result['metric']]} ({row['reduction_pct']}% vs int8), "
              f"weight SQNR {row['weight_sqnr_db']} dB")
    return 0

def _prove(args) -> int:
    from strum.formal.prove import PARTS, prove_pe
    from strum.hw.pe import StrumPE

    pe = StrumPE(**_hardware(args))
    verilog, interface_json = None, None
    if args.verilog:
        verilog = Path(args.verilog).read_text()
        beside = Path(args.verilog).with_name("interface.json")
        interface_json = args.interface or (beside if beside.exists() else None)
    from strum.formal.tools import ProofToolError, ProofToolMissing

    parts = _comma_list(args.parts) if args.parts else PARTS
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
    parser = _Parser(
        prog="strum", description="StruM structured mixed-precision: quantizer, hardware, "
                                  "co-simulation and synthesis")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_Parser)

    flow = verbs.add_parser("flow", help="run the whole pipeline on a model (default: the "
                                         "embedded digits CNN)")
    flow.add_argument("--model", default=None, help="ONNX model (default: embedded digits CNN)")
    flow.add_argument("-o", "--output", default="strum-flow", help="output folder (default: strum-flow)")
    _add_config_options(flow)
    flow.set_defaults(run=_flow)

    quantize = verbs.add_parser("quantize", help="quantize a model's weights")
    quantize.add_argument("input", help="ONNX model, .npy tensor or .npz of tensors")
    quantize.add_argument("-o", "--output", required=True, help="OUT.npz")
    quantize.add_argument("--report", help="REPORT.json")
    _add_config_options(quantize)
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
        sub.add_argument("-o", "--output", required=True, metavar="DIR",
                         help=f"writes DIR/strum_{kind}.v, DIR/interface.json, DIR/config.json")
        sub.set_defaults(run=_generate)

    simulate = verbs.add_parser("simulate", help="co-simulate the RTL against the golden model")
    kinds = simulate.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=_Parser)
    pe = kinds.add_parser("pe", help="random blocks through one PE")
    _add_hardware_options(pe)
    pe.add_argument("--vectors", type=int, default=10000, metavar="N", help="blocks (default: 10000)")
    layer = kinds.add_parser("layer", help="whole layers of an ONNX model through a DPU")
    layer.add_argument("model", help="ONNX model")
    layer.add_argument("--layer", required=True, metavar="NAME", help="a layer name, or all")
    layer.add_argument("--data", default=None,
                       help="real inputs: digits, mnist or an .npz of images (default: random int8)")
    layer.add_argument("--batch", type=int, default=1, metavar="N",
                       help="images (or random inputs) per layer (default: 1)")
    _add_hardware_options(layer, array=True)
    for sub in (pe, layer):
        sub.add_argument("--backend", choices=("amaranth", "verilator"), default="verilator")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--backpressure", action="store_true",
                         help="random valid gaps and ready drops on both streams, from the seed")
        sub.add_argument("--vcd", default=None, metavar="FILE", help="write a waveform")
        sub.add_argument("--report", default=None, metavar="R.json")
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
                          help="route, lanes, sum, hold (default: all)")
    prove_pe.add_argument("--report", default=None, metavar="R.json")
    prove_pe.set_defaults(run=_prove)

    from strum.quant.evaluate import DEFAULT_SCHEMES
    evaluate = verbs.add_parser("eval", help="accuracy of a model under every scheme, with "
                                             "integer inference as the hardware computes")
    evaluate.add_argument("model", help="ONNX model")
    evaluate.add_argument("--data", required=True,
                          help="'digits', 'mnist' or an .npz with images, labels and an "
                               "optional calibration array")
    evaluate.add_argument("--schemes", nargs="+", default=list(DEFAULT_SCHEMES), metavar="SPEC",
                          help="scheme specs like int8, 2:4, dliq:h8, mip2q:h4:g4 "
                               f"(default: {' '.join(DEFAULT_SCHEMES)})")
    evaluate.add_argument("--report", help="R.json")
    evaluate.add_argument("--plot", help="P.png: top-1 and output SQNR against bits per weight")
    evaluate.add_argument("--rounding", default="haz", choices=ROUNDINGS,
                          help="weight and activation rounding (default: haz)")
    evaluate.add_argument("--acc-width", type=int, default=32, metavar="W",
                          help="accumulator width in bits (default: 32)")
    evaluate.add_argument("--percentile", type=float, default=None, metavar="P",
                          help="calibrate activations to this percentile of |x| (default: max)")
    evaluate.add_argument("--no-weights-only", action="store_true",
                          help="skip the weights-only onnxruntime runs")
    evaluate.set_defaults(run=_eval)

    synth = verbs.add_parser("synth", help="area, cells, LUTs and Fmax of a PE or a DPU "
                                           "(Yosys, nextpnr)")
    kinds = synth.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=_Parser)
    for kind, text in (("pe", "one processing element"), ("dpu", "an R x C array of PEs"),
                       ("compare", "a StruM PE beside the int8 PE of the same B")):
        sub = kinds.add_parser(kind, help=text)
        _add_hardware_options(sub, array=kind == "dpu")
        _add_synth_options(sub)
        sub.add_argument("--report", default=None, metavar="R.json", help="the full report")
        if kind != "compare":
            from strum.synth.boards import BOARDS
            sub.add_argument("--board", choices=sorted(BOARDS), default=None,
                             help="instead of a flow: build for this board, through to a bitstream")
            sub.add_argument("-o", "--output", default="strum-board", metavar="DIR",
                             help="the board build's folder (default: strum-board)")
        if kind == "compare":
            sub.add_argument("--format", choices=("markdown", "json", "csv"), default="markdown")
            sub.add_argument("-o", "--output", default=None, metavar="FILE",
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
    grid.add_argument("--adder-stages", type=int, default=1, metavar="N")
    _add_synth_options(sweep)
    sweep.add_argument("--model", default="mnist",
                       help="weight SQNR on: mnist, digits, silero, a model file, or none "
                            "(default: mnist)")
    sweep.add_argument("--csv", required=True, metavar="OUT.csv")
    sweep.add_argument("--plot", default=None, metavar="OUT.png", help="area / accuracy front")
    sweep.add_argument("--workers", type=int, default=None, metavar="N",
                       help="parallel syntheses (default: CPU count)")
    sweep.add_argument("--dask", default=None, metavar="ADDRESS",
                       help="run on a Dask scheduler at ADDRESS, or 'local' for a local cluster")
    sweep.add_argument("--no-progress", action="store_true")
    sweep.set_defaults(run=_sweep)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as error:
        print(f"strum {args.verb}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
