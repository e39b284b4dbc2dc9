"""The block mask decoder: from the mask, which activation each high and low lane takes.

Everything works on one selection group of G lanes with h high lanes and l = G - h low
lanes (G = B when the whole block is one group). High lane r takes the activation of
the r-th set bit of the group's mask, low lane r that of the r-th clear bit. Because
the r-th set bit has at most l clear bits before it, it lies in lanes r..r+l: high lane
r chooses among l + 1 activations (its *window*), low lane r among h + 1.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MaskDecoder", "ENCODINGS"]

#: Select encodings: ``onehot`` window selects, the binary ``position`` in the group, or
#: the ``count`` of set bits before each lane.
ENCODINGS = ("onehot", "position", "count")


def _bits(n: int) -> int:
    """Bits of an unsigned number 0..n."""
    return max(n, 0).bit_length()


class MaskDecoder(wiring.Component):
    """Decodes a group's mask into the selects of the activation router.

    Parameters
    ----------
    group_size : int
        G, lanes in the group.
    high : int
        h, set bits of every mask (high lanes of the group), 0..G.
    encoding : str
        One of :data:`ENCODINGS`; decides the output ports.

    Attributes
    ----------
    mask : In(unsigned(G)), bit i = 1 when lane i is high; exactly h bits are set.
    high_select : Out(ArrayLayout(unsigned(l + 1), h)) (``onehot``)
        Bit j of element r: high lane r takes lane r + j.
    low_select : Out(ArrayLayout(unsigned(h + 1), l)) (``onehot``)
        Bit j of element r: low lane r takes lane r + j.
    high_position, low_position : Out(ArrayLayout(unsigned(..), h or l)) (``position``)
        The lane r + j, binary.
    ones_before : Out(ArrayLayout(unsigned(..), G)) (``count``)
        Set bits of the mask below lane i: a high lane i is the ones_before[i]-th high
        lane, a low lane i the (i - ones_before[i])-th low lane.
    """

    def __init__(self, *, group_size: int, high: int, encoding: str = "onehot"):
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive integer, not {group_size!r}")
        if not isinstance(high, int) or not 0 <= high <= group_size:
            raise ValueError(f"high must be an integer from 0 to group_size={group_size}, not {high!r}")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
        self.group_size, self.high, self.low = group_size, high, group_size - high
        self.encoding = encoding
        G, h, l = group_size, high, group_size - high
        ports = {"mask": In(unsigned(G))}
        if encoding == "onehot":
            ports["high_select"] = Out(data.ArrayLayout(unsigned(l + 1), h))
            ports["low_select"] = Out(data.ArrayLayout(unsigned(h + 1), l))
        elif encoding == "position":
            ports["high_position"] = Out(data.ArrayLayout(unsigned(_bits(G - 1)), h))
            ports["low_position"] = Out(data.ArrayLayout(unsigned(_bits(G - 1)), l))
        else:
            ports["ones_before"] = Out(data.ArrayLayout(unsigned(_bits(h)), G))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        G, h, l = self.group_size, self.high, self.low
        mask = self.mask

        if self.encoding == "count":
            count = Const(0, _bits(h))
            for lane in range(G):
                m.d.comb += self.ones_before[lane].eq(count)
                count = (count + mask[lane])[:_bits(h)]
            return m

        # ones[p]: one-hot count of the set bits below lane p, shifted one place per set
        # bit (a row of 2:1 multiplexers per lane, shared between rows in synthesis).
        # Each row is one expression of the mask, so the simulator settles it at once.
        onehot, ones_rows = Const(1, 1), []
        for p in range(G):
            row = Signal(h + 1, name=f"ones_{p}")
            m.d.comb += row.eq(onehot)
            ones_rows.append(row)
            onehot = (onehot << mask[p])[:h + 1]

        def ones(p, c):
            return ones_rows[p][c] if max(0, p - l) <= c <= min(p, h) else Const(0, 1)

        def high_hit(r, j):        # lane r + j is the r-th set bit
            p = r + j
            return mask[p] & ones(p, r)

        def low_hit(r, j):         # lane r + j is the r-th clear bit
            p = r + j
            return ~mask[p] & ones(p, j)

        selects = [(h, l, high_hit, "high"), (l, h, low_hit, "low")]
        for lanes, span, hit, kind in selects:
            for r in range(lanes):
                hits = [hit(r, j) for j in range(span + 1)]
                if self.encoding == "onehot":
                    port = getattr(self, f"{kind}_select")
                    for j, value in enumerate(hits):
                        m.d.comb += port[r][j].eq(value)
                    continue
                port = getattr(self, f"{kind}_position")
                for bit in range(len(port[r])):
                    terms = [value for j, value in enumerate(hits) if (r + j) >> bit & 1]
                    m.d.comb += port[r][bit].eq(_any(terms))
        return m


def _any(terms):
    result = Const(0, 1)
    for term in terms:
        result = result | term
    return result
