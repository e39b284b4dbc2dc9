"""Reading Yosys ``stat -json`` into totals and a breakdown by part; comparison tables.

Each module of the kept hierarchy is counted once per instance, by its own cells only
(``stat`` reports hierarchical areas for a parent, which would count children twice).
Flip-flops go to the ``registers`` part wherever they sit; the logic around them
(enables, resets, the adders of the accumulator) stays with the part that owns them.

Metrics by flow: ``generic`` cells, transistors, ffs; ``asic`` cells, area_um2, ffs;
``ice40``/``ecp5`` cells, luts, ffs. The others are None.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re

from .designs import PARTS, part_of
from .tools import SynthError

__all__ = ["METRICS", "CMOS_TRANSISTORS", "ModuleStats", "module_stats", "totals", "breakdown",
           "check_totals", "breakdown_markdown", "compare_rows", "rows_markdown", "rows_csv", "reduction_pct"]

METRICS = ("area_um2", "cells", "transistors", "luts", "ffs")

#: Transistors per cell, Yosys's ``CellCosts::cmos_gate_cost`` (what ``stat -tech cmos`` uses).
CMOS_TRANSISTORS = {
    "$_BUF_": 1, "$_NOT_": 2, "$_AND_": 6, "$_NAND_": 4, "$_OR_": 6, "$_NOR_": 4,
    "$_ANDNOT_": 6, "$_ORNOT_": 6, "$_XOR_": 12, "$_XNOR_": 12, "$_AOI3_": 6, "$_OAI3_": 6,
    "$_AOI4_": 8, "$_OAI4_": 8, "$_MUX_": 12, "$_NMUX_": 10, "$_DFF_P_": 16, "$_DFF_N_": 16,
}
_GENERIC_FF = re.compile(r"\$_(S?DFF|DFFE|SDFF|ALDFF|DFFSR|DLATCH|SR)")
#: Hard multipliers that would hide the lanes' logic from the LUT count.
_DSP_CELLS = {"ice40": ("SB_MAC16",), "ecp5": ("MULT18X18D", "MULT9X9D", "ALU54B", "ALU24B")}
#: LUT4 equivalents of the FPGA cells that hold LUTs (an ECP5 CCU2C carry cell is two LUT4s).
_LUTS = {"ice40": {"SB_LUT4": 1}, "ecp5": {"LUT4": 1, "CCU2C": 2}}
_FPGA_FF = {"ice40": re.compile(r"SB_DFF\w*"), "ecp5": re.compile(r"TRELLIS_FF")}


@dataclasses.dataclass
class ModuleStats:
    """One module below the design's root: its path, instance count and own cells."""

    path: tuple
    instances: int
    logic: dict        # metrics of its combinational cells
    registers: dict    # metrics of its flip-flops


def _empty(flow: str) -> dict:
    return {
        "area_um2": 0.0 if flow == "asic" else None,
        "cells": 0,
        "transistors": 0 if flow == "generic" else None,
        "luts": 0 if flow in _LUTS else None,
        "ffs": 0,
    }


def _add(into: dict, other: dict, times: int = 1) -> None:
    for key, value in other.items():
        if value is not None:
            into[key] += value * times


def _cell_metrics(cells_by_type: dict, flow: str, liberty, path) -> tuple[dict, dict]:
    logic, registers = _empty(flow), _empty(flow)
    for cell, count in cells_by_type.items():
        if flow == "generic":
            sequential = bool(_GENERIC_FF.match(cell))
            if cell not in CMOS_TRANSISTORS:
                raise SynthError(f"module {'.'.join(path) or 'top'}: cell {cell} has no CMOS "
                                 f"transistor count (the generic flow should map to CMOS gates)")
            metrics = {"transistors": CMOS_TRANSISTORS[cell]}
        elif flow == "asic":
            sequential = cell in liberty.sequential
            metrics = {"area_um2": liberty.area(cell)}
        else:
            if cell in _DSP_CELLS[flow]:
                raise SynthError(f"module {'.'.join(path) or 'top'} holds {count} {cell} cells: the "
                                 f"{flow} flow must build multipliers from LUTs")
            sequential = bool(_FPGA_FF[flow].fullmatch(cell))
            metrics = {"luts": _LUTS[flow].get(cell, 0)}
        target = registers if sequential else logic
        target["cells"] += count
        target["ffs"] += count if sequential else 0
        for key, value in metrics.items():
            target[key] += value * count
    return logic, registers


