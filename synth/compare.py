"""A StruM design beside the strongest int8 design of the same block size, through one flow.

The int8 baseline is built with plain array multipliers (Yosys's default) and, where the
flow offers them (generic, asic), with Booth multipliers (``synth -booth``); the smaller
of the two is the baseline, and the StruM design is synthesized with the same multiplier
kind, so its 8x8 high lanes are built exactly like the int8 PE's. ``multiplier="array"``
or ``"booth"`` fixes the kind instead.
"""

from __future__ import annotations

import dataclasses
import json

from .designs import Design
from .flows import synthesize
from .reports import compare_rows, rows_csv, rows_markdown

__all__ = ["int8_baseline", "compare", "comparison_table", "TABLE_FORMATS", "MULTIPLIERS",
           "BOOTH_FLOWS", "multiplier_candidates", "resolve_multiplier", "strongest_int8"]

TABLE_FORMATS = ("markdown", "json", "csv")
#: ``best``: the smaller int8 design of array and Booth; ``array``/``booth``: that kind.
MULTIPLIERS = ("best", "array", "booth")
#: Flows that can build Booth multipliers (the FPGA flows map multipliers to LUTs their own way).
BOOTH_FLOWS = ("generic", "asic")
_COLUMNS = ("metric", "int8", "strum", "reduction_pct")
_METRIC = {"generic": "transistors", "asic": "area_um2"}


def int8_baseline(design: Design) -> Design:
    """The int8 design of the same kind, B, accumulator and array size as ``design``."""
    c = design.config
    config = c.replace(scheme="int8", high_lanes=c.block_size, group_size=c.block_size,
                       mask_share=1)
    # The int8 PE has no router: its routing option is left at the default.
    return dataclasses.replace(design, config=config, variant="int8", routing=None, shared="none")


def multiplier_candidates(flow: str, multiplier: str = "best") -> tuple[bool, ...]:
    """The ``booth`` settings to try for ``multiplier`` on ``flow``."""
    if multiplier not in MULTIPLIERS:
        raise ValueError(f"multiplier must be one of {', '.join(MULTIPLIERS)}, not {multiplier!r}")
    if multiplier == "array" or flow not in BOOTH_FLOWS:
        return (False,)
    return (True,) if multiplier == "booth" else (False, True)


def resolve_multiplier(options: dict, multiplier: str | None) -> tuple[str, dict]:
    """An explicit ``booth`` option (the old interface) fixes the multiplier kind."""
    options = dict(options)
    booth = options.pop("booth", None)
    if multiplier is None:
        multiplier = "best" if booth is None else ("booth" if booth else "array")
    return multiplier, options


def strongest_int8(design: Design, flow: str, *, multiplier: str | None = None,
                   **options) -> tuple[dict, bool, dict]:
    """The int8 baseline of ``design`` with the multiplier kind that makes it smallest.

    Returns
    -------
    (report, booth, by_kind)
        The winning report, whether it used Booth multipliers, and the main metric of
        every kind tried (``{"array": ..., "booth": ...}``).
    """
    multiplier, options = resolve_multiplier(options, multiplier)
    base = int8_baseline(design)
    metric = _METRIC.get(flow, "luts")
    reports = {booth: synthesize(base, flow, booth=booth, **options)
               for booth in multiplier_candidates(flow, multiplier)}
    booth = min(reports, key=lambda b: (reports[b][metric], b))
    by_kind = {("booth" if b else "array"): r[metric] for b, r in reports.items()}
    return reports[booth], booth, by_kind


def compare(design: Design, flow: str, *, multiplier: str | None = None, **options) -> dict:
    """Synthesize ``design`` and its strongest int8 baseline with the same flow and options.

    Parameters
    ----------
    multiplier : str or None
        One of :data:`MULTIPLIERS` (default ``best``; an explicit ``booth=True/False``
        option means ``booth``/``array``).

    Returns
    -------
    dict
        ``{"flow", "multiplier", "int8_by_multiplier", "baseline": report, "design": report,
        "rows": [...]}`` where each row is ``{"metric", "int8", "strum", "reduction_pct"}``
        (see :func:`~strum.synth.reports.compare_rows`); ``reduction_pct`` is positive when
        the StruM design is smaller; ``multiplier`` names the kind that won (``array`` or
        ``booth``), used by both designs.
    """
    multiplier, options = resolve_multiplier(options, multiplier)
    baseline, booth, by_kind = strongest_int8(design, flow, multiplier=multiplier, **options)
    report = synthesize(design, flow, booth=booth, **options)
    return {"flow": flow, "multiplier": "booth" if booth else "array",
            "int8_by_multiplier": by_kind, "baseline": baseline, "design": report,
            "rows": compare_rows(baseline, report)}


def comparison_table(result: dict, fmt: str = "markdown") -> str:
    """The rows of :func:`compare` as Markdown, JSON or CSV."""
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(TABLE_FORMATS)}, not {fmt!r}")
    if fmt == "json":
        return json.dumps(result, indent=1) + "\n"
    if fmt == "csv":
        return rows_csv(result["rows"], _COLUMNS)
    name = result["design"]["design"]["name"]
    kinds = ", ".join(f"{kind} {value:,}" for kind, value in result.get("int8_by_multiplier", {}).items())
    title = (f"{name} against {result['baseline']['design']['name']}, flow {result['flow']}, "
             f"{result.get('multiplier', 'array')} multipliers in both (the smaller int8 PE of: "
             f"{kinds}; reduction: positive when StruM is smaller)\n\n")
    return title + rows_markdown(result["rows"], _COLUMNS)
