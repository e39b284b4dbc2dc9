"""Gate-level activity of a mapped netlist: Verilator (zero delay) and Icarus (timed).

Both simulators run the same flat netlist with one wire per net (``n<number>``, the
:class:`~strum.power.netlist.Netlist` net numbers), the same stimulus (one row of
input bits per clock cycle, applied at the rising edge) and count the same window of
cycles. They differ in how a cycle's nets settle:

zero delay, Verilator
    The cells become plain ``assign`` statements from their Liberty ``function``
    (flip-flops ``always @(posedge clk)`` from ``next_state``); every net settles
    once per cycle. A small C++ harness counts each net's toggles and high cycles,
    so no trace is written: 20,000 cycles of a 16-lane PE take seconds.
timed, Icarus Verilog
    The cells are the library's own Verilog models (``osu018_stdcells.v``) with their
    ``specify`` delays (``iverilog -gspecify``); inputs change 0.1 ns after the edge.
    Every glitch is a toggle. Icarus writes a VCD of the window, read by
    :func:`~strum.power.activity.read_trace`. Without ``-gspecify`` the same models run
    at zero delay, which checks the Verilator netlist against the library's models.

Icarus is the Debian package ``iverilog`` (optional, like the OSU library).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .activity import read_trace
from .energy import Activity
from .library import PowerLibrary, parse_function, to_verilog
from .netlist import CONST0, CONST1, Netlist

__all__ = ["SimulationError", "Stimulus", "verilator_activity", "icarus_activity",
           "OSU018_CELLS", "find_cell_models", "icarus_version"]

#: The OSU 0.18 um cells' Verilog models, from Debian's ``qflow-tech-osu018``.
OSU018_CELLS = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.v")
#: Inputs change this long after the rising edge in timed runs (ns).
INPUT_DELAY_NS = 0.1


class SimulationError(RuntimeError):
    """A simulator is missing or failed; the message says what to install or fix."""


@dataclasses.dataclass
class Stimulus:
    """Input bits per clock cycle and the window of cycles to measure.

    Attributes
    ----------
    bits : uint8 ``[cycles, inputs]``, column k drives ``netlist`` input bit k in the
        order of :func:`input_nets` (every input port but the clock, LSB first).
    start, count : int, the window: cycles ``start .. start + count - 1``.
    """

    bits: np.ndarray
    start: int
    count: int

    def __post_init__(self):
        if not 0 <= self.start or self.count < 1 or self.start + self.count > len(self.bits):
            raise ValueError(f"window {self.start}+{self.count} does not fit {len(self.bits)} cycles")


def input_nets(netlist: Netlist, clock: str = "clk") -> list[int]:
    """The nets the stimulus drives, in column order."""
    return [net for name in sorted(netlist.inputs) if name != clock for net in netlist.inputs[name]]


def _wire(net: int) -> str:
    return "1'b0" if net == CONST0 else "1'b1" if net == CONST1 else f"n{net}"


def _netlist_verilog(netlist: Netlist, library: PowerLibrary, *, style: str, clock: str,
                     module: str = "gates") -> tuple[str, int, int]:
    """The netlist as Verilog (``style`` "assign" or "cells"); returns text, inputs, nets."""
    driven = input_nets(netlist, clock)
    width_in = max(len(driven), 65)         # > 64 bits: always a VlWide in Verilator
    width_nets = max(netlist.nets, 65)
    lines = [f"module {module}(input clk, input [{width_in - 1}:0] pi"
             + (f", output [{width_nets - 1}:0] nets);" if style == "assign" else ");")]
    used = {net for _, _, pins in netlist.cells for net in pins.values()} | set(driven)
    used |= set(netlist.inputs.get(clock, []))
    used -= {CONST0, CONST1}
    regs = set()
    body = []
    for k, net in enumerate(driven):
        body.append(f"  assign n{net} = pi[{k}];")
    for net in netlist.inputs.get(clock, []):
        body.append(f"  assign n{net} = clk;")
    for index, (name, kind, pins) in enumerate(netlist.cells):
        cell = library.cell(kind)
        if style == "cells":
            ports = ", ".join(f".{pin}({_wire(net)})" for pin, net in sorted(pins.items()))
            body.append(f"  {kind} c{index} ({ports});")
            continue
        names = {pin: _wire(net) for pin, net in pins.items()}
        if cell.sequential:
            if cell.clock_pin is None or cell.next_state is None or len(cell.outputs) != 1:
                raise SimulationError(f"cell {kind}: only plain D flip-flops are simulated")
            out = pins[cell.outputs[0]]
            regs.add(out)
            edge = "posedge"
            body.append(f"  always @({edge} clk) n{out} <= {to_verilog(parse_function(cell.next_state), names)};")
            continue
        for pin in cell.outputs:
            if pin in pins:
                tree = parse_function(cell.pins[pin].function)
                body.append(f"  assign n{pins[pin]} = {to_verilog(tree, names)};")
    for net in sorted(used):
        lines.append(f"  {'reg' if net in regs else 'wire'} n{net};")
    lines += body
    if style == "assign":
        bits = [_wire(net) if (net in used or net in (CONST0, CONST1)) else "1'b0"
                for net in range(width_nets)]
        lines.append("  assign nets = {" + ", ".join(reversed(bits)) + "};")
    lines.append("endmodule")
    return "\n".join(lines) + "\n", width_in, width_nets


def _check_sequential(netlist: Netlist, library: PowerLibrary, clock: str) -> None:
    clock_nets = set(netlist.inputs.get(clock, []))
    for name, kind, pins in netlist.cells:
        cell = library.cell(kind)
        if cell.sequential:
            if cell.clock_pin is None or pins.get(cell.clock_pin) not in clock_nets:
                raise SimulationError(f"flip-flop {name} is not clocked by {clock!r}")
            if cell.clocked_on != cell.clock_pin or len(cell.inputs) != 2:
                raise SimulationError(f"flip-flop {name} ({kind}) is not a rising-edge D flip-flop")


# -- Verilator ------------------------------------------------------------------------

_HARNESS = r"""
#include "Vdut.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