def module_stats(stat: dict, *, flow: str, root: str, liberty=None) -> list[ModuleStats]:
    """The modules at and below ``root`` in a ``stat -json`` report, with their own cells."""
    modules = {name.lstrip("\\"): data for name, data in stat["modules"].items()}
    if root not in modules:
        raise SynthError(f"the synthesized netlist has no module {root!r}")
    instances: dict[str, int] = {}

    def visit(name: str, times: int) -> None:
        instances[name] = instances.get(name, 0) + times
        for cell, count in modules[name]["num_cells_by_type"].items():
            child = cell.lstrip("\\")
            if child in modules:
                visit(child, times * count)

    visit(root, 1)
    result = []
    for name, times in instances.items():
        path = () if name == root else tuple(name[len(root) + 1:].split("."))
        own = {cell: count for cell, count in modules[name]["num_cells_by_type"].items()
               if cell.lstrip("\\") not in modules}
        logic, registers = _cell_metrics(own, flow, liberty, path)
        result.append(ModuleStats(path=path, instances=times, logic=logic, registers=registers))
    return result


def totals(stats: list[ModuleStats]) -> dict:
    """The design's area_um2, cells, transistors, luts and ffs (None where not measured)."""
    flow_total = None
    for module in stats:
        if flow_total is None:
            flow_total = {key: (None if value is None else 0) for key, value in module.logic.items()}
        _add(flow_total, module.logic, module.instances)
        _add(flow_total, module.registers, module.instances)
    return _rounded(flow_total)


def check_totals(stat: dict, total: dict, flow: str) -> None:
    """Check our per-module sums against Yosys's own design totals (root = top only)."""
    design = stat.get("design", {})
    if flow == "generic" and "estimated_num_transistors" in design:
        theirs = str(design["estimated_num_transistors"])
        if theirs.endswith("+") or int(theirs) != total["transistors"]:
            raise SynthError(f"transistor count {total['transistors']} does not match Yosys's "
                             f"estimate {theirs}")
    if flow == "asic" and "area" in design:
        if abs(float(design["area"]) - total["area_um2"]) > 1e-6 * max(1.0, total["area_um2"]):
            raise SynthError(f"area {total['area_um2']} does not match Yosys's {design['area']}")


def breakdown(stats: list[ModuleStats]) -> dict:
    """``{"parts": {part: metrics}, "ffs_by_part": {part: n}}``, parts in :data:`PARTS` order.

    ``parts`` adds up exactly to :func:`totals`: each part holds the combinational cells
    of its modules, ``registers`` every flip-flop. ``ffs_by_part`` says whose flip-flops
    ``registers`` holds.
    """
    parts, ffs_by_part = {}, {}
    for module in stats:
        part = part_of(module.path)
        for name, metrics in ((part, module.logic), ("registers", module.registers)):
            if name not in parts:
                parts[name] = {key: (None if value is None else 0) for key, value in metrics.items()}
            _add(parts[name], metrics, module.instances)
        if module.registers["ffs"]:
            ffs_by_part[part] = ffs_by_part.get(part, 0) + module.registers["ffs"] * module.instances
    ordered = {name: _rounded(parts[name]) for name in PARTS if name in parts}
    return {"parts": ordered, "ffs_by_part": {name: ffs_by_part[name] for name in PARTS
                                              if name in ffs_by_part}}


