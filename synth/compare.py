"""A StruM design beside the int8 design of the same block size, through one flow."""

from __future__ import annotations

import dataclasses
import json

from .designs import Design
from .flows import synthesize
from .reports import compare_rows, rows_csv, rows_markdown

__all__ = ["int8_baseline", "compare", "comparison_table", "TABLE_FORMATS"]

TABLE_FORMATS = ("markdown", "json", "csv")
_COLUMNS = ("metric", "int8", "strum", "reduction_pct")


def int8_baseline(design: Design) -> Design:
    """The int8 design of the same kind, B, accumulator and array size as ``design``."""
    c = design.config
    config = c.replace(scheme="int8", high_lanes=c.block_size, group_size=c.block_size)
    # The int8 PE has no router: its routing option is left at the default.
    return dataclasses.replace(design, config=config, variant="int8", routing=None)


def compare(design: Design, flow: str, **options) -> dict:
    """Synthesize ``design`` and its int8 baseline with the same flow and options.

    Returns
    -------
    dict
        ``{"flow", "baseline": report, "design": report, "rows": [...]}`` where each row
        is ``{"metric", "int8", "strum", "reduction_pct"}`` (see
        :func:`~strum.synth.reports.compare_rows`); ``reduction_pct`` is positive when
        the StruM design is smaller.
    """
    baseline = synthesize(int8_baseline(design), flow, **options)
    report = synthesize(design, flow, **options)
    return {"flow": flow, "baseline": baseline, "design": report,
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
    title = (f"{name} against {result['baseline']['design']['name']}, flow {result['flow']} "
             f"(reduction: positive when StruM is smaller)\n\n")
    return title + rows_markdown(result["rows"], _COLUMNS)