// toggles STIM CYCLES START COUNT OUT: count each net's toggles and high cycles.
int main(int argc, char **argv) {
    if (argc != 6) { std::fprintf(stderr, "usage: toggles STIM CYCLES START COUNT OUT\n"); return 2; }
    const long cycles = std::atol(argv[2]), start = std::atol(argv[3]), count = std::atol(argv[4]);
    const int in_words = %(in_words)d, net_words = %(net_words)d;
    std::vector<uint32_t> stim((size_t)cycles * in_words);
    FILE *f = std::fopen(argv[1], "rb");
    if (!f || std::fread(stim.data(), 4, stim.size(), f) != stim.size()) { std::perror(argv[1]); return 1; }
    std::fclose(f);
    auto context = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vdut>(context.get());
    std::vector<uint32_t> prev(net_words, 0);
    std::vector<uint64_t> toggles((size_t)net_words * 32, 0), high((size_t)net_words * 32, 0);
    top->clk = 0;
    for (int w = 0; w < in_words; ++w) top->pi[w] = 0;
    top->eval();
    for (int w = 0; w < net_words; ++w) prev[w] = top->nets[w];
    for (long c = 0; c < cycles; ++c) {
        top->clk = 1;
        top->eval();                        // flip-flops take the previous cycle's values
        for (int w = 0; w < in_words; ++w) top->pi[w] = stim[(size_t)c * in_words + w];
        top->eval();
        const bool counted = c >= start && c < start + count;
        for (int w = 0; w < net_words; ++w) {
            const uint32_t now = top->nets[w];
            if (counted) {
                for (uint32_t x = now ^ prev[w]; x; x &= x - 1) ++toggles[w * 32 + __builtin_ctz(x)];
                for (uint32_t x = now; x; x &= x - 1) ++high[w * 32 + __builtin_ctz(x)];
            }
            prev[w] = now;
        }
        top->clk = 0;
        top->eval();
    }
    FILE *out = std::fopen(argv[5], "wb");
    std::fwrite(toggles.data(), 8, toggles.size(), out);
    std::fwrite(high.data(), 8, high.size(), out);
    std::fclose(out);
    top->final();
    return 0;
}
"""

_MAKEFILE = """include Vdut.mk
CFG_CXXFLAGS_PCH_I = -include
toggles: toggles.o Vdut__ALL.a
\t$(LINK) -o $@ toggles.o Vdut__ALL.a $(STRUM_RUNTIME) -pthread
toggles.o: toggles.cpp Vdut.h
\t$(CXX) $(OPT_FAST) $(CXXFLAGS) $(CPPFLAGS) -c -o $@ toggles.cpp
"""


def _power_cache() -> Path:
    from strum.quant.files import cache_root

    return cache_root() / "power"


def verilator_activity(netlist: Netlist, library: PowerLibrary, stimulus: Stimulus, *,
                       period: float, clock: str = "clk", info: dict | None = None) -> Activity:
    """Zero-delay activity of the window, from Verilator (see the module docstring).

    The built simulator is cached under the hash of its Verilog and the toolchain.
    ``info``, when given, receives the commands and the tool identity.
    """
    from strum.sim import verilator_backend as vb

    _check_sequential(netlist, library, clock)
    verilog, width_in, width_nets = _netlist_verilog(netlist, library, style="assign", clock=clock)
    tools = vb.toolchain()
    in_words, net_words = -(-width_in // 32), -(-width_nets // 32)
    harness = _HARNESS % {"in_words": in_words, "net_words": net_words}
    key = vb._digest("strum-power-verilator-2", verilog, harness, _MAKEFILE, tools.identity,
                     " ".join(vb._VERILATE_FLAGS))[:24]
    root = _power_cache() / "verilator"
    final = root / key
    verilate = [tools.verilator, *vb._VERILATE_FLAGS, "--top-module", "gates", "--Mdir", "obj", "gates.v"]
    make = ["make", "-s", "-j2", "-f", "harness.mk", "toggles"]
    if not (final / "toggles").is_file():
        runtime = vb._runtime(tools, vb.cache_dir(), 2)
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
        try:
            (staging / "gates.v").write_text(verilog)
            result = subprocess.run(verilate, cwd=staging, capture_output=True, text=True,
                                    env=tools.env(), check=False)
            if result.returncode:
                raise SimulationError(f"verilating the netlist failed:\n{vb._first_errors(result.stderr)}")
            obj = staging / "obj"
            (obj / "toggles.cpp").write_text(harness)
            (obj / "harness.mk").write_text(_MAKEFILE)
            # Verilator turns a gate netlist into very long functions that g++ -O2 takes
            # minutes to compile; unoptimised code builds in seconds and runs fast enough.
            variables = [v for v in vb._make_variables(tools) if not v.startswith("OPT_")]
            variables += ["OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0"]
            result = subprocess.run([*make, *variables, f"STRUM_RUNTIME={runtime}"],
                                    cwd=obj, capture_output=True, text=True, env=tools.env(), check=False)
            if result.returncode:
                raise SimulationError(f"compiling the toggle counter failed:\n"
                                      f"{vb._first_errors(result.stderr + result.stdout)}")
            os.rename(obj / "toggles", staging / "toggles")
            shutil.rmtree(obj)
            vb._publish(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=".run-", dir=root))
    try:
        bits = np.zeros((len(stimulus.bits), in_words * 32), np.uint8)
        bits[:, :stimulus.bits.shape[1]] = stimulus.bits
        words = np.packbits(bits, axis=1, bitorder="little").view("<u4")
        (work / "stim.bin").write_bytes(words.tobytes())
        run = [str(final / "toggles"), "stim.bin", str(len(bits)), str(stimulus.start),
               str(stimulus.count), "counts.bin"]
        result = subprocess.run(run, cwd=work, capture_output=True, text=True, check=False)
        if result.returncode:
            raise SimulationError(f"the Verilator toggle counter failed: {result.stderr.strip()[:400]}")
        counts = np.fromfile(work / "counts.bin", dtype="<u8").reshape(2, -1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if info is not None:
        info.update({"simulator": tools.identity.splitlines()[0], "verilate": " ".join(verilate[1:]),
                     "delays": "zero (cells as their liberty functions)"})
    toggles = counts[0][:netlist.nets].astype(float)
    high = counts[1][:netlist.nets].astype(float) * period
    return Activity(toggles=toggles, high_time=high, duration=stimulus.count * period,
                    cycles=stimulus.count)


# -- Icarus ---------------------------------------------------------------------------

def find_cell_models(path=None) -> Path:
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise SimulationError(f"cell models {str(path)!r} do not exist")
        return path
    if OSU018_CELLS.is_file():
        return OSU018_CELLS
    raise SimulationError(f"timed simulation needs the cells' Verilog models: install the Debian "
                          f"package qflow-tech-osu018 (gives {OSU018_CELLS})")


def icarus_version() -> str:
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise SimulationError("timed activity needs Icarus Verilog: install the Debian package "
                              "iverilog (apt-get install iverilog)")
    out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def icarus_activity(netlist: Netlist, library: PowerLibrary, stimulus: Stimulus, *, period: float,
                    timed: bool = True, clock: str = "clk", cell_models=None,
                    info: dict | None = None) -> Activity:
    """Activity of the window from Icarus Verilog with the library's cell models.

    ``timed``: with their specify delays (glitches included); else zero delay.
    """
    version = icarus_version()
    models = find_cell_models(cell_models)
    _check_sequential(netlist, library, clock)
    verilog, width_in, _ = _netlist_verilog(netlist, library, style="cells", clock=clock)
    cycles = len(stimulus.bits)
    ps = int(round(period * 1000))
    if ps % 2:
        raise SimulationError(f"period {period} ns must be an even number of picoseconds")
    delay = f"#{INPUT_DELAY_NS}" if timed else ""
    # Clock rises at period/2 + c*period; the window opens 1 ps before edge `start`.
    begin_ps = ps // 2 + stimulus.start * ps - 1
    end_ps = begin_ps + stimulus.count * ps
    tb = f"""`timescale 1ns/1ps
module tb;
  reg clk = 1'b0;
  reg [{width_in - 1}:0] pi = 0;
  reg [{width_in - 1}:0] stim [0:{cycles - 1}];
  integer c;
  gates dut(.clk(clk), .pi(pi));
  always #{period / 2} clk = ~clk;
  initial begin
    $readmemh("stim.hex", stim);
    for (c = 0; c < {cycles}; c = c + 1) begin
      @(posedge clk);
      pi <= {delay} stim[c];
    end
  end
  initial begin
    #{begin_ps / 1000:.3f};
    $dumpfile("trace.vcd");
    $dumpvars(1, tb.dut);
    #{stimulus.count * period};
    $finish;
  end
endmodule
"""
    compile_cmd = ["iverilog", "-g2005", *(["-gspecify"] if timed else []), "-o", "sim.vvp",
                   "-s", "tb", "tb.v", "gates.v", str(models)]
    root = _power_cache() / "icarus"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".run-", dir=root))
    try:
        (work / "tb.v").write_text(tb)
        (work / "gates.v").write_text(verilog)
        bits = np.zeros((cycles, -(-width_in // 4) * 4), np.uint8)
        bits[:, :stimulus.bits.shape[1]] = stimulus.bits
        nibbles = (bits.reshape(cycles, -1, 4) * (1 << np.arange(4))).sum(axis=2)
        digits = np.array(list("0123456789abcdef"))[nibbles[:, ::-1]]
        hexes = ["".join(row) for row in digits]
        (work / "stim.hex").write_text("\n".join(hexes) + "\n")
        for command in (compile_cmd, ["vvp", "-n", "sim.vvp"]):
            result = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
            if result.returncode:
                raise SimulationError(f"{command[0]} failed: {(result.stderr or result.stdout).strip()[:600]}")
        aliases = {f"n{net}": [net] for net in range(netlist.nets)}
        activity = read_trace(work / "trace.vcd", netlist, "tb.dut", cycles=stimulus.count,
                              start=begin_ps, end=end_ps, aliases=aliases)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if info is not None:
        info.update({"simulator": version, "compile": " ".join(compile_cmd[:-1] + [models.name]),
                     "run": "vvp -n sim.vvp",
                     "delays": "library specify delays, inputs 0.1 ns after the edge" if timed else "zero"})
    return activity
