"""``strum power``: energy per block of PEs on a block stream, zero delay and timed.

For each design: the asic flow's netlist (:mod:`strum.power.netlist`), its zero-delay
activity over ``blocks`` blocks from Verilator, a timed sample of ``timed_blocks``
blocks from Icarus (glitches included), and the energy model
(:mod:`strum.power.energy`). The headline is the timed energy per block: glitches
are part of it. The zero-delay run is also repeated on the timed sample's blocks, so
the glitch factor of each part (timed / zero-delay toggles) compares like with like.

How many blocks the estimate needs: zero-delay runs over 250, 500, 1000, ... blocks
(up to ``blocks``) until the figure moves by less than 0.5 points between two runs:
the reduction against the first design of a comparison (the int8 PE), or the
energy per block of a single design.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

import numpy as np

from strum.hw.layouts import check_variant, pe_block_layout
from strum.synth.designs import PARTS, Design
from strum.synth.liberty import find_liberty, read_liberty

from .energy import COMPONENTS, estimate
from .library import read_power_library
from .netlist import mapped_netlist
from .simulate import icarus_activity, icarus_version, verilator_activity
from .stimulus import (dpu_layer_fields, dpu_random_fields, dpu_stimulus, layer_fields, layer_input,
                       pe_stimulus, random_fields)

__all__ = ["DataSource", "DEFAULT_PERIOD_NS", "measure", "compare", "write_report"]

#: 50 MHz: every path of a 16-lane PE in OSU 0.18 um settles well within it.
DEFAULT_PERIOD_NS = 20.0
SETTLE_START = 250
SETTLE_POINTS = 0.5


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where the blocks come from: ``random`` (seed) or a model's ``layer`` (real data)."""

    kind: str = "random"
    seed: int = 0
    model: str | None = None
    layer: str | None = None
    data: str | None = None
    batch: int = 4

    def describe(self) -> dict:
        if self.kind == "random":
            return {"kind": "random", "seed": self.seed}
        import hashlib

        # The file's name and digest, not its path: a report reads the same on any machine.
        digest = hashlib.sha256(Path(self.model).read_bytes()).hexdigest()
        return {"kind": "layer", "model": Path(self.model).name, "model_sha256": digest,
                "layer": self.layer,
                "data": self.data or f"random int8 inputs (seed {self.seed})", "batch": self.batch}


def _fields(design: Design, source: DataSource, count: int, x_cache: dict) -> dict:
    variant = check_variant(design.config, design.variant)
    dpu = design.kind == "dpu"
    if source.kind == "random":
        if dpu:
            return dpu_random_fields(design.config, variant, design.rows, design.cols, count,
                                     source.seed)
        return random_fields(design.config, variant, count, source.seed)
    if "x" not in x_cache:
        if source.data is not None:
            x_cache["x"] = layer_input(source.model, source.layer, source.data, source.batch)
        else:
            from strum.quant.onnx_io import find_layer, load_layers
            from strum.sim.layer import input_shape, random_input
            layer = find_layer(load_layers(source.model), source.layer)
            x_cache["x"] = random_input(input_shape(layer, source.batch), source.seed)
    if dpu:
        return dpu_layer_fields(source.model, source.layer, design.config, variant, x_cache["x"],
                                rows=design.rows, cols=design.cols)
    return layer_fields(source.model, source.layer, design.config, variant, x_cache["x"])


def _per_block(result, blocks: int, lanes: int) -> dict:
    parts = {part: {k: round(float(v) / blocks, 4) for k, v in result.parts.get(part, {}).items()}
             for part in PARTS if part in result.parts}
    total = float(result.total) / blocks
    return {"pj_per_block": round(total, 4), "pj_per_mac": round(total / lanes, 4),
            "components_pj_per_block": {k: round(float(result.components[k]) / blocks, 4) for k in COMPONENTS},
            "parts_pj_per_block": parts,
            "toggles_per_block": {p: round(float(t) / blocks, 3) for p, t in result.toggles.items()}}


