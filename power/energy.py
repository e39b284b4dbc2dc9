"""Energy of a gate-level netlist from its activity, with the Liberty tables.

The model is OpenSTA's ``report_power`` (checked against OpenSTA 3.0.1 in the tests):

switching
    ``1/2 C V^2`` per toggle of every net a cell drives; C is the sum of the pin
    capacitances it drives (the larger of the rise and fall sums) plus ``wire_cap``
    per fanout pin (default 0, as OpenSTA without parasitics). Nets driven by the
    design's inputs are not counted (their driver is outside).
internal
    per toggle of a cell output, the ``internal_power`` energy of each arc at the
    related input's propagated slew and the output's load, averaged over the output's
    rise and fall, the arcs weighted by how often each input is the one that can
    switch the output (its toggle rate times the probability that the output is
    sensitive to it, from the other inputs' duty cycles); per toggle of an input pin
    with its own table (a flip-flop's D and clock), that table at the pin's slew.
clock
    the flip-flops' clock-pin energy, two edges every cycle (part of OpenSTA's
    "internal"; reported apart here because it is paid whatever the data).
leakage
    ``cell_leakage_power`` over the whole time.

Slews propagate from the inputs (``input_slew``) and the clock (``clock_slew``)
through the cells' transition tables at each net's load, taking the worst arc, as a
static timing analysis does.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from .library import PowerLibrary, diff_duty_table, parse_function, variables
from .netlist import CONST0, CONST1, Netlist

__all__ = ["Activity", "EnergyResult", "estimate", "COMPONENTS"]

COMPONENTS = ("switching", "internal", "clock", "leakage")


@dataclasses.dataclass
class Activity:
    """Toggles and time spent high of every net over ``duration`` ns.

    Attributes
    ----------
    toggles : np.ndarray, per net (index = net number), 0<->1 transitions.
    high_time : np.ndarray, per net, ns at 1 (for duty cycles).
    duration : float, ns.
    cycles : int, clock cycles in the window (0 if unknown).
    """

    toggles: np.ndarray
    high_time: np.ndarray
    duration: float
    cycles: int = 0

    def __add__(self, other: "Activity") -> "Activity":
        return Activity(self.toggles + other.toggles, self.high_time + other.high_time,
                        self.duration + other.duration, self.cycles + other.cycles)


@dataclasses.dataclass
class EnergyResult:
    """Energy in pJ over the activity's window.

    Attributes
    ----------
    components : dict, pJ by :data:`COMPONENTS`.
    sequential, combinational : dict, pJ by component for flip-flops and the other cells.
    parts : dict, part -> {component: pJ}.
    toggles : dict, part -> toggles of the nets its cells drive.
    duration : float, ns.
    """

    components: dict
    sequential: dict
    combinational: dict
    parts: dict
    toggles: dict
    duration: float

    @property
    def total(self) -> float:
        return sum(self.components.values())

    @property
    def power_w(self) -> float:
        return self.total * 1e-12 / (self.duration * 1e-9)


class _CellModel:
    """Per cell type: parsed functions and sensitivity tables, computed once."""

    def __init__(self, cell):
        self.cell = cell
        self.functions, self.sensitivity = {}, {}
        for out in cell.outputs:
            function = cell.pins[out].function
            if function is None or cell.sequential:
                continue
            tree = parse_function(function)
            self.functions[out] = tree
            inputs = variables(tree)
            for pin in inputs:
                self.sensitivity[out, pin] = diff_duty_table(tree, pin, inputs)


def _sensitized(table, duties: dict) -> float:
    """P(output sensitive to the pin) with independent inputs of the given duties."""
    mask, others = table
    prob = np.ones(len(mask))
    rows = np.arange(len(mask))
    for k, name in enumerate(others):
        d = duties[name]
        prob *= np.where((rows >> k) & 1, d, 1.0 - d)
    return float(prob[mask].sum())


def estimate(netlist: Netlist, activity: Activity, library: PowerLibrary, *, period: float,
             clock: str = "clk", input_slew: float = 0.1, clock_slew: float = 0.1,
             wire_cap: float = 0.0) -> EnergyResult:
    """Energy of ``netlist`` under ``activity`` (see the module docstring).

    Parameters
    ----------
    period : float
        Clock period in ns (the clock pins toggle twice per period).
    clock : str
        The clock input port.
    input_slew, clock_slew : float
        Transition time (ns) at the inputs and the clock.
    wire_cap : float
        Wire capacitance (pF) added per fanout pin.
    """
    volt2 = library.voltage ** 2
    models = {name: _CellModel(library.cell(name)) for name in {t for _, t, _ in netlist.cells}}
    clock_nets = set(netlist.inputs.get(clock, []))
    clock_toggles = 2.0 * activity.duration / period
    toggles = activity.toggles.astype(float)
    duty = np.divide(activity.high_time, activity.duration) if activity.duration else activity.high_time * 0
    for net in clock_nets:
        toggles[net], duty[net] = clock_toggles, 0.5

    # Loads and drivers.
    load_rise = np.zeros(netlist.nets)
    load_fall = np.zeros(netlist.nets)
    driver = {}
    for index, (_, kind, pins) in enumerate(netlist.cells):
        cell = models[kind].cell
        for pin, net in pins.items():
            info = cell.pins[pin]
            if info.direction == "input":
                load_rise[net] += info.rise_cap + wire_cap
                load_fall[net] += info.fall_cap + wire_cap
            else:
                driver[net] = index
    load = np.maximum(load_rise, load_fall)

    # Slews in topological order (flip-flop outputs and inputs are sources).
    slew = {}
    for bits in netlist.inputs.values():
        for net in bits:
            slew[net] = (clock_slew, clock_slew) if net in clock_nets else (input_slew, input_slew)
    slew[CONST0] = slew[CONST1] = None
    pending = {}
    users = defaultdict(list)
    order = []
    for index, (_, kind, pins) in enumerate(netlist.cells):
        cell = models[kind].cell
        if cell.sequential:
            order.append(index)
            continue
        inputs = [net for pin, net in pins.items() if cell.pins[pin].direction == "input"
                  and net not in slew and net in driver and not models[netlist.cells[driver[net]][1]].cell.sequential]
        pending[index] = len(set(inputs))
        for net in set(inputs):
            users[net].append(index)
    ready = [i for i, n in pending.items() if n == 0]
    sequential_first = list(order)
    order = []
    while ready:
        index = ready.pop()
        order.append(index)
        for pin, net in netlist.cells[index][2].items():
            if models[netlist.cells[index][1]].cell.pins[pin].direction != "input":
                for user in users.get(net, ()):
                    pending[user] -= 1
                    if pending[user] == 0:
                        ready.append(user)
    if len(order) != len(pending):
        raise ValueError("the netlist has a combinational loop")

    def out_slew(index):
        _, kind, pins = netlist.cells[index]
        cell = models[kind].cell
        for pin, net in pins.items():
            info = cell.pins[pin]
            if info.direction == "input":
                continue
            rise = fall = 0.0
            for arc in info.arcs:
                source = slew.get(pins.get(arc.related))
                if source is None:
                    continue
                if arc.kind == "rising_edge":
                    from_rise = from_fall = [source[0]]
                elif arc.kind == "falling_edge":
                    from_rise = from_fall = [source[1]]
                elif arc.sense == "positive_unate":
                    from_rise, from_fall = [source[0]], [source[1]]
                elif arc.sense == "negative_unate":
                    from_rise, from_fall = [source[1]], [source[0]]
                else:
                    from_rise = from_fall = [source[0], source[1]]
                if arc.rise_transition is not None:
                    rise = max([rise] + [arc.rise_transition(s, load_rise[net]) for s in from_rise])
                if arc.fall_transition is not None:
                    fall = max([fall] + [arc.fall_transition(s, load_fall[net]) for s in from_fall])
            slew[net] = (rise, fall)

    for index in sequential_first + order:
        out_slew(index)

    # Energies per cell.
    comp = {"sequential": dict.fromkeys(COMPONENTS, 0.0), "combinational": dict.fromkeys(COMPONENTS, 0.0)}
    parts = defaultdict(lambda: dict.fromkeys(COMPONENTS, 0.0))
    part_toggles = defaultdict(float)
    leak_scale = library.leakage_unit_w * activity.duration * 1e-9 * 1e12   # -> pJ
    for name, kind, pins in netlist.cells:
        model = models[kind]
        cell = model.cell
        group = comp["sequential" if cell.sequential else "combinational"]
        part = parts["registers" if cell.sequential else netlist.part(name)]
        acc = dict.fromkeys(COMPONENTS, 0.0)
        acc["leakage"] = cell.leakage * leak_scale
        for pin, net in pins.items():
            info = cell.pins[pin]
            if info.direction == "input":
                if not info.internal_power:
                    continue
                s = slew.get(net) or (0.0, 0.0)
                energy = 0.0
                for pwr in info.internal_power:
                    values = [t(s[k], 0.0) for k, t in enumerate((pwr.rise, pwr.fall)) if t is not None]
                    energy += sum(values) / len(values) if values else 0.0
                key = "clock" if net in clock_nets else "internal"
                acc[key] += energy * toggles[net]
                continue
            out_toggles = toggles[net]
            part_toggles["registers" if cell.sequential else netlist.part(name)] += out_toggles
            acc["switching"] += 0.5 * load[net] * volt2 * out_toggles
            if out_toggles == 0 or not info.internal_power:
                continue
            tree = model.functions.get(pin)
            weights, energies = [], []
            for pwr in info.internal_power:
                from_net = pins.get(pwr.related) if pwr.related else None
                if from_net is None:
                    continue
                if tree is not None and (pin, pwr.related) in model.sensitivity:
                    duties = {p: duty[pins[p]] for p in variables(tree)}
                    sensitivity = _sensitized(model.sensitivity[pin, pwr.related], duties)
                elif from_net in clock_nets:
                    sensitivity = 1.0
                else:
                    sensitivity = 0.5
                weights.append(toggles[from_net] * sensitivity)
                arc = next((a for a in info.arcs if a.related == pwr.related), None)
                negative = arc is not None and arc.sense == "negative_unate"
                s = slew.get(from_net) or (0.0, 0.0)
                values = []
                for k, table in enumerate((pwr.rise, pwr.fall)):
                    if table is not None:
                        from_rf = (1 - k) if negative else k
                        values.append(table(s[from_rf], load[net]))
                energies.append(sum(values) / len(values) if values else 0.0)
            total_weight = sum(weights)
            if total_weight > 0:
                acc["internal"] += out_toggles * sum(w * e for w, e in zip(weights, energies)) / total_weight
        for key, value in acc.items():
            group[key] += value
            part[key] += value
    totals = {key: comp["sequential"][key] + comp["combinational"][key] for key in COMPONENTS}
    return EnergyResult(components=totals, sequential=comp["sequential"],
                        combinational=comp["combinational"], parts=dict(parts),
                        toggles=dict(part_toggles), duration=activity.duration)
