"""Net activity: toggles and duty cycles of every net, read from a VCD or FST trace.

Traces are read with ``pywellen`` (a Rust VCD/FST reader); only the variables of one
scope that name nets of the netlist are read. A transition counts when a bit goes
0 -> 1 or 1 -> 0, a change from or to x or z counts half (as OpenSTA counts), the window runs from the
trace's first to its last time stamp, as OpenSTA's ``read_vcd`` reads it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .energy import Activity
from .netlist import Netlist

__all__ = ["read_trace"]

_RANGE = re.compile(r"\s*\[[0-9:]+\]$")


def _bits_of(value, width: int):
    """A value from pywellen as an array of bits (LSB first), -1 for x/z."""
    if isinstance(value, int):
        if width == 1:
            return np.array([value & 1])
        raw = np.frombuffer(value.to_bytes((width + 7) // 8, "little"), np.uint8)
        return np.unpackbits(raw, bitorder="little")[:width].astype(np.int8)
    text = str(value)[-width:].rjust(width, "0")
    return np.array([1 if c == "1" else 0 if c == "0" else -1 for c in reversed(text)], np.int8)


def read_trace(path: str | Path, netlist: Netlist, scope: str, *, cycles: int = 0,
               start: float | None = None, end: float | None = None,
               aliases: dict | None = None) -> Activity:
    """Activity of ``netlist``'s nets from the trace at ``path``.

    Parameters
    ----------
    scope : str
        Dotted scope of the netlist's module in the trace (``tb.dut``).
    cycles : int
        Clock cycles in the window (recorded in the result).
    start, end : float or None
        The window (trace units): values before ``start`` are only its initial values,
        changes after ``end`` are ignored; None: the trace's first / last time stamp.
    aliases : dict or None
        Variable name -> nets (LSB first); default ``netlist.aliases``.
    """
    import pywellen

    wave = pywellen.Waveform(str(path))
    scale = wave.timescale
    to_ns = scale.factor * 10.0 ** (scale.unit.to_exponent() + 9)
    toggles = np.zeros(netlist.nets)
    high = np.zeros(netlist.nets)
    seen = set()
    t_min, t_max = None, None
    prefix = scope + "."
    chosen = []
    for var in wave.all_vars():
        full = var.full_name
        if not full.startswith(prefix) or "." in full[len(prefix):]:
            continue
        name = _RANGE.sub("", full[len(prefix):])
        bits = (aliases if aliases is not None else netlist.aliases).get(name)
        if bits is None or len(bits) != var.bitwidth:
            continue
        keep = [k for k, b in enumerate(bits) if b > 1 and b not in seen]
        if not keep:
            continue
        seen.update(bits[k] for k in keep)
        chosen.append((var, bits, keep))
    tails = []
    for var, bits, keep in chosen:
        times, values = [], []
        for time, value in var.signal:
            if end is not None and time > end:
                break
            if start is not None and time <= start:
                if times:
                    values[-1] = value
                else:
                    times.append(start)
                    values.append(value)
                continue
            times.append(time)
            values.append(value)
        if not times:
            continue
        t_min = times[0] if t_min is None else min(t_min, times[0])
        t_max = times[-1] if t_max is None else max(t_max, times[-1])
        width = var.bitwidth
        matrix = np.stack([_bits_of(v, width) for v in values])[:, keep]
        nets = np.array([bits[k] for k in keep])
        prev, cur = matrix[:-1], matrix[1:]
        changed = prev != cur
        known = (prev >= 0) & (cur >= 0)
        toggles[nets] += (changed & known).sum(axis=0) + 0.5 * (changed & ~known).sum(axis=0)
        dt = np.diff(np.array(times, dtype=float))
        high[nets] += ((prev == 1) * dt[:, None]).sum(axis=0)
        tails.append((times[-1], matrix[-1], nets))
    if t_min is None:
        raise ValueError(f"{path}: no variable of scope {scope!r} names a net of the netlist")
    if start is not None:
        t_min = start
    if end is not None:
        t_max = end
    # the last value holds until the end of the window
    for time, last, nets in tails:
        high[nets] += (last == 1) * (t_max - time)
    return Activity(toggles=toggles, high_time=high * to_ns, duration=(t_max - t_min) * to_ns,
                    cycles=cycles)
