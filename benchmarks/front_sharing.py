"""The area / accuracy front of every routing option, on the strongest int8 baseline.

Reads the JSON of ``benchmarks/synth_dpu.py`` (area per PE inside the DPU) and of
``benchmarks/quality_sharing.py`` (weight SQNR, top-1 and output SQNR), and plots area
reduction against weight SQNR (MNIST CNN and silero-vad) and against MNIST output SQNR
(top-1 is saturated on these tasks: every option is within 0.1 points of float)::

    python benchmarks/front_sharing.py dpu.json quality.json -o docs/front-sharing.png
"""

from __future__ import annotations

import argparse
import json
import sys


def _quality_key(option: str, K):
    """(scheme, G, K or 'fixed') of a synth_dpu row label."""
    words = option.split()
    scheme = words[0]
    if scheme == "int8":
        return ("int8", "", "")
    if words[1] == "fixed":
        G = int(words[2].strip("(G=").split()[0])
        return (scheme, "", "fixed", G)
    G = int(words[1][2:])
    return (scheme, G, K if K != "" else 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dpu_json")
    parser.add_argument("quality_json")
    parser.add_argument("--array", default="4x4")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dpu = json.load(open(args.dpu_json))
    quality = json.load(open(args.quality_json))
    rows = dpu[args.array]
    fixed_quality = [q for q in quality if q["K"] == "fixed"]

    def quality_of(row):
        key = _quality_key(row["option"], row["K"])
        if key[2] == "fixed":
            # quality_sharing lists fixed rows after each G's K rows, in G order.
            candidates = [q for q in fixed_quality if q["scheme"] == key[0]]
            index = [g for g in (16, 4)].index(key[3]) if key[3] in (16, 4) else 0
            return candidates[min(index, len(candidates) - 1)]
        for q in quality:
            if q["scheme"] == key[0] and str(q["G"]) == str(key[1]) and str(q["K"]) == str(key[2]):
                return q
        return None

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained", sharey=True)
    colors = {"int8": "black", "dliq": "tab:blue", "mip2q": "tab:orange"}
    for row in rows:
        q = quality_of(row)
        reduction = row["reduction %"]
        scheme = row["option"].split()[0]
        label = row["option"] + (f" K={row['K']}" if row["K"] not in ("", 1) else "")
        for model, marker in (("MNIST", "o"), ("silero", "s")):
            axes[0].scatter(row[f"SQNR {model} dB"], reduction, marker=marker, color=colors[scheme],
                            facecolors="none" if model == "silero" else colors[scheme], zorder=3)
        axes[0].annotate(label, (row["SQNR MNIST dB"], reduction), fontsize=6, xytext=(3, 2),
                         textcoords="offset points")
        if q is not None:
            axes[1].scatter(q["mnist output SQNR dB"], reduction, color=colors[scheme], zorder=3)
            axes[1].annotate(f"{label} ({q['mnist top-1 %']:.2f}%)", (q["mnist output SQNR dB"], reduction),
                             fontsize=6, xytext=(3, 2), textcoords="offset points")
    for ax in axes:
        ax.axhline(25, color="green", linestyle=":", linewidth=1)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.grid(True, alpha=0.3)
    axes[0].axvline(30, color="green", linestyle=":", linewidth=1, label="goal: 25 % at 30 dB")
    axes[0].set_xlabel("weight SQNR, dB (filled: MNIST CNN, hollow: silero-vad)")
    axes[1].set_xlabel("MNIST CNN output SQNR of integer inference, dB (top-1 in brackets)")
    axes[0].set_ylabel(f"area per PE inside a {args.array} DPU: reduction against the\n"
                       f"strongest int8 DPU, % (asic, OSU 0.18 um)")
    axes[0].legend(fontsize=7, loc="lower left")
    figure.suptitle("StruM routing options against the strongest int8 design (B = 16, H = 8)")
    figure.savefig(args.output, dpi=140)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