class _Prepared:
    """One design's netlist, stimulus fields and library, built once."""

    def __init__(self, design, source, blocks, liberty, booth, x_cache, library, engine):
        self.design, self.engine = design, engine
        self.netlist, self.netlist_info = mapped_netlist(design, liberty=liberty, booth=booth)
        self.variant = check_variant(design.config, design.variant)
        if design.kind == "dpu":
            from strum.hw.dpu import dpu_step_layout
            self.layout = dpu_step_layout(design.config, self.variant, design.rows, design.cols)
            self.stimulus = dpu_stimulus
        else:
            self.layout = pe_block_layout(design.config, self.variant)
            self.stimulus = pe_stimulus
        self.fields = _fields(design, source, blocks, x_cache)
        self.library = library
        areas = read_liberty(find_liberty(liberty))
        self.area = sum(areas.area(kind) for _, kind, _ in self.netlist.cells)

    wire_cap = 0.0

    def zero_delay(self, count, period, info=None):
        stimulus = self.stimulus(self.netlist, self.layout, self.fields, count)
        if self.engine == "icarus":
            activity = icarus_activity(self.netlist, self.library, stimulus, period=period,
                                       timed=False, info=info)
        else:
            activity = verilator_activity(self.netlist, self.library, stimulus, period=period,
                                          info=info)
        return estimate(self.netlist, activity, self.library, period=period, wire_cap=self.wire_cap)

    def timed(self, count, period, info=None):
        stimulus = self.stimulus(self.netlist, self.layout, self.fields, count)
        activity = icarus_activity(self.netlist, self.library, stimulus, period=period, timed=True,
                                   info=info)
        return estimate(self.netlist, activity, self.library, period=period, wire_cap=self.wire_cap)


def _settle(prepared: list, blocks: int, period: float) -> tuple[int, list]:
    """Zero-delay runs of growing length until the figure is stable to 0.5 points."""
    history, count, previous = [], min(SETTLE_START, blocks), None
    while True:
        energies = [p.zero_delay(count, period).total / count for p in prepared]
        if len(prepared) > 1:
            figure = [100.0 * (1.0 - e / energies[0]) for e in energies[1:]]
        else:
            figure = [100.0 * energies[0] / (previous_energy if history else energies[0])
                      for previous_energy in ([history[0]["pj_per_block"][0]] if history else [None])]
        history.append({"blocks": count, "pj_per_block": [round(float(e), 4) for e in energies]})
        if previous is not None and max(abs(a - b) for a, b in zip(figure, previous)) < SETTLE_POINTS:
            return count, history
        if count >= blocks:
            return count, history
        previous = figure
        count = min(2 * count, blocks)