def _rounded(metrics: dict) -> dict:
    return {key: (round(value, 3) if isinstance(value, float) else value)
            for key, value in metrics.items()}


# -- comparisons --------------------------------------------------------------------

def reduction_pct(baseline, value) -> float | None:
    """``100 * (baseline - value) / baseline``: positive when ``value`` is smaller."""
    if baseline in (None, 0) or value is None:
        return None
    return round(100.0 * (baseline - value) / baseline, 2)


def _main_metric(report: dict) -> str:
    return {"generic": "transistors", "asic": "area_um2"}.get(report["flow"], "luts")


def compare_rows(baseline: dict, design: dict) -> list[dict]:
    """Rows ``{"metric", "int8", "strum", "reduction_pct"}``: totals, Fmax, then parts.

    Part rows use the flow's main metric (transistors, area_um2 or luts) and are named
    ``part:<name>``; a part absent from one design counts as 0 there.
    """
    rows = []
    for metric in METRICS:
        if baseline.get(metric) is None and design.get(metric) is None:
            continue
        rows.append({"metric": metric, "int8": baseline.get(metric), "strum": design.get(metric),
                     "reduction_pct": reduction_pct(baseline.get(metric), design.get(metric))})
    if baseline.get("fmax_mhz") and design.get("fmax_mhz"):
        a, b = baseline["fmax_mhz"]["median"], design["fmax_mhz"]["median"]
        rows.append({"metric": "fmax_mhz_median", "int8": a, "strum": b,
                     "reduction_pct": reduction_pct(a, b)})
    if baseline.get("breakdown") and design.get("breakdown"):
        metric = _main_metric(design)
        a, b = baseline["breakdown"]["parts"], design["breakdown"]["parts"]
        for part in PARTS:
            if part in a or part in b:
                x = a.get(part, {}).get(metric) or 0
                y = b.get(part, {}).get(metric) or 0
                rows.append({"metric": f"part:{part} ({metric})", "int8": x, "strum": y,
                             "reduction_pct": reduction_pct(x, y) if x else None})
    return rows


def breakdown_markdown(report: dict) -> str:
    """A summary line of a report and, when it has one, its breakdown as a Markdown table."""
    design = report["design"]
    figures = [f"{key} {_cell(report[key])}" for key in METRICS if report.get(key) is not None]
    if report.get("fmax_mhz"):
        f = report["fmax_mhz"]
        figures.append(f"Fmax {f['min']:.1f}/{f['median']:.1f}/{f['max']:.1f} MHz (min/median/max "
                       f"of {len(f['by_seed'])} seeds)")
    text = (f"{design['name']}, flow {report['flow']}: {', '.join(figures)}"
            f"{' (cached)' if report.get('cached') else ''}\n")
    if not report.get("breakdown"):
        return text
    metric = _main_metric(report)
    parts = report["breakdown"]["parts"]
    total = sum(p[metric] for p in parts.values()) or 1
    rows = [{"part": name, metric: p[metric], "share_pct": round(100.0 * p[metric] / total, 1),
             "ffs": report["breakdown"]["ffs_by_part"].get(name, p["ffs"] if name == "registers" else 0)}
            for name, p in parts.items()]
    return text + "\n" + rows_markdown(rows, ("part", metric, "share_pct", "ffs"))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}"


def rows_markdown(rows: list[dict], columns=None) -> str:
    """A Markdown table of ``rows`` (columns: the first row's keys unless given)."""
    columns = list(columns or rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) if not isinstance(row.get(c), str)
                                       else row[c] for c in columns) + " |")
    return "\n".join(lines) + "\n"


def rows_csv(rows: list[dict], columns=None) -> str:
    columns = list(columns or rows[0])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else
                             json.dumps(row[c]) if isinstance(row.get(c), (dict, list)) else row[c])
                         for c in columns})
    return out.getvalue()
