"""The calibration table of docs/accuracy.md from `strum eval --report` files.

Usage: ``python scripts/calibration_table.py REPORT.json [MORE.json ...]``. Reports of
the same task (model and data) are merged, later files adding rows; each task gets one
Markdown table: scheme, method, bits per weight, static-PE cycles against the int8 PE,
output SQNR, and top-1 / agreement (images) or frame accuracy / agreement (speech).
"""

import json
import sys


def rows(report):
    speech = report.get("data") == "speech"
    for label, row in report["schemes"].items():
        cycles = (row.get("pe_cycles") or {}).get("static_vs_int8_pe")
        policy = row.get("policy") or {}
        budget = ", ".join(text for key, text in (("budget_bits", "bits <= %g"),
                                                   ("budget_cycles", "cycles <= %gx"))
                           if policy.get(key)
                           for text in [text % policy[key]]) or "no budget"
        heights = "/".join(str(layer["high_lanes"]) for layer in policy.get("layers", []))
        yield label + (f" ({budget}; H {heights})" if policy else ""), {
            "bits": row["bits_per_weight"],
            "cycles": cycles,
            "sqnr": row["output_sqnr_db"],
            "score": row["accuracy"] if speech else row["top1"],
            "agreement": row["agreement"] if speech else row["top1_agreement"],
        }


def main(paths):
    tasks = {}
    for path in paths:
        with open(path) as stream:
            report = json.load(stream)
        key = (report["model"], report["data"])
        tasks.setdefault(key, {"speech": report.get("data") == "speech", "rows": {}})
        tasks[key]["rows"].update(rows(report))
    for (model, data), task in tasks.items():
        score = "frame accuracy %" if task["speech"] else "top-1 %"
        print(f"**{model} on {data}**\n")
        print(f"| scheme | bits/weight | static PE cycles / int8 PE | output SQNR dB | {score} | agreement % |")
        print("|---|---|---|---|---|---|")
        for label, row in task["rows"].items():
            cycles = "1.00" if row["cycles"] is None else f"{row['cycles']:.2f}"
            print(f"| {label} | {row['bits']:.3f} | {cycles} | {row['sqnr']:.1f} | "
                  f"{100 * row['score']:.2f} | {100 * row['agreement']:.2f} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