def compare(designs: list[Design], source: DataSource, *, blocks: int = 20000, timed_blocks: int = 500,
            period: float = DEFAULT_PERIOD_NS, liberty=None, booth: list[bool] | None = None,
            settle: bool = True, zero_delay_engine: str = "verilator", wire_cap: float = 0.0) -> dict:
    """Energy of each design on the same data; the first is the baseline of the reductions.

    Parameters
    ----------
    designs : list of Design (PEs)
    source : DataSource
    blocks : int
        Zero-delay blocks (the most; fewer when the estimate settles first).
    timed_blocks : int
        Blocks of the timed sample (0: no timed run).
    period : float
        Clock period, ns.
    booth : list of bool or None
        Booth multipliers per design (synth -booth).
    settle : bool
        Grow the zero-delay run until it settles (else exactly ``blocks``).
    wire_cap : float
        Wire capacitance per fanout pin, pF (0: pin capacitances only, as OpenSTA
        without parasitics).
    zero_delay_engine : str
        ``verilator`` (fast once built) or ``icarus`` (no build; the same toggles, slower
        per block: for short samples of many designs).
    """
    if zero_delay_engine not in ("verilator", "icarus"):
        raise ValueError(f"zero_delay_engine must be verilator or icarus, not {zero_delay_engine!r}")
    for name, value in (("blocks", blocks), ("timed_blocks", timed_blocks)):
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "blocks" else 0):
            raise ValueError(f"{name} must be a {'positive' if name == 'blocks' else 'non-negative'} "
                             f"integer, not {value!r}")
    if not (isinstance(wire_cap, (int, float)) and wire_cap >= 0):
        raise ValueError(f"wire_cap must be a non-negative number of pF, not {wire_cap!r}")
    if not period > 0:
        raise ValueError(f"period must be positive, not {period!r}")
    booth = booth or [False] * len(designs)
    library = read_power_library(find_liberty(liberty))
    x_cache = {}
    prepared = [_Prepared(d, source, max(blocks, timed_blocks), liberty, b, x_cache, library,
                          zero_delay_engine)
                for d, b in zip(designs, booth)]
    for p in prepared:
        p.wire_cap = float(wire_cap)
    if settle:
        used, history = _settle(prepared, blocks, period)
    else:
        used, history = blocks, []
    reports = []
    for p, use_booth in zip(prepared, booth):
        zd_info, timed_info = {}, {}
        zd = p.zero_delay(used, period, zd_info)
        # a DPU's "block" is one step: R x C blocks, R x C x B MACs
        macs = p.design.config.block_size * p.design.rows * p.design.cols
        entry = {
            "design": p.design.name + ("-booth" if use_booth else ""),
            "config": p.design.config.to_dict(),
            "variant": p.variant, "booth": use_booth, "adder_stages": p.design.adder_stages,
            "router_register": getattr(p.design, "router_register", False),
            "isolate_zero": getattr(p.design, "isolate_zero", False),
            "cells": len(p.netlist.cells), "area_um2": round(p.area, 1),
            "kind": p.design.kind, "rows": p.design.rows, "cols": p.design.cols,
            "zero_delay": {"blocks": used, **_per_block(zd, used, macs)},
            "timed": None, "glitch_factor": None,
            "netlist": p.netlist_info, "zero_delay_simulator": zd_info,
        }
        if timed_blocks:
            timed = p.timed(timed_blocks, period, timed_info)
            zd_same = zd if used == timed_blocks else p.zero_delay(timed_blocks, period)
            entry["timed"] = {"blocks": timed_blocks,
                              **_per_block(timed, timed_blocks, macs)}
            entry["glitch_factor"] = {
                part: round(float(timed.toggles[part] / zd_same.toggles[part]), 3)
                for part in PARTS if zd_same.toggles.get(part)}
            total_zd = sum(zd_same.toggles.values())
            entry["glitch_factor"]["all"] = round(float(sum(timed.toggles.values()) / total_zd), 3) if total_zd else None
            entry["timed_simulator"] = timed_info
        reports.append(entry)
    base = reports[0]
    for entry in reports:
        for kind in ("zero_delay", "timed"):
            if entry[kind] and base[kind]:
                entry[kind]["reduction_vs_first_pct"] = round(
                    100.0 * (1.0 - entry[kind]["pj_per_block"] / base[kind]["pj_per_block"]), 2)
    return {
        "kind": "strum-power-1",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "data": source.describe(),
        "settings": {"period_ns": period, "input_slew_ns": 0.1, "clock_slew_ns": 0.1,
                     "wire_cap_pf_per_fanout": float(wire_cap), "voltage": library.voltage,
                     "liberty": {"path": str(library.path), "sha256": library.sha256},
                     "model": "OpenSTA report_power formulas (see strum.power.energy)"},
        "settle": {"blocks": used, "criterion_points": SETTLE_POINTS, "history": history},
        "tools": {"icarus": _icarus_or_none(timed_blocks), **prepared[0].netlist_info["tools"]},
        "designs": reports,
    }


def _icarus_or_none(timed_blocks):
    return icarus_version() if timed_blocks else None


def measure(design: Design, source: DataSource, **options) -> dict:
    """:func:`compare` of one design."""
    return compare([design], source, **options)


def write_report(report: dict, path) -> None:
    """Write a report as JSON, atomically (:func:`strum.quant.files.write_text`)."""
    from strum.quant.files import write_text

    write_text(path, json.dumps(report, indent=1, default=lambda o: o.tolist()
                                if isinstance(o, np.ndarray) else float(o)) + "\n")
