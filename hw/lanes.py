"""Multiplier lanes: one activation times one weight, all combinational.

The lanes are the arithmetic of method section 7: an 8x8 lane for high weights, a 4x8
lane for DLIQ low weights (its block shift is applied once, to the low lanes' partial
sum, by :class:`LowShift`), a shift-and-negate lane for MIP2Q low weights, and a zero
lane for pruned low weights. Every width comes from the :class:`StrumConfig`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from strum.quant.config import StrumConfig

__all__ = ["Int8Lane", "DliqLane", "Mip2qLane", "ZeroLane", "LowShift", "low_lane_class"]


class Int8Lane(wiring.Component):
    """Signed 8x8 multiplier: a high lane (and every lane of the int8 PE).

    Parameters
    ----------
    config : StrumConfig
        Gives ``act_width`` and ``high_width``.

    Attributes
    ----------
    act : In(signed(act_width))
    weight : In(signed(high_width))
    product : Out(signed(act_width + high_width))
    """

    def __init__(self, *, config: StrumConfig):
        self.product_width = config.act_width + config.high_width
        super().__init__({
            "act": In(signed(config.act_width)),
            "weight": In(signed(config.high_width)),
            "product": Out(signed(self.product_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(self.act * self.weight)
        return m


class DliqLane(wiring.Component):
    """Signed 4x8 multiplier of a DLIQ low lane: ``act * q4``, before the block shift.

    Parameters
    ----------
    config : StrumConfig
        Gives ``act_width`` and ``low_width``.

    Attributes
    ----------
    act : In(signed(act_width))
    code : In(unsigned(low_width))
        The 4-bit two's-complement code q4 of the memory image.
    product : Out(signed(act_width + low_width))
    """

    def __init__(self, *, config: StrumConfig):
        self.product_width = config.act_width + config.low_width
        super().__init__({
            "act": In(signed(config.act_width)),
            "code": In(unsigned(config.low_width)),
            "product": Out(signed(self.product_width)),
        })

    def elaborate(self, platform):
        # Radix-4 Booth: q4 = d0 + 4*d1 with digits in -2..2, so two partial products
        # (0, act or 2*act, conditionally inverted) instead of four rows of AND gates.
        m = Module()
        code, act = self.code, self.act
        width = len(act) + 2                      # 2*act, and its negation, fit
        terms = []
        for k, (high, middle, low) in enumerate([(code[1], code[0], 0), (code[3], code[2], code[1])]):
            one = Signal(name=f"one_{k}")
            two = Signal(name=f"two_{k}")
            negative = Signal(name=f"negative_{k}")
            m.d.comb += [
                one.eq(middle ^ low),
                two.eq((high & ~middle & ~low) | (~high & middle & low)),
                negative.eq(high & ~(middle & low)),
            ]
            magnitude = Signal(signed(width), name=f"magnitude_{k}")
            m.d.comb += magnitude.eq(Mux(one, act, 0) | Mux(two, act << 1, 0))
            inverted = Signal(signed(width), name=f"partial_{k}")
            m.d.comb += inverted.eq(magnitude ^ negative.replicate(width).as_signed())
            terms.append((inverted + negative) << (2 * k))
        m.d.comb += self.product.eq(terms[0] + terms[1])
        return m


class Mip2qLane(wiring.Component):
    """Shift-and-negate lane of MIP2Q: ``act * (±2**p)`` or 0, no multiplier.

    Parameters
    ----------
    config : StrumConfig
        Gives ``act_width``, ``low_width`` and ``mip2q_max_exp``.

    Attributes
    ----------
    act : In(signed(act_width))
    code : In(unsigned(low_width))
        ``sign << 3 | c``: c = 0 is zero, otherwise the weight is ±2**(c - 1).
    product : Out(signed(act_width + mip2q_max_exp + 1))
        One bit wider than the shifted activation: -(-128 * 64) = 8192.
    """

    def __init__(self, *, config: StrumConfig):
        self._act_width = config.act_width
        self._exp_bits = config.low_width - 1
        self._max_exp = config.mip2q_max_exp
        assert self._max_exp < 2 ** self._exp_bits, "every exponent has a code"
        self.product_width = config.act_width + config.mip2q_max_exp + 1
        super().__init__({
            "act": In(signed(config.act_width)),
            "code": In(unsigned(config.low_width)),
            "product": Out(signed(self.product_width)),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.code[:self._exp_bits]
        negative = self.code[self._exp_bits]
        # Negating the 8-bit activation before the shift is narrower than negating after.
        signed_act = Mux(negative, -self.act, self.act)
        shifted = ((signed_act << c) >> 1)[:self.product_width].as_signed()
        m.d.comb += self.product.eq(Mux(c == 0, 0, shifted))
        return m


class ZeroLane(wiring.Component):
    """A pruned low lane (the zero scheme): it contributes nothing.

    Same ports as the other low lanes so that a PE can treat the schemes alike; the
    static PE builds no zero lanes at all (nothing to route), the dynamic PE uses them.

    Attributes
    ----------
    act : In(signed(act_width))
    code : In(unsigned(low_width))
    product : Out(signed(1)), always 0.
    """

    def __init__(self, *, config: StrumConfig):
        self.product_width = 1
        super().__init__({
            "act": In(signed(config.act_width)),
            "code": In(unsigned(config.low_width)),
            "product": Out(signed(1)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.product.eq(0)
        return m


def low_lane_class(scheme: str):
    """The low-lane component of a StruM scheme."""
    return {"dliq": DliqLane, "mip2q": Mip2qLane, "zero": ZeroLane}[scheme]


class LowShift(wiring.Component):
    """The DLIQ block shift, applied once to the low lanes' partial sum: ``value << e``.

    Parameters
    ----------
    config : StrumConfig
        Gives ``shift_width`` and ``dliq_max_shift``.
    width : int
        Width of the signed partial sum.

    Attributes
    ----------
    value : In(signed(width))
    shift : In(unsigned(shift_width)), 0..dliq_max_shift (larger values are never sent).
    shifted : Out(signed(width + dliq_max_shift))
    """

    def __init__(self, *, config: StrumConfig, width: int):
        self.output_width = width + config.dliq_max_shift
        super().__init__({
            "value": In(signed(width)),
            "shift": In(unsigned(config.shift_width)),
            "shifted": Out(signed(self.output_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.shifted.eq(self.value << self.shift)
        return m
