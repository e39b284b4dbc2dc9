"""Proof times of the PE: every part of every PE of the verification matrix.

Run: ``python benchmarks/bench_prove.py [--quick] [--json OUT.json]``. For each PE
(int8; static and dynamic dliq, mip2q and zero at (B, G) = (16, 16), (16, 8), (16, 4)
and B = 4, 8, 32 at G = B; H = B/2, one adder stage) it proves the four parts of
``strum.formal`` and prints each part's CPU seconds (Yosys's, from ``getrusage``: on a
shared machine wall time mostly measures the other jobs) and wall seconds.

The goal (issue 14): all parts of the B = 16, G = 16 static PE in under 30 s. The
baseline, measured in the same run, is the int8 PE of the same B (no routing, no low
lanes); the ratio says what StruM's routing and low lanes cost the proof.
``--quick`` runs only those two; ``--variants`` a subset. A dynamic PE with G < B has
the same Verilog as with G = B (checked by hash), so its row reuses that proof.
"""

import argparse
import hashlib
import json
import time

from strum.formal.prove import prove_pe
from strum.hw.export import to_verilog
from strum.hw.pe import StrumPE
from strum.quant.config import StrumConfig

TARGET_SECONDS = 30.0


def matrix(quick: bool, variants):
    if "int8" in variants:
        yield "int8", 16, None, "int8"
    if "static" in variants:
        yield "dliq", 16, None, "static"
    if quick:
        return
    for block in (4, 8, 32):
        if "int8" in variants:
            yield "int8", block, None, "int8"
    for variant in ("static", "dynamic"):
        if variant not in variants:
            continue
        for scheme in ("dliq", "mip2q", "zero"):
            for block, group in ((16, None), (16, 8), (16, 4), (4, None), (8, None), (32, None)):
                if (scheme, block, group, variant) != ("dliq", 16, None, "static"):
                    yield scheme, block, group, variant


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the B=16 static dliq PE and its baseline")
    parser.add_argument("--json", default=None, metavar="OUT.json")
    parser.add_argument("--variants", default="int8,static,dynamic",
                        help="comma-separated subset of int8, static, dynamic (default: all)")
    parser.add_argument("--schemes", default="int8,dliq,mip2q,zero",
                        help="comma-separated subset of the schemes (default: all)")
    parser.add_argument("--blocks", default="4,8,16,32", help="comma-separated subset of B (default: all)")
    parser.add_argument("--router-register", action="store_true",
                        help="PEs with the pipeline register between routing and lanes")
    parser.add_argument("--shared", default="none", choices=("none", "decode", "route"),
                        help="static PEs whose row decodes the mask or whose edge routes "
                             "(the int8 baseline and dynamic PEs are left as they are)")
    args = parser.parse_args()
    blocks = [int(b) for b in args.blocks.split(",")]
    variants, schemes = args.variants.split(","), args.schemes.split(",")
    rows, proven_verilog = [], {}
    print(f"{'PE':32s} {'prepare':>7s} {'route':>7s} {'lanes':>7s} {'sum':>7s} {'hold':>7s} {'CPU s':>7s} {'wall s':>7s}  proven")
    for scheme, block, group, variant in matrix(args.quick, variants):
        if scheme not in schemes or block not in blocks:
            continue
        high = block if scheme == "int8" else block // 2
        config = StrumConfig(scheme=scheme, block_size=block, high_lanes=high, group_size=group)
        options = {"router_register": args.router_register}
        if variant == "static" and args.shared != "none":
            options["shared"] = args.shared
        pe = StrumPE(config=config, variant=variant, **options)
        name = (f"{scheme} {variant} B={block} G={config.group_size}"
                + (" rr" if args.router_register else "") + (f" {args.shared}" if "shared" in options else ""))
        # The dynamic PE has no router: its Verilog (and checkers) do not depend on G.
        digest = hashlib.sha256(to_verilog(pe, "strum_pe").encode()).hexdigest()
        if variant == "dynamic" and digest in proven_verilog:
            same = proven_verilog[digest]
            print(f"{name:32s} same Verilog as {same['name']}: its proof covers it  {same['proven']}")
            rows.append({**same, "group": config.group_size, "same_as": same["name"]})
            continue
        start = time.perf_counter()
        report = prove_pe(pe)
        wall = time.perf_counter() - start
        cpu = {"prepare": report.prepare_cpu_seconds, **{part.part: part.cpu_seconds for part in report.parts}}
        print(f"{name:32s} " + " ".join(f"{cpu[p]:7.1f}" for p in ("prepare", "route", "lanes", "sum", "hold"))
              + (f" edge {cpu['edge']:.1f}" if "edge" in cpu else "")
              + f" {sum(cpu.values()):7.1f} {wall:7.1f}  {report.proven}", flush=True)
        rows.append({"scheme": scheme, "variant": variant, "block": block, "group": config.group_size,
                     "router_register": args.router_register, "shared": options.get("shared", "none"),
                     "cpu_seconds": cpu, "wall_seconds": round(wall, 2), "proven": report.proven,
                     "statuses": {part.part: part.status for part in report.parts}, "name": name})
        proven_verilog[digest] = rows[-1]
    by_name = {(r["scheme"], r["variant"], r["block"], r["group"]): r for r in rows}
    strum = by_name.get(("dliq", "static", 16, 16))
    baseline = by_name.get(("int8", "int8", 16, 16))
    if strum is None or baseline is None:
        print(f"\n{sum(r['proven'] for r in rows)} of {len(rows)} PEs proven")
        raise SystemExit(0 if all(r["proven"] for r in rows) else 1)
    strum_cpu, base_cpu = sum(strum["cpu_seconds"].values()), sum(baseline["cpu_seconds"].values())
    print(f"\nB=16 G=16 static dliq, all parts: {strum_cpu:.1f} s CPU, {strum['wall_seconds']:.1f} s wall "
          f"(goal < {TARGET_SECONDS:.0f} s: {'met' if strum_cpu < TARGET_SECONDS else 'NOT met'} in CPU, "
          f"{'met' if strum['wall_seconds'] < TARGET_SECONDS else 'NOT met'} in wall time)")
    print(f"baseline int8 PE B=16: {base_cpu:.1f} s CPU; StruM / int8 = {strum_cpu / base_cpu:.2f}x")
    failed = [r for r in rows if not r["proven"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} PEs proven")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(rows, stream, indent=2)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
