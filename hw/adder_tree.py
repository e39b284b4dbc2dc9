"""A pipelined adder tree: the sum of a PE's lane products."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AdderTree", "register_levels"]


def register_levels(levels: int, stages: int) -> list[int]:
    """Boundaries of a ``levels``-deep tree that get a pipeline register.

    Boundary 0 is the tree's inputs, boundary ``levels`` its output; the ``stages``
    registers are spread evenly over boundaries 0..levels, and any beyond levels + 1
    are stacked at the output.
    """
    spread = min(stages, levels + 1)
    chosen = [(i + 1) * (levels + 1) // (spread + 1) for i in range(spread)]
    return chosen + [levels] * (stages - spread)


class AdderTree(wiring.Component):
    """Balanced binary tree summing ``count`` signed inputs, with ``stages`` registers.

    Partial sums grow one bit per level but never beyond ``output_width``: the
    accumulator wraps at that width, so dropping higher bits earlier changes nothing.

    Parameters
    ----------
    count : int
        Number of inputs, at least 1.
    input_width : int
        Width of each signed input.
    output_width : int
        Width of the signed sum.
    stages : int
        Pipeline registers (0: combinational), spread evenly over the tree's levels
        (see :func:`register_levels`). All registers load only when ``enable`` is high.

    Attributes
    ----------
    inputs : In(ArrayLayout(signed(input_width), count))
    enable : In(1), advances the pipeline.
    sum : Out(signed(output_width)), valid ``latency`` cycles after its inputs.
    latency : int, equal to ``stages``.
    """

    def __init__(self, *, count: int, input_width: int, output_width: int, stages: int):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        if not isinstance(stages, int) or stages < 0:
            raise ValueError(f"stages must be a non-negative integer, not {stages!r}")
        self._count, self._input_width = count, input_width
        self._output_width, self._stages = output_width, stages
        super().__init__({
            "inputs": In(data.ArrayLayout(signed(input_width), count)),
            "enable": In(1),
            "sum": Out(signed(output_width)),
        })

    @property
    def levels(self) -> int:
        return (self._count - 1).bit_length()

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform):
        m = Module()
        terms = [self.inputs[i] for i in range(self._count)]
        width = min(self._input_width, self._output_width)
        boundaries = register_levels(self.levels, self._stages)
        for level in range(self.levels + 1):
            for copy in range(boundaries.count(level)):
                registered = []
                for index, term in enumerate(terms):
                    reg = Signal(signed(width), name=f"l{level}_r{copy}_t{index}")
                    with m.If(self.enable):
                        m.d.sync += reg.eq(term)
                    registered.append(reg)
                terms = registered
            if level == self.levels:
                break
            width = min(width + 1, self._output_width)
            pairs = []
            for index in range(0, len(terms) - 1, 2):
                node = Signal(signed(width), name=f"l{level + 1}_t{index // 2}")
                m.d.comb += node.eq(terms[index] + terms[index + 1])
                pairs.append(node)
            if len(terms) % 2:
                pairs.append(terms[-1])
            terms = pairs
        assert len(terms) == 1
        m.d.comb += self.sum.eq(terms[0])
        return m
