"""The activation router of a static StruM PE: brings each activation to its lane.

One router serves one selection group (G lanes, h high, l low). Its outputs are the
activations of the group's high lanes and of its low lanes, each in ascending lane
order: exactly the order of the compacted weights of the memory image.

Routing styles (``docs/pe-design.md`` has their measured areas):

``onehot`` (default)
    Per lane, an AND-OR multiplexer over its window (l + 1 activations for a high lane,
    h + 1 for a low lane) driven by one-hot selects from the mask decoder. The smallest
    in standard cells (AND-OR maps to AOI gates).
``network``
    A log-depth compaction network: every high activation moves towards lane 0 by the
    number of low lanes before it, one stage of 2:1 multiplexers per bit of that count
    (1, 2, 4, ... lanes), least significant first; the low activations likewise by the
    number of high lanes before them. Movements never collide because the counts never
    decrease along the block, and multiplexers that can only ever see one input are
    left out (:func:`network_plan`). Fewest multiplexers: the smallest in 2-input gates.
``full``
    Per lane, a binary tree over all G activations of the group: the prototype's
    datapath of method section 8, kept as the reference point.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .mask_decoder import MaskDecoder

__all__ = ["ActivationRouter", "ROUTINGS", "network_plan"]

ROUTINGS = ("onehot", "network", "full")
_ENCODING = {"network": "count", "onehot": "onehot", "full": "position"}


def mux_tree(select, items):
    """Binary multiplexer tree: ``items[select]`` (out-of-range selects are don't-care)."""
    level = list(items)
    for bit in range(len(select)):
        if len(level) == 1:
            break
        level = [Mux(select[bit], level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


def and_or(selects, items, width):
    """One-hot multiplexer: OR of the items whose select bit is set."""
    result = 0
    for j, item in enumerate(items):
        result = result | (item.as_unsigned() & selects[j].replicate(width))
    return result


class ActivationRouter(wiring.Component):
    """Routes a group's activations to its high and low lanes.

    Parameters
    ----------
    group_size : int
        G, lanes in the group.
    high : int
        h, high lanes in the group (set bits of every mask).
    act_width : int
        Activation width.
    routing : str
        One of :data:`ROUTINGS` (see the module doc).
    route_low : bool
        Build the low outputs (False when the low lanes need no activation).
    decoded : bool
        Take the mask decoder's one-hot selects as inputs instead of the mask (the
        decoder sits elsewhere, shared by a row of PEs); ``onehot`` routing only.

    Attributes
    ----------
    mask : In(unsigned(G)), the group's mask bits (not with ``decoded``).
    high_select, low_select : In(...) (with ``decoded``)
        The ports of the same name of :class:`~strum.hw.mask_decoder.MaskDecoder`.
    act : In(ArrayLayout(signed(act_width), G)), the group's activations, lane order.
    high : Out(ArrayLayout(signed(act_width), h)), activation of high lane r.
    low : Out(ArrayLayout(signed(act_width), l)), activation of low lane r (when
        ``route_low``).
    """

    def __init__(self, *, group_size: int, high: int, act_width: int, routing: str = "onehot",
                 route_low: bool = True, decoded: bool = False):
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, not {routing!r}")
        if decoded and routing != "onehot":
            raise ValueError(f"decoded selects need onehot routing, not {routing!r}")
        self.group_size, self.high_lanes = group_size, high
        self.low_lanes = group_size - high
        self.act_width, self.routing, self.route_low = act_width, routing, route_low
        self.decoded = decoded
        if decoded:
            ports = {"high_select": In(data.ArrayLayout(unsigned(self.low_lanes + 1), high)),
                     "low_select": In(data.ArrayLayout(unsigned(high + 1), self.low_lanes))}
        else:
            ports = {"mask": In(unsigned(group_size))}
        ports |= {
            "act": In(data.ArrayLayout(signed(act_width), group_size)),
            "high": Out(data.ArrayLayout(signed(act_width), high)),
        }
        if route_low:
            ports["low"] = Out(data.ArrayLayout(signed(act_width), self.low_lanes))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        G, h, l = self.group_size, self.high_lanes, self.low_lanes
        if self.decoded:
            decoder = self                  # the selects are inputs
        else:
            m.submodules.mask_decoder = decoder = MaskDecoder(
                group_size=G, high=h, encoding=_ENCODING[self.routing])
            m.d.comb += decoder.mask.eq(self.mask)
        act = [self.act[i] for i in range(G)]
        outputs = [("high", h, l)] + ([("low", l, h)] if self.route_low else [])

        if self.routing == "network":
            ones_before = [decoder.ones_before[i] for i in range(G)]
            for kind, lanes, span in outputs:
                if not lanes:
                    continue
                if kind == "high":
                    keep = [self.mask[i] for i in range(G)]
                    moves = [(i - ones_before[i])[:max(span.bit_length(), 1)] for i in range(G)]
                else:
                    keep = [~self.mask[i] for i in range(G)]
                    moves = list(ones_before)
                compacted = self._compact(m, kind, act, keep, moves, span.bit_length())
                port = getattr(self, kind)
                for r in range(lanes):
                    m.d.comb += port[r].eq(compacted[r])
            return m

        for kind, lanes, span in outputs:
            port = getattr(self, kind)
            for r in range(lanes):
                if self.routing == "onehot":
                    select = getattr(decoder, f"{kind}_select")[r]
                    value = and_or(select, act[r:r + span + 1], self.act_width)
                else:
                    value = mux_tree(getattr(decoder, f"{kind}_position")[r], act)
                m.d.comb += port[r].eq(value)
        return m

    def _compact(self, m, kind, items, keep, moves, stages):
        """Move each kept item towards 0 by its ``moves`` count, one stage per bit."""
        G = self.group_size
        kept = self.high_lanes if kind == "high" else self.low_lanes
        plan = network_plan(G, kept, stages)
        for stage in range(stages):
            step = 1 << stage
            new_items, new_keep, new_moves = [], [], []
            for p in range(G):
                src = p + step
                can_stay, can_arrive = plan[stage][p]
                arrives = keep[src] & moves[src][stage] if can_arrive else 0
                stays = keep[p] & ~moves[p][stage] if can_stay else 0
                if can_stay and can_arrive:
                    # Signals, not expressions: the control would otherwise grow
                    # exponentially with the stages when the simulator inlines it.
                    item = Signal(signed(self.act_width), name=f"{kind}_s{stage}_p{p}")
                    move = Signal(len(moves[p]), name=f"{kind}_s{stage}_p{p}_moves")
                    m.d.comb += [item.eq(Mux(arrives, items[src], items[p])),
                                 move.eq(Mux(arrives, moves[src], moves[p]))]
                    new_items.append(item)
                    new_moves.append(move)
                elif can_arrive:
                    new_items.append(items[src])
                    new_moves.append(moves[src])
                else:                        # stays, or nothing valid ever gets here
                    new_items.append(items[p])
                    new_moves.append(moves[p])
                keep_next = Signal(name=f"{kind}_s{stage}_p{p}_keep")
                m.d.comb += keep_next.eq(arrives | stays)
                new_keep.append(keep_next)
            items, keep, moves = new_items, new_keep, new_moves
        return items


def network_plan(group_size: int, kept: int, stages: int) -> list[list[tuple[bool, bool]]]:
    """For each stage and lane of a compaction network: (an item can stay, one can arrive).

    A kept item i with d other items before it exists for every
    ``max(0, i - kept + 1) <= d <= min(i, group_size - kept)``; after stages 0..k-1 it
    is at ``i - (d mod 2**k)``. A lane needs a multiplexer only where both can happen.
    """
    others = group_size - kept
    items = [(i, d) for i in range(group_size)
             for d in range(max(0, i - kept + 1), min(i, others) + 1)]
    plan = []
    for stage in range(stages):
        can_stay, can_arrive = [False] * group_size, [False] * group_size
        for i, d in items:
            at = i - (d % (1 << stage))
            if d >> stage & 1:
                can_arrive[at - (1 << stage)] = True
            else:
                can_stay[at] = True
        plan.append(list(zip(can_stay, can_arrive)))
    return plan
