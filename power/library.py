"""The power view of a Liberty library: pin capacitances, slew and energy tables.

Read with the ``liberty-parser`` package (a Lark grammar of the Liberty format), so no
parser of our own. What is kept per cell is what OpenSTA's ``report_power`` uses:

- per pin: direction, capacitance (rise and fall), the Boolean ``function`` of outputs;
- timing arcs into each output (related pin, unateness, timing type, the
  ``rise_transition`` / ``fall_transition`` tables) to propagate slews;
- ``internal_power`` groups (related pin, ``rise_power`` / ``fall_power`` tables);
- ``cell_leakage_power`` and whether the cell is a flip-flop (``ff`` group).

Units are the library's (OSU 0.18 um: ns, pF, V, pJ for the energy tables, nW for
leakage); :class:`PowerLibrary` records them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import pickle
import re
from pathlib import Path

import numpy as np

__all__ = ["Table", "Arc", "InternalPower", "Pin", "Cell", "PowerLibrary", "read_power_library",
           "parse_function"]


@dataclasses.dataclass(frozen=True)
class Table:
    """A 1-D or 2-D lookup table indexed by output load (pF) and input slew (ns).

    Lookups interpolate linearly and extrapolate beyond the axes, as OpenSTA does.
    """

    load_axis: tuple | None
    slew_axis: tuple | None
    values: np.ndarray          # shape (len(load_axis) or 1, len(slew_axis) or 1)

    def __call__(self, slew: float, load: float) -> float:
        v = self.values
        if self.load_axis is None:
            return _interp(self.slew_axis, v[0], slew)
        if self.slew_axis is None:
            return _interp(self.load_axis, v[:, 0], load)
        i, fi = _position(self.load_axis, load)
        j, fj = _position(self.slew_axis, slew)
        top = v[i, j] + (v[i, j + 1] - v[i, j]) * fj
        bottom = v[i + 1, j] + (v[i + 1, j + 1] - v[i + 1, j]) * fj
        return float(top + (bottom - top) * fi)


def _position(axis, x):
    n = len(axis)
    if n == 1:
        return 0, 0.0
    i = 0
    while i < n - 2 and x >= axis[i + 1]:
        i += 1
    return i, (x - axis[i]) / (axis[i + 1] - axis[i])


def _interp(axis, values, x):
    if len(axis) == 1:
        return float(values[0])
    i, f = _position(axis, x)
    return float(values[i] + (values[i + 1] - values[i]) * f)


@dataclasses.dataclass(frozen=True)
class Arc:
    """A timing arc from ``related`` into an output pin."""

    related: str
    sense: str                  # positive_unate, negative_unate, non_unate
    kind: str                   # combinational, rising_edge, falling_edge
    rise_transition: Table | None
    fall_transition: Table | None


@dataclasses.dataclass(frozen=True)
class InternalPower:
    related: str | None
    rise: Table | None
    fall: Table | None


@dataclasses.dataclass(frozen=True)
class Pin:
    name: str
    direction: str
    rise_cap: float
    fall_cap: float
    function: str | None
    clock: bool
    arcs: tuple                 # Arc, into this pin (outputs)
    internal_power: tuple       # InternalPower


@dataclasses.dataclass(frozen=True)
class Cell:
    name: str
    pins: dict
    leakage: float
    sequential: bool
    clock_pin: str | None
    next_state: str | None
    clocked_on: str | None = None

    @property
    def inputs(self) -> list[str]:
        return [p for p, pin in self.pins.items() if pin.direction == "input"]

    @property
    def outputs(self) -> list[str]:
        return [p for p, pin in self.pins.items() if pin.direction == "output"]


@dataclasses.dataclass(frozen=True)
class PowerLibrary:
    """Cells of a Liberty file with their power data.

    Attributes
    ----------
    path : Path
    sha256 : str
    voltage : float (V), the default operating condition's (else ``nom_voltage``).
    leakage_unit_w : float, watts per leakage unit (1e-9 for nW).
    cells : dict[str, Cell]
    """

    path: Path
    sha256: str
    voltage: float
    leakage_unit_w: float
    cells: dict

    def cell(self, name: str) -> Cell:
        try:
            return self.cells[name]
        except KeyError:
            raise ValueError(f"cell {name!r} is not in the liberty file {self.path}") from None


_UNITS = {"1nW": 1e-9, "1uW": 1e-6, "1mW": 1e-3, "1pW": 1e-12, "1W": 1.0, "10nW": 1e-8,
          "100nW": 1e-7}


def _text(value) -> str:
    return str(value).strip().strip('"')


def _table(group, templates) -> Table:
    template = templates.get(group.args[0] if group.args else None, ())
    names = list(template)
    values = np.atleast_2d(np.array(group.get_array("values"), dtype=float))
    axes = {}
    for k, var in enumerate(names, start=1):
        index = group.get(f"index_{k}")
        axes[var] = tuple(np.array(group.get_array(f"index_{k}"), dtype=float).ravel()) \
            if index is not None else None
    load = next((axes[v] for v in names if "capacitance" in v), None)
    slew = next((axes[v] for v in names if "transition" in v), None)
    if names and "transition" in names[0] and load is not None:
        values = values.T       # stored as (slew, load): make it (load, slew)
    if load is None:
        values = values.reshape(1, -1)
    elif slew is None:
        values = values.reshape(-1, 1)
    return Table(load_axis=load, slew_axis=slew, values=values)


def _first(group, name, templates):
    found = group.get_groups(name)
    return _table(found[0], templates) if found else None


def _read(path: Path, data: bytes) -> PowerLibrary:
    from liberty.parser import parse_liberty   # liberty-parser (PyPI)

    text = re.sub(r"/\*.*?\*/", " ", data.decode("latin-1"), flags=re.S)
    library = parse_liberty(text)
    templates = {}
    for kind in ("lu_table_template", "power_lut_template"):
        for group in library.get_groups(kind):
            variables = [_text(group[f"variable_{k}"]) for k in (1, 2, 3)
                         if group.get(f"variable_{k}") is not None]
            templates[group.args[0]] = variables
    voltage = None
    for cond in library.get_groups("operating_conditions"):
        if _text(cond.args[0]) == _text(library.get("default_operating_conditions", "")):
            voltage = float(cond["voltage"])
    if voltage is None:
        voltage = float(library["nom_voltage"])
    unit = _text(library.get("leakage_power_unit", "1nW"))
    cells = {}
    for group in library.get_groups("cell"):
        name = _text(group.args[0])
        ff = group.get_groups("ff") + group.get_groups("latch")
        pins, clock_pin = {}, None
        for pin_group in group.get_groups("pin"):
            for pin_name in pin_group.args:
                pin_name = _text(pin_name)
                cap = float(pin_group.get("capacitance", 0.0) or 0.0)
                arcs = []
                for timing in pin_group.get_groups("timing"):
                    kind = _text(timing.get("timing_type", "combinational"))
                    if kind not in ("combinational", "rising_edge", "falling_edge"):
                        continue
                    arcs.append(Arc(related=_text(timing["related_pin"]),
                                    sense=_text(timing.get("timing_sense", "non_unate")), kind=kind,
                                    rise_transition=_first(timing, "rise_transition", templates),
                                    fall_transition=_first(timing, "fall_transition", templates)))
                powers = tuple(
                    InternalPower(related=_text(p["related_pin"]) if p.get("related_pin") else None,
                                  rise=_first(p, "rise_power", templates),
                                  fall=_first(p, "fall_power", templates))
                    for p in pin_group.get_groups("internal_power"))
                is_clock = _text(pin_group.get("clock", "false")) == "true"
                if is_clock:
                    clock_pin = pin_name
                pins[pin_name] = Pin(
                    name=pin_name, direction=_text(pin_group["direction"]),
                    rise_cap=float(pin_group.get("rise_capacitance", cap) or cap),
                    fall_cap=float(pin_group.get("fall_capacitance", cap) or cap),
                    function=_text(pin_group["function"]) if pin_group.get("function") else None,
                    clock=is_clock, arcs=tuple(arcs), internal_power=powers)
        cells[name] = Cell(name=name, pins=pins,
                           leakage=float(group.get("cell_leakage_power", 0.0) or 0.0),
                           sequential=bool(ff), clock_pin=clock_pin,
                           next_state=_text(ff[0]["next_state"]) if ff and ff[0].get("next_state") else None,
                           clocked_on=_text(ff[0]["clocked_on"]) if ff and ff[0].get("clocked_on") else None)
    return PowerLibrary(path=path, sha256=hashlib.sha256(data).hexdigest(), voltage=voltage,
                        leakage_unit_w=_UNITS.get(unit.replace(" ", ""), 1e-9), cells=cells)


def read_power_library(path) -> PowerLibrary:
    """Read (or load from the cache) the power view of the Liberty file at ``path``."""
    from strum.quant.files import cache_root, write_bytes

    path = Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cached = cache_root() / "power" / f"liberty-{digest[:24]}-2.pickle"
    if cached.is_file():
        try:
            lib = pickle.loads(cached.read_bytes())
            return dataclasses.replace(lib, path=path)
        except Exception:       # a stale or broken cache entry is rebuilt
            pass
    lib = _read(path, data)
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(cached, pickle.dumps(lib))      # a unique temp file, then renamed
    return lib


# -- Boolean functions ----------------------------------------------------------------

def parse_function(text: str):
    """Parse a Liberty ``function`` into a tree of tuples.

    Nodes: ``("var", name)``, ``("const", 0|1)``, ``("not", x)``, ``("and", x, y)``,
    ``("or", x, y)``, ``("xor", x, y)``. Juxtaposition is AND, as in Liberty.
    """
    tokens = [t for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|[()!'+*&|^]|[01]", text)]
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"liberty function {text!r} ends too early")
        pos += 1
        return tokens[pos - 1]

    def expr_or():
        node = expr_xor()
        while peek() in ("+", "|"):
            take()
            node = ("or", node, expr_xor())
        return node

    def expr_xor():
        node = expr_and()
        while peek() == "^":
            take()
            node = ("xor", node, expr_and())
        return node

    def expr_and():
        node = expr_unary()
        while peek() is not None and peek() not in ("+", "|", "^", ")"):
            if peek() in ("*", "&"):
                take()
            node = ("and", node, expr_unary())
        return node

    def expr_unary():
        token = take()
        if token == "!":
            node = ("not", expr_unary())
        elif token == "(":
            node = expr_or()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in liberty function {text!r}")
        elif token in ("0", "1"):
            node = ("const", int(token))
        else:
            node = ("var", token)
        while peek() == "'":
            take()
            node = ("not", node)
        return node

    tree = expr_or()
    if pos != len(tokens):
        raise ValueError(f"cannot parse liberty function {text!r}")
    return tree


def evaluate(tree, values: dict):
    """Evaluate a function tree on NumPy boolean arrays (or Python bools)."""
    op = tree[0]
    if op == "var":
        return values[tree[1]]
    if op == "const":
        return bool(tree[1])
    if op == "not":
        value = evaluate(tree[1], values)
        return ~value if isinstance(value, np.ndarray) else not value
    a, b = evaluate(tree[1], values), evaluate(tree[2], values)
    return {"and": a & b, "or": a | b, "xor": a ^ b}[op]


def to_verilog(tree, names: dict) -> str:
    """The tree as a Verilog expression, pins renamed by ``names``."""
    op = tree[0]
    if op == "var":
        return names[tree[1]]
    if op == "const":
        return f"1'b{tree[1]}"
    if op == "not":
        return f"~({to_verilog(tree[1], names)})"
    sym = {"and": "&", "or": "|", "xor": "^"}[op]
    return f"({to_verilog(tree[1], names)} {sym} {to_verilog(tree[2], names)})"


def variables(tree) -> list[str]:
    if tree[0] == "var":
        return [tree[1]]
    if tree[0] == "const":
        return []
    return sorted(set(itertools.chain.from_iterable(variables(t) for t in tree[1:])))


def diff_duty_table(tree, pin: str, inputs: list[str]):
    """Minterms (of the other inputs) where the output is sensitive to ``pin``.

    Returns a boolean array over the 2**(len(inputs)-1) assignments of the other inputs,
    in the order of ``others`` (bit k of the row index is ``others[k]``), and ``others``.
    """
    others = [p for p in inputs if p != pin]
    rows = np.arange(1 << len(others))
    values = {name: ((rows >> k) & 1).astype(bool) for k, name in enumerate(others)}
    hi = evaluate(tree, {**values, pin: np.ones(len(rows), bool)})
    lo = evaluate(tree, {**values, pin: np.zeros(len(rows), bool)})
    return np.broadcast_to(np.asarray(hi) ^ np.asarray(lo), rows.shape), others
