"""The options and the runner of ``strum power`` (the CLI module only wires them in)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from strum.synth.designs import Design

from .run import DEFAULT_PERIOD_NS, DataSource, compare, write_report

__all__ = ["add_power_options", "run_power", "power_markdown"]


def add_power_options(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (one of)")
    data.add_argument("--model", default=None, metavar="M.onnx",
                      help="real weights and inputs of a layer of this model (mnist, digits, "
                           "silero or a file)")
    data.add_argument("--layer", default=None, metavar="NAME", help="the layer of --model")
    data.add_argument("--data", default=None,
                      help="images for the layer's real int8 inputs (digits, mnist or .npz; "
                           "default: random int8 inputs)")
    data.add_argument("--batch", type=int, default=4, metavar="N", help="images (default: 4)")
    data.add_argument("--random", action="store_true", help="random weights and activations")
    data.add_argument("--seed", type=int, default=0, help="random data seed (default: 0)")
    run = parser.add_argument_group("run")
    run.add_argument("--blocks", type=int, default=20000, metavar="N",
                     help="zero-delay blocks, at most (default: 20000; fewer when settled)")
    run.add_argument("--timed-blocks", type=int, default=500, metavar="M",
                     help="blocks of the timed (glitch) sample, 0 for none (default: 500)")
    run.add_argument("--period-ns", type=float, default=DEFAULT_PERIOD_NS,
                     help=f"clock period (default: {DEFAULT_PERIOD_NS:g} ns)")
    run.add_argument("--wire-cap-pf", type=float, default=0.0, metavar="C",
                     help="wire capacitance per fanout pin, pF (default: 0, as OpenSTA without "
                          "parasitics)")
    run.add_argument("--zero-delay-engine", choices=("verilator", "icarus"), default="verilator",
                     help="zero-delay simulator: verilator (fast per block once built) or icarus "
                          "(no build: for short runs of large netlists; default: verilator)")
    run.add_argument("--liberty", default=None, metavar="FILE",
                     help="Liberty file (default: OSU 0.18 um of qflow-tech-osu018)")
    run.add_argument("--booth", action="store_true", help="Booth multipliers (synth -booth)")
    run.add_argument("--isolate-zero", action="store_true",
                     help="operand isolation of lanes whose weight is zero (int8 and static PEs)")


#: Models shipped with strum, by short name.
PACKAGED = {"mnist": "mnist_cnn.onnx", "digits": "digits_cnn.onnx"}


def packaged_model(name: str) -> Path:
    """A packaged model's path for its short name, else ``name`` as a path."""
    if name in PACKAGED:
        import strum
        return Path(strum.__file__).parent / "data" / PACKAGED[name]
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"--model {name!r}: no such file (or one of {', '.join(PACKAGED)})")
    return path


def _source(args) -> DataSource:
    if args.random == (args.model is not None):
        raise ValueError("give either --random or --model M.onnx --layer NAME")
    if args.model is not None and not args.layer:
        raise ValueError("--model needs --layer NAME")
    if args.random:
        return DataSource("random", seed=args.seed)
    return DataSource("layer", seed=args.seed, model=str(packaged_model(args.model)), layer=args.layer, data=args.data,
                      batch=args.batch)


def power_markdown(report: dict) -> str:
    lines = ["| design | area um^2 | zero-delay pJ/block | vs first | timed pJ/block | vs first "
             "| glitch factor |", "|---|---|---|---|---|---|---|"]
    for d in report["designs"]:
        zd, timed = d["zero_delay"], d["timed"]
        lines.append(
            f"| {d['design']} | {d['area_um2']:.0f} | {zd['pj_per_block']:.1f} | "
            f"{zd.get('reduction_vs_first_pct', 0):+.1f}% | "
            + (f"{timed['pj_per_block']:.1f} | {timed.get('reduction_vs_first_pct', 0):+.1f}% | "
               f"{d['glitch_factor']['all']:.2f} |" if timed else "- | - | - |"))
    settle = report["settle"]
    lines.append("")
    lines.append(f"{settle['blocks']} zero-delay blocks (settled to {settle['criterion_points']} "
                 f"points), timed sample {report['designs'][0]['timed']['blocks'] if report['designs'][0]['timed'] else 0} blocks; "
                 f"reduction: positive when smaller than the first design"
                 + ("; a DPU's block is one step of the array (R x C blocks)"
                    if any(d.get("kind") == "dpu" for d in report["designs"]) else ""))
    return "\n".join(lines) + "\n"


def run_power(args, hardware: dict) -> int:
    from strum.synth.compare import int8_baseline
    from strum.synth.tools import SynthError, ToolMissing

    from .simulate import SimulationError

    source = _source(args)
    if args.kind == "dpu" and args.isolate_zero:
        raise ValueError("--isolate-zero is an option of the PE, not of the DPU")
    array = {"kind": "dpu", "rows": hardware["rows"], "cols": hardware["cols"],
             "shared": hardware.get("shared", "none")} if args.kind == "dpu" else {"kind": "pe"}
    design = Design(config=hardware["config"], variant=hardware["variant"],
                    adder_stages=hardware["adder_stages"], routing=hardware.get("routing"),
                    router_register=hardware.get("router_register", False),
                    isolate_zero=args.isolate_zero, **array)
    if args.kind == "dpu" and args.compare:
        designs, booth = [int8_baseline(design), design], [False, args.booth]
    elif args.kind == "compare":
        base = int8_baseline(design)
        designs, booth = [base, base, design], [False, True, args.booth]
    else:
        designs, booth = [design], [args.booth]
    try:
        report = compare(designs, source, blocks=args.blocks, timed_blocks=args.timed_blocks,
                         period=args.period_ns, liberty=args.liberty, booth=booth,
                         wire_cap=args.wire_cap_pf, zero_delay_engine=args.zero_delay_engine)
    except (SynthError, SimulationError) as error:
        print(f"strum power: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, (ToolMissing, SimulationError)) else 1
    if args.report:
        write_report(report, args.report)
    print(power_markdown(report), end="")
    return 0
