"""Proof times of the PE: every part of every PE of the verification matrix.

Run: ``python benchmarks/bench_prove.py [--quick] [--json OUT.json]``. For each PE
(int8; static and dynamic dliq, mip2q and zero at (B, G) = (16, 16), (16, 8), (16, 4)
and B = 4, 8, 32 at G = B; H = B/2, one adder stage) it proves the four parts of
``strum.formal`` and prints each part's CPU seconds (Yosys's, from ``getrusage``: on a
shared machine wall time mostly measures the other jobs) and wall seconds.

The goal (issue 14): all parts of the B = 16, G = 16 static PE in under 30 s. The
baseline, measured in the same run, is the int8 PE of the same B (no routing, no low
lanes); the ratio says what StruM's routing and low lanes cost the proof.
``--quick`` runs only those two.
"""

import argparse
import json
import time

from strum.formal.prove import prove_pe
from strum.hw.pe import StrumPE
from strum.quant.config import StrumConfig

TARGET_SECONDS = 30.0


def matrix(quick: bool):
    yield "int8", 16, None, "int8"
    yield "dliq", 16, None, "static"
    if quick:
        return
    for block in (4, 8, 32):
        yield "int8", block, None, "int8"
    for variant in ("static", "dynamic"):
        for scheme in ("dliq", "mip2q", "zero"):
            for block, group in ((16, None), (16, 8), (16, 4), (4, None), (8, None), (32, None)):
                if (scheme, block, group, variant) != ("dliq", 16, None, "static"):
                    yield scheme, block, group, variant


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the B=16 static dliq PE and its baseline")
    parser.add_argument("--json", default=None, metavar="OUT.json")
    args = parser.parse_args()
    rows = []
    print(f"{'PE':32s} {'route':>7s} {'lanes':>7s} {'sum':>7s} {'hold':>7s} {'CPU s':>7s} {'wall s':>7s}  proven")
    for scheme, block, group, variant in matrix(args.quick):
        high = block if scheme == "int8" else block // 2
        config = StrumConfig(scheme=scheme, block_size=block, high_lanes=high, group_size=group)
        start = time.perf_counter()
        report = prove_pe(StrumPE(config=config, variant=variant))
        wall = time.perf_counter() - start
        cpu = {part.part: part.cpu_seconds for part in report.parts}
        name = f"{scheme} {variant} B={block} G={config.group_size}"
        print(f"{name:32s} " + " ".join(f"{cpu[p]:7.1f}" for p in ("route", "lanes", "sum", "hold"))
              + f" {sum(cpu.values()):7.1f} {wall:7.1f}  {report.proven}", flush=True)
        rows.append({"scheme": scheme, "variant": variant, "block": block, "group": config.group_size,
                     "cpu_seconds": cpu, "wall_seconds": round(wall, 2), "proven": report.proven,
                     "statuses": {part.part: part.status for part in report.parts}})
    by_name = {(r["scheme"], r["variant"], r["block"], r["group"]): r for r in rows}
    strum = by_name[("dliq", "static", 16, 16)]
    baseline = by_name[("int8", "int8", 16, 16)]
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
