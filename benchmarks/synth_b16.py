"""The headline comparison: static StruM PEs against the int8 PE at B = 16, H = 8.

DLIQ and MIP2Q at G = 16, 8 and 4, through the generic (transistors) and asic (OSU
0.18 um, um^2) flows, with the weight SQNR of the packaged MNIST CNN, and the asic
breakdown of every PE as a share of the int8 PE's area. Prints Markdown; the figures
in docs/synthesis.md and the README come from::

    python benchmarks/synth_b16.py --markdown b16.md --json b16.json

This table fixes the multiplier kind (arrays, or Booth with ``--booth``);
``benchmarks/synth_dpu.py`` compares every option with the strongest int8 design.
Syntheses are cached (``$STRUM_CACHE/synth``), so a second run takes seconds. With
``--flatten`` the flows optimise across the hierarchy (no breakdown; about 5 minutes
per PE instead of 5 seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from strum.quant.files import write_text
from strum.synth.compare import int8_baseline
from strum.synth.designs import PARTS
from strum.synth.flows import synthesize
from strum.synth.reports import reduction_pct, rows_markdown
from strum.synth.sweep import grid, main_metric, model_layers, run_sweep, weight_sqnr

#: Method section 8: the prototype's area change against the int8 PE (OSU 0.18 um).
PROTOTYPE = {("dliq", 16): -10, ("dliq", 8): -17, ("dliq", 4): -21,
             ("mip2q", 16): -15, ("mip2q", 4): -26}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", default="generic,asic")
    parser.add_argument("--routing", default=None, help="static PE routing (default: the PE's)")
    parser.add_argument("--flatten", action="store_true")
    parser.add_argument("--booth", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--markdown", default=None, metavar="OUT.md")
    parser.add_argument("--json", default=None, metavar="OUT.json")
    args = parser.parse_args(argv)
    flows = args.flows.split(",")
    # One multiplier kind for both designs, as given (array unless --booth): the
    # strongest-baseline comparison of every option is benchmarks/synth_dpu.py.
    options = {"flatten": args.flatten, "booth": args.booth}
    designs, _ = grid(schemes=("dliq", "mip2q"), blocks=(16,), groups=(16, 8, 4),
                      routings=(args.routing,))
    start = time.perf_counter()
    layers = model_layers("mnist")
    results = {flow: run_sweep(designs, flow, layers=layers, workers=args.workers, **options)
               for flow in flows}
    seconds = time.perf_counter() - start

    summary = []
    for design in designs:
        c = design.config
        row = {"scheme": c.scheme, "G": c.group_size}
        for flow in flows:
            report = synthesize(design, flow, **options)          # cached by the sweep
            base = synthesize(int8_baseline(design), flow, **options)
            metric = main_metric(flow)
            row[f"{flow} {metric}"] = report[metric]
            row[f"{flow} int8"] = base[metric]
            row[f"{flow} reduction %"] = reduction_pct(base[metric], report[metric])
        row["weight SQNR dB (MNIST)"] = round(weight_sqnr(layers, c)[0], 2)
        prototype = PROTOTYPE.get((c.scheme, c.group_size))
        row["prototype %"] = "" if prototype is None else f"{-prototype}"
        summary.append(row)
    int8_sqnr = results[flows[0]]["int8_sqnr_db"]
    int4_sqnr = results[flows[0]]["int4_sqnr_db"]
    routing = synthesize(designs[0], flows[0], **options)["design"]["routing"]
    text = [f"Static StruM PE against the int8 PE, B = 16, H = 8, routing {routing}"
            f"{', flattened' if args.flatten else ', hierarchy kept'}"
            f"{', Booth multipliers' if args.booth else ''} "
            f"(reduction: positive when smaller; weight SQNR of int8 {int8_sqnr} dB, "
            f"int4 per channel {int4_sqnr} dB)\n", rows_markdown(summary)]

    breakdowns = []
    if "asic" in flows and not args.flatten:
        base = synthesize(int8_baseline(designs[0]), "asic", **options)
        total = base["area_um2"]
        for design in [int8_baseline(designs[0])] + designs:
            report = synthesize(design, "asic", **options)
            parts = report["breakdown"]["parts"]
            row = {"PE": "int8" if design.config.scheme == "int8" else
                   f"{design.config.scheme} G={design.config.group_size}"}
            for part in PARTS:
                area = parts.get(part, {}).get("area_um2", 0) or 0
                row[part] = round(100 * area / total, 1)
            row["total"] = round(100 * report["area_um2"] / total, 1)
            breakdowns.append(row)
        text += ["\nasic breakdown, % of the int8 PE's area "
                 f"({total:,.0f} um^2 on OSU 0.18 um)\n", rows_markdown(breakdowns)]
    tools = synthesize(designs[0], flows[0], **options)["tools"]
    text.append(f"\n{len(designs) + 1} PEs x {len(flows)} flows in {seconds:.0f} s "
                f"(tools: {json.dumps(tools)})\n")
    markdown = "\n".join(text)
    print(markdown)
    if args.markdown:
        write_text(args.markdown, markdown)
    if args.json:
        write_text(args.json, json.dumps({"summary": summary, "breakdown": breakdowns,
                                          "sweeps": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
