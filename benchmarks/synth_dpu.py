"""Pay the routing once: StruM PEs and DPUs against the strongest int8 design (asic).

B = 16, H = 8, OSU 0.18 um, hierarchy kept. Every int8 design is built with array and
Booth multipliers and the smaller is the baseline (``strum.synth.compare``); the StruM
designs use the same multiplier kind. Options:

- ``none``: every PE decodes its mask and routes its activations (the PE of the paper);
- ``decode``: one mask decoder per DPU row (and selection group); PEs keep the muxes;
- ``route K``: masks shared by K output channels (``mask_share``), activations routed
  once per column and K rows at the array edge; PEs have no router;
- ``fixed``: fixed high lanes through an input-channel permutation (``quant/fixed.py``):
  no router anywhere. Its DPU area is the ``route`` DPU's without its edge routers and
  decoders (both measured parts of the breakdown), since fixed lanes are wires.

Per PE = DPU area / (R x C): sequencer and edge routers shared out. Weight SQNR pooled
over all weights of the packaged MNIST CNN and silero-vad. The goal of issue 12: a design
point at least 25 % below the strongest int8 PE (per PE, inside a 4 x 4 DPU) at 30 dB
weight SQNR or more on both models. Also a stated buffer model (see ``--help``)::

    python benchmarks/synth_dpu.py --markdown dpu.md --json dpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from strum.quant.config import StrumConfig
from strum.quant.files import write_text
from strum.quant.fixed import quantize_fixed
from strum.quant.quantize import quantize, sqnr_db
from strum.synth.designs import Design
from strum.synth.reports import reduction_pct, rows_markdown
from strum.synth.sweep import model_layers, run_sweep

GOAL_PCT, GOAL_DB = 25.0, 30.0


def _options(array):
    rows, cols = array
    # Each 4x4 B = 16 DPU takes 1-4 minutes here: K sweeps on DLIQ G = 16 only.
    opts = [("dliq", 16, "none", 1), ("dliq", 16, "decode", 1)]
    opts += [("dliq", 16, "route", K) for K in (1, 2, 4, 8) if rows % K == 0]
    opts += [("dliq", 4, "none", 1), ("dliq", 4, "decode", 1), ("dliq", 4, "route", rows),
             ("mip2q", 16, "none", 1), ("mip2q", 16, "route", rows)]
    return opts


def _sqnr(layers, config, fixed=False):
    ref, approx, bits, count = [], [], 0.0, 0
    for layer in layers:
        q = quantize_fixed(layer.weight, config) if fixed else quantize(layer.weight, config)
        ref.append(np.asarray(layer.weight, np.float64).ravel())
        approx.append(q.dequantize().ravel())
        bits += q.bits_per_weight * layer.weight.size
        count += layer.weight.size
    return sqnr_db(np.concatenate(ref), np.concatenate(approx)), bits / count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arrays", default="4x4", help="RxC,... (default: 4x4)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--sram-um2-per-bit", type=float, default=10.0,
                        help="buffer model: SRAM area per bit incl. periphery (default: 10 um^2, "
                             "a 0.18 um 6T cell of ~4.5 um^2 plus decoders and sense amplifiers)")
    parser.add_argument("--weight-buffer", type=int, default=64 * 1024,
                        help="buffer model: weights held on chip (default: 65536)")
    parser.add_argument("--act-buffer-bytes", type=int, default=64 * 1024,
                        help="buffer model: activation buffer, int8 (default: 64 KiB)")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    models = {"mnist": model_layers("mnist"), "silero": model_layers("silero")}

    quality = {}
    def quality_of(scheme, G, K, fixed=False):
        key = (scheme, G, K, fixed)
        if key not in quality:
            high = 16 if scheme == "int8" else 8
            config = StrumConfig(scheme=scheme, block_size=16, high_lanes=high, group_size=G, mask_share=K)
            quality[key] = {m: _sqnr(layers, config, fixed) for m, layers in models.items()}
        return quality[key]

    text, everything = [], {}
    # PE level: a PE alone (its own router, or none when the DPU does the work).
    pe_designs = [Design(config=StrumConfig(scheme=s, group_size=G), shared=sh)
                  for s in ("dliq", "mip2q") for G in (16, 8, 4) for sh in ("none", "decode", "route")]
    pe = run_sweep(pe_designs, "asic", workers=args.workers, progress=False)
    base = next(r for r in pe["rows"] if r["scheme"] == "int8")
    pe_rows = []
    for r in pe["rows"]:
        if r["scheme"] == "int8":
            continue
        q = quality_of(r["scheme"], r["group_size"], 1)
        pe_rows.append({"PE": f"{r['scheme']} G={r['group_size']}", "shared": r["shared"],
                        "area_um2": r["area_um2"], "int8 PE": base["area_um2"],
                        "reduction %": r["reduction_pct"],
                        "SQNR MNIST dB (K=1)": round(q["mnist"][0], 2),
                        "SQNR silero dB (K=1)": round(q["silero"][0], 2)})
    text += [f"PE alone, asic, strongest int8 PE: {base['multiplier']} multipliers, "
             f"{base['area_um2']:,.0f} um^2 (shared: what the PE leaves to its row / the edge)\n",
             rows_markdown(pe_rows)]
    everything["pe"] = pe_rows

    for array in args.arrays.split(","):
        rows, cols = map(int, array.split("x"))
        designs = [Design(kind="dpu", config=StrumConfig(scheme=s, group_size=G, mask_share=K),
                          shared=sh, rows=rows, cols=cols) for s, G, sh, K in _options((rows, cols))]
        result = run_sweep(designs, "asic", workers=args.workers, progress=False)
        from strum.synth.flows import synthesize
        int8_row = next(r for r in result["rows"] if r["scheme"] == "int8")
        int8_total = int8_row["area_um2"]
        booth = int8_row["multiplier"] == "booth"
        pes = rows * cols
        table = [{"option": "int8", "K": "", "DPU um^2": int8_total, "per PE um^2": int8_total / pes,
                  "reduction %": 0.0, "edge routing um^2": 0,
                  "SQNR MNIST dB": round(quality_of("int8", 16, 1)["mnist"][0], 2),
                  "SQNR silero dB": round(quality_of("int8", 16, 1)["silero"][0], 2),
                  "bits/w MNIST": 8.0}]
        fixed_done = set()
        for design, r in zip([None] + designs, result["rows"]):
            if r["scheme"] == "int8":
                continue
            c = design.config
            report = synthesize(design, "asic", booth=booth)
            parts = report["breakdown"]["parts"]
            edge = (parts.get("router", {}).get("area_um2", 0) or 0) + \
                (parts.get("mask_decoder", {}).get("area_um2", 0) or 0)
            q = quality_of(c.scheme, c.group_size, c.mask_share)
            label = f"{c.scheme} G={c.group_size} {design.shared}"
            table.append({"option": label, "K": c.mask_share if design.shared == "route" else "",
                          "DPU um^2": r["area_um2"], "per PE um^2": r["area_um2"] / pes,
                          "reduction %": r["reduction_pct"],
                          "edge routing um^2": edge if design.shared == "route" else "",
                          "SQNR MNIST dB": round(q["mnist"][0], 2),
                          "SQNR silero dB": round(q["silero"][0], 2),
                          "bits/w MNIST": round(q["mnist"][1], 3)})
            if design.shared == "route" and (c.scheme, c.group_size) not in fixed_done:
                fixed_done.add((c.scheme, c.group_size))
                area = r["area_um2"] - edge
                qf = quality_of(c.scheme, c.group_size, 1, fixed=True)
                table.append({"option": f"{c.scheme} fixed (G={c.group_size} lanes)", "K": "",
                              "DPU um^2": area, "per PE um^2": area / pes,
                              "reduction %": reduction_pct(int8_total, area), "edge routing um^2": 0,
                              "SQNR MNIST dB": round(qf["mnist"][0], 2),
                              "SQNR silero dB": round(qf["silero"][0], 2),
                              "bits/w MNIST": round(qf["mnist"][1], 3)})
        # The buffer model: weight buffer at each scheme's bits per weight, int8 activations.
        sram = args.sram_um2_per_bit
        act = args.act_buffer_bytes * 8 * sram
        for row in table:
            weights = args.weight_buffer * row["bits/w MNIST"] * sram
            row["with buffers um^2"] = row["DPU um^2"] + weights + act
        total8 = table[0]["with buffers um^2"]
        for row in table:
            row["with buffers reduction %"] = reduction_pct(total8, row["with buffers um^2"])
            row["goal"] = ("met" if (row["reduction %"] or 0) >= GOAL_PCT and row["SQNR MNIST dB"] >= GOAL_DB
                           and row["SQNR silero dB"] >= GOAL_DB else "")
        text += [f"\n{array} DPU, asic, {int8_row['multiplier']} multipliers (the smaller int8 DPU); "
                 f"reduction against the int8 DPU; buffer model: {args.weight_buffer:,} weights at "
                 f"the scheme's bits per weight (MNIST) + {args.act_buffer_bytes:,} B of activations, "
                 f"{sram:g} um^2 per SRAM bit\n", rows_markdown(table)]
        everything[array] = table
        met = [row["option"] + (f" K={row['K']}" if row["K"] != "" else "") for row in table if row["goal"]]
        text.append(f"\nGoal (>= {GOAL_PCT:g} % per PE inside the {array} DPU at >= {GOAL_DB:g} dB on "
                    f"MNIST and silero-vad): {'met by ' + ', '.join(met) if met else 'NOT met'}\n")
    text.append(f"\n({time.perf_counter() - start:.0f} s; syntheses cached in $STRUM_CACHE/synth)\n")
    markdown = "\n".join(text)
    print(markdown)
    if args.markdown:
        write_text(args.markdown, markdown)
    if args.json:
        write_text(args.json, json.dumps(everything, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
