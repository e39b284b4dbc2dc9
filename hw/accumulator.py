"""The PE's accumulator register: load on the first block of a reduction, else add."""

from __future__ import annotations

from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    """Two's-complement accumulator of ``width`` bits that wraps on overflow.

    Parameters
    ----------
    width : int
        Accumulator width (``StrumConfig.acc_width``).

    Attributes
    ----------
    addend : In(signed(width)), a block's sum.
    valid : In(1), ``addend`` holds a block this cycle.
    first : In(1), the block starts a new reduction: load ``addend`` (clear and add).
    enable : In(1), the pipeline advances; nothing changes while it is low.
    value : Out(signed(width)), the register, one cycle after the block.
    """

    def __init__(self, *, width: int):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        super().__init__({
            "addend": In(signed(width)),
            "valid": In(1),
            "first": In(1),
            "enable": In(1),
            "value": Out(signed(width)),
        })

    def elaborate(self, platform):
        m = Module()
        with m.If(self.enable & self.valid):
            with m.If(self.first):
                m.d.sync += self.value.eq(self.addend)
            with m.Else():
                m.d.sync += self.value.eq(self.value + self.addend)
        return m
