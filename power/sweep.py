"""Energy columns for a sweep (``strum sweep --power``) and the energy / accuracy front.

Every PE row of a sweep (:func:`strum.synth.sweep.run_sweep`) gets its energy per block
on the asic flow's netlist (:func:`strum.power.run.compare`): zero delay and timed
(glitches included), and the reduction against the int8 PE of the same B measured on
the same blocks. All designs of one B run in one comparison, the int8 PE first.

The energy is measured with array multipliers whatever the sweep's area baseline: the
array int8 PE is the strongest int8 baseline in energy (the Booth int8 PE glitches far
more; docs/power.md), and the StruM PEs are built the same way. DPU rows get no energy
(the figures are per PE). The zero-delay activity comes from Icarus by default: for the
few hundred blocks of a sweep it is faster than a Verilator build per design, and gives
the same toggles (``tests/test_power_sim.py``).
"""

from __future__ import annotations

from pathlib import Path

from strum.synth.compare import int8_baseline
from strum.synth.sweep import ROW_FIELDS

from .run import DataSource, compare

__all__ = ["POWER_FIELDS", "DEFAULT_BLOCKS", "DEFAULT_TIMED_BLOCKS", "add_power_columns",
           "plot_energy_front"]

#: The energy columns a sweep with ``--power`` adds after :data:`ROW_FIELDS`.
POWER_FIELDS = ("energy_zero_delay_pj", "energy_zero_delay_reduction_pct", "energy_timed_pj",
                "energy_timed_reduction_pct", "energy_glitch_factor", "energy_blocks",
                "energy_timed_blocks", "energy_data")
#: Small defaults: a sweep is for the shape of the front; ``strum power`` for the figure.
DEFAULT_BLOCKS = 200
DEFAULT_TIMED_BLOCKS = 100


def add_power_columns(result: dict, designs, source: DataSource, *, blocks: int = DEFAULT_BLOCKS,
                      timed_blocks: int = DEFAULT_TIMED_BLOCKS, liberty=None,
                      zero_delay_engine: str = "icarus", reports: list | None = None) -> dict:
    """Add :data:`POWER_FIELDS` to the PE rows of a sweep ``result`` (in place, returned).

    Parameters
    ----------
    result : dict
        From :func:`~strum.synth.sweep.run_sweep` of ``designs``.
    designs : list of Design
        The sweep's designs (its rows are the int8 baselines and these, in that order).
    source : DataSource
        Random blocks (seed) or a model layer's real blocks.
    blocks, timed_blocks : int
        Zero-delay blocks (exactly, no settling) and the timed sample (0: none).
    reports : list or None
        Receives the full :func:`~strum.power.run.compare` report of each B.
    """
    tasks = list(dict.fromkeys([*(int8_baseline(d) for d in designs), *designs]))
    if len(tasks) != len(result["rows"]):
        raise ValueError("the sweep result does not match its designs")
    by_base: dict = {}
    for index, design in enumerate(tasks):
        if design.kind == "pe":
            base = int8_baseline(design)
            by_base.setdefault(base, [])
            if design != base:
                by_base[base].append(index)
    columns: dict[int, dict] = {}
    for base, indices in by_base.items():
        group = [base, *(tasks[i] for i in indices)]
        report = compare(group, source, blocks=blocks, timed_blocks=timed_blocks, liberty=liberty,
                         settle=False, zero_delay_engine=zero_delay_engine)
        if reports is not None:
            reports.append(report)
        for index, entry in zip([tasks.index(base), *indices], report["designs"]):
            zd, timed = entry["zero_delay"], entry["timed"]
            columns[index] = {
                "energy_zero_delay_pj": zd["pj_per_block"],
                "energy_zero_delay_reduction_pct": zd["reduction_vs_first_pct"],
                "energy_timed_pj": timed["pj_per_block"] if timed else None,
                "energy_timed_reduction_pct": timed["reduction_vs_first_pct"] if timed else None,
                "energy_glitch_factor": entry["glitch_factor"]["all"] if timed else None,
                "energy_blocks": blocks, "energy_timed_blocks": timed_blocks,
                "energy_data": _describe(source),
            }
    for index, row in enumerate(result["rows"]):
        row.update(columns.get(index, dict.fromkeys(POWER_FIELDS)))
    result["fields"] = (*ROW_FIELDS, *POWER_FIELDS)
    result["power"] = {"data": source.describe(), "blocks": blocks, "timed_blocks": timed_blocks,
                       "multiplier": "array", "zero_delay_engine": zero_delay_engine}
    return result


def _describe(source: DataSource) -> str:
    if source.kind == "random":
        return f"random seed {source.seed}"
    return f"{Path(str(source.model)).name} {source.layer}" + (f" {source.data}" if source.data else "")


def plot_energy_front(path, result: dict, *, model: str = "") -> None:
    """The energy / accuracy front: energy reduction against the int8 PE vs weight SQNR.

    The timed reduction (glitches included) when the sweep has a timed sample, else the
    zero-delay one. Same markers as the area front (:func:`strum.synth.sweep.plot_front`).
    """
    from strum.synth.sweep import plot_front

    timed = bool(result.get("power", {}).get("timed_blocks"))
    column = "energy_timed_reduction_pct" if timed else "energy_zero_delay_reduction_pct"
    rows = [dict(row, reduction_pct=row[column]) for row in result["rows"]
            if row.get(column) is not None]
    if not rows:
        raise ValueError("the sweep has no PE rows with energy to plot (run it with --power)")
    blocks = result["power"]["timed_blocks" if timed else "blocks"]
    label = (f"PE energy reduction against the int8 PE, % ({'timed' if timed else 'zero delay'}, "
             f"{blocks} blocks)")
    plot_front(path, dict(result, rows=rows), model=model, xlabel=label,
               title=f"StruM energy / accuracy front ({rows[0]['energy_data']})")

