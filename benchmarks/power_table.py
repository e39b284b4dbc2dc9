"""The energy table of docs/power.md: PEs (B = 16) on real and random data, zero delay and timed.

    python benchmarks/power_table.py [--blocks 500] [--data mnist,digits,random] [--out DIR]

Designs: int8 and Booth int8 PEs; DLIQ and MIP2Q at G = 16, 8, 4, static and dynamic;
each with and without the router register (the glitch fix; the int8 PEs with the same
operand register, so that every pair has the same pipeline depth). Every design runs
the same blocks: real data is PE (0, 0) of a 4 x 4 DPU on the packaged MNIST CNN's
second conv (32 -> 64 channels) and on the digits CNN's conv4 (24 -> 48), the int8
inputs of 4 images from integer inference; random data is seed 0. Zero-delay and timed
activity come from Icarus on the same sample of blocks (zero-delay Icarus toggles equal
Verilator's net by net, see tests/test_power_sim.py; Icarus needs no build per design).
Prints a Markdown table per data set and writes the JSON reports to --out.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from strum.power.cli import packaged_model
from strum.power.run import DataSource, compare, write_report
from strum.quant.config import StrumConfig
from strum.synth.designs import Design

DATA = {
    "mnist": DataSource("layer", model=str(packaged_model("mnist")), layer="/features/features.3/Conv",
                        data="mnist", batch=4),
    "digits": DataSource("layer", model=str(packaged_model("digits")), layer="/conv4/Conv",
                         data="digits", batch=4),
    "random": DataSource("random", seed=0),
}


def designs(groups, variants, register_options, isolate_options=(False,)):
    int8 = StrumConfig(scheme="int8", block_size=16, high_lanes=16)
    out = []
    for rr in register_options:
        for iso in isolate_options:
            out.append((Design(config=int8, router_register=rr, isolate_zero=iso), False))
        out.append((Design(config=int8, router_register=rr), True))
    for scheme in ("dliq", "mip2q"):
        for g in groups:
            for variant in variants:
                if variant == "dynamic" and g != 16:
                    continue                     # the dynamic PE does not route: G changes nothing
                for rr in register_options:
                    for iso in isolate_options if variant == "static" else (False,):
                        config = StrumConfig(scheme=scheme, block_size=16, high_lanes=8, group_size=g)
                        out.append((Design(config=config, variant=variant, router_register=rr,
                                           isolate_zero=iso), False))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--data", default="mnist,digits,random")
    parser.add_argument("--groups", default="16,8,4")
    parser.add_argument("--variants", default="static,dynamic")
    parser.add_argument("--register", default="no,yes", help="router register: no, yes or both")
    parser.add_argument("--isolate", default="no",
                        help="operand isolation of zero-weight lanes: no, yes or both (no,yes)")
    parser.add_argument("--out", default="benchmarks/results/power")
    parser.add_argument("--tag", default="", help="suffix of the JSON file names")
    args = parser.parse_args(argv)
    groups = [int(g) for g in args.groups.split(",")]
    registers = [{"no": False, "yes": True}[r] for r in args.register.split(",")]
    isolate = [{"no": False, "yes": True}[r] for r in args.isolate.split(",")]
    chosen = designs(groups, args.variants.split(","), registers, isolate)
    for name in args.data.split(","):
        start = time.perf_counter()
        report = compare([d for d, _ in chosen], DATA[name], blocks=args.blocks,
                         timed_blocks=args.blocks, booth=[b for _, b in chosen], settle=False,
                         zero_delay_engine="icarus")
        report["benchmark"] = {"script": "benchmarks/power_table.py", "argv": argv,
                               "seconds": round(time.perf_counter() - start, 1)}
        write_report(report, Path(args.out) / f"power_b16_{name}{args.tag}.json")
        print(f"\n### {name} ({args.blocks} blocks, {report['benchmark']['seconds']} s)\n")
        print("| design | area um^2 | zero-delay pJ/block | vs int8 | timed pJ/block | vs int8 | glitch |")
        print("|---|---|---|---|---|---|---|")
        base = {rr: next(d for d in report["designs"] if d["variant"] == "int8" and not d["booth"]
                         and d["router_register"] == rr and "-iso" not in d["design"]) for rr in registers}
        for d in report["designs"]:
            b = base[d["router_register"]]
            zd, td = d["zero_delay"]["pj_per_block"], d["timed"]["pj_per_block"]
            print(f"| {d['design']} | {d['area_um2']:.0f} | {zd:.1f} | "
                  f"{100 * (1 - zd / b['zero_delay']['pj_per_block']):+.1f}% | {td:.1f} | "
                  f"{100 * (1 - td / b['timed']['pj_per_block']):+.1f}% | {d['glitch_factor']['all']:.2f} |")


if __name__ == "__main__":
    main()
