"""Area of PE designs with :func:`~strum.synth.yosys_quick.generic_area`: the design study.

``python -m strum.synth.pe_area`` prints one Markdown row per design point, each against
the int8 PE of the same block size, adder pipeline and accumulator; ``docs/pe-design.md``
records the figures. Example::

    python -m strum.synth.pe_area --scheme dliq mip2q --group-size 16 8 4 --routing onehot network
"""

from __future__ import annotations

import argparse
import itertools
import json

from amaranth.back import verilog

from strum.hw.pe import StrumPE
from strum.hw.router import ROUTINGS
from strum.quant.config import StrumConfig

from .yosys_quick import find_osu018_liberty, generic_area

__all__ = ["pe_area", "component_areas"]


def pe_area(config: StrumConfig, *, variant: str | None = None, routing: str = "onehot",
            adder_stages: int = 1, liberty=None) -> dict:
    """:func:`generic_area` of one PE (top module ``pe``)."""
    pe = StrumPE(config=config, variant=variant, adder_stages=adder_stages, routing=routing)
    return generic_area(verilog.convert(pe, name="pe"), "pe", liberty=liberty)


def component_areas(liberty=None):
    """Rows (name, generic_area) of the PE's parts at B = 16, H = 8, and of the
    routers with 1-bit and 8-bit activations (their difference / 7 is the cost of one
    activation bit, the rest is mask decoding)."""
    from strum.hw.adder_tree import AdderTree
    from strum.hw.lanes import DliqLane, Int8Lane, LowShift, Mip2qLane
    from strum.hw.router import ActivationRouter

    config = StrumConfig()
    parts = {
        "Int8Lane": lambda: Int8Lane(config=config),
        "DliqLane": lambda: DliqLane(config=config),
        "Mip2qLane": lambda: Mip2qLane(config=config),
        "LowShift(15)": lambda: LowShift(config=config, width=15),
        "AdderTree 16x16": lambda: AdderTree(count=16, input_width=16, output_width=20, stages=0),
        "AdderTree 8x16": lambda: AdderTree(count=8, input_width=16, output_width=19, stages=0),
        "AdderTree 8x12": lambda: AdderTree(count=8, input_width=12, output_width=15, stages=0),
    }
    for routing in ROUTINGS:
        for group_size in (16, 8, 4):
            for width in (1, 8):
                parts[f"ActivationRouter {routing} G={group_size} act_width={width}"] = (
                    lambda r=routing, g=group_size, w=width:
                    ActivationRouter(group_size=g, high=g // 2, act_width=w, routing=r))
    for name, make in parts.items():
        yield name, generic_area(verilog.convert(make(), name="top"), "top", liberty=liberty)


def _row(label, area, base):
    cells = f"{area['cells']}"
    change = f"{100 * (area['transistors'] / base['transistors'] - 1):+.1f}%"
    row = [label, cells, str(area["transistors"]), change]
    if "lib_area" in area:
        row += [f"{area['lib_area']:.0f}", f"{100 * (area['lib_area'] / base['lib_area'] - 1):+.1f}%"]
    return "| " + " | ".join(row) + " |"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m strum.synth.pe_area", description=__doc__.split("\n")[0])
    parser.add_argument("--scheme", nargs="+", default=["dliq", "mip2q"], choices=["dliq", "mip2q", "zero"])
    parser.add_argument("--variant", nargs="+", default=["static"], choices=["static", "dynamic"])
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--high-lanes", type=int, default=None, help="default: block_size / 2")
    parser.add_argument("--group-size", type=int, nargs="+", default=[16])
    parser.add_argument("--routing", nargs="+", default=["onehot"], choices=ROUTINGS)
    parser.add_argument("--adder-stages", type=int, default=1)
    parser.add_argument("--acc-width", type=int, default=32)
    parser.add_argument("--no-liberty", action="store_true", help="skip the OSU 0.18 um mapping")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--components", action="store_true",
                        help="measure the PE's parts and routers instead of whole PEs")
    args = parser.parse_args(argv)
    liberty = None if args.no_liberty else find_osu018_liberty()
    if args.components:
        for name, area in component_areas(liberty):
            lib = f" | {area['lib_area']:.0f}" if "lib_area" in area else ""
            print(f"| {name} | {area['transistors']}{lib} |", flush=True)
        return
    B = args.block_size
    H = B // 2 if args.high_lanes is None else args.high_lanes
    base_config = StrumConfig(scheme="int8", block_size=B, acc_width=args.acc_width)
    base = pe_area(base_config, adder_stages=args.adder_stages, liberty=liberty)
    header = ["design", "cells", "transistors", "vs int8"] + (["OSU um^2", "vs int8"] if liberty else [])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print(_row(f"int8 PE, B={B}", base, base), flush=True)
    figures = [{"design": "int8", "block_size": B, **base}]
    points = itertools.product(args.scheme, args.variant, args.group_size, args.routing)
    for scheme, variant, group_size, routing in points:
        if variant == "dynamic" and (group_size != args.group_size[0] or routing != args.routing[0]):
            continue                                   # no routing in the dynamic PE
        config = StrumConfig(scheme=scheme, block_size=B, high_lanes=H, group_size=group_size,
                             acc_width=args.acc_width)
        area = pe_area(config, variant=variant, routing=routing, adder_stages=args.adder_stages,
                       liberty=liberty)
        label = (f"{scheme} dynamic, B={B}" if variant == "dynamic"
                 else f"{scheme} static, B={B} H={H} G={group_size}, {routing}")
        print(_row(label, area, base), flush=True)
        figures.append({"design": label, "scheme": scheme, "variant": variant, "group_size": group_size,
                        "routing": routing, **area})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
