"""The processing element: lanes, adder trees and an accumulator behind two streams.

Three variants (method section 7), one class:

``int8``
    B lanes of 8x8: the baseline, for ``scheme="int8"`` only.
``static``
    H high lanes (8x8) and L low lanes (DLIQ 4x8, MIP2Q shift-and-negate; none for the
    zero scheme), fed by one :class:`~strum.hw.router.ActivationRouter` per selection
    group. Weights arrive compacted, as in the memory image.
``dynamic``
    B lanes with both paths: the mask picks the 8x8 or the low path of each lane and
    holds the other's operands at zero (operand isolation). Weights arrive in lane
    order. Any mask works, so an all-high mask runs an int8 layer at full rate.

A DLIQ PE sums its low lanes in a tree of their own and shifts that partial sum once
by the block shift e (:class:`~strum.hw.lanes.LowShift`).

Pipeline: the lanes and routing are combinational from the stream payload; the adder
trees hold ``adder_stages`` registers; the accumulator is the last register. With
``router_register`` a register sits between the router and the lanes (the weights
are delayed to match; in the int8 and dynamic PEs it holds the lanes' operands, so
that both PEs have the same depth): every multiplier then sees its two operands
change at once, which removes the glitches of late-arriving routed activations, at
one cycle of latency. One block
is accepted per cycle. The whole pipeline stalls (``blocks.ready`` low) while a result
is offered and not taken, so ``blocks.ready`` depends combinationally on
``result.ready``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from strum.quant.config import ConfigError, StrumConfig

from .accumulator import Accumulator
from .adder_tree import AdderTree
from .lanes import Int8Lane, LowShift, low_lane_class
from .layouts import check_shared, check_variant, pe_block_layout, refused_quietly
from .router import ROUTINGS, ActivationRouter

__all__ = ["StrumPE", "MAX_ADDER_STAGES"]

#: Deeper adder pipelines than this buy nothing: a 32-lane tree has 5 levels.
MAX_ADDER_STAGES = 8


class StrumPE(wiring.Component):
    """A StruM (or int8 baseline) processing element.

    Parameters
    ----------
    config : StrumConfig
        Scheme, B, H, G and the accumulator width; every width comes from it.
    variant : str or None
        ``"int8"``, ``"static"`` or ``"dynamic"``. ``None``: ``"int8"`` for the int8
        scheme, else ``"static"``.
    adder_stages : int
        Pipeline registers in the adder trees, 0..MAX_ADDER_STAGES.
    routing : str
        Activation routing of the static PE, one of :data:`~strum.hw.router.ROUTINGS`.
    router_register : bool
        A pipeline register between the routing and the lanes (latency + 1).
    isolate_zero : bool
        Operand isolation of lanes whose weight (or low code) is zero: their activation
        is held at 0, so they do not switch (int8 and static PEs; a power experiment).
    shared : str
        What a static PE receives already done by its DPU row or the array edge, one of
        :data:`~strum.hw.layouts.SHARINGS`: ``none`` (it decodes its mask and routes),
        ``decode`` (one-hot selects arrive instead of the mask: the PE keeps only the
        multiplexers; ``onehot`` routing), ``route`` (routed activations arrive: no
        router at all, as with masks shared by the rows or fixed lane positions).

    Attributes
    ----------
    blocks : In(stream.Signature(pe_block_layout(config, variant)))
        One block per transfer (fields in :mod:`strum.hw.layouts`).
    result : Out(stream.Signature(signed(acc_width)))
        The accumulator after each block whose ``last`` is set.
    latency : int
        Cycles from the cycle in which a block is transferred (``blocks.valid`` and
        ``blocks.ready`` high) to the first cycle in which the accumulator holds its
        contribution, without stalls in between: ``adder_stages + 1`` (+ 1 with
        ``router_register``). For a block with
        ``last`` set, ``result.valid`` is high from that cycle on until taken.

    Raises
    ------
    ConfigError
        For a scheme no PE runs, an unknown variant, a variant that does not fit the
        scheme, an adder_stages or routing out of range. (Bad B, H, G or accumulator
        widths are already refused by :class:`StrumConfig`.)
    """

    def __init__(self, *, config: StrumConfig, variant: str | None = None, adder_stages: int = 1,
                 routing: str = "onehot", shared: str = "none", router_register: bool = False,
                 isolate_zero: bool = False):
        with refused_quietly(self):
            if not isinstance(router_register, bool):
                raise ConfigError(f"router_register must be a bool, not {router_register!r}")
            if not isinstance(isolate_zero, bool):
                raise ConfigError(f"isolate_zero must be a bool, not {isolate_zero!r}")
            variant = check_variant(config, variant)
            if (not isinstance(adder_stages, int) or isinstance(adder_stages, bool)
                    or not 0 <= adder_stages <= MAX_ADDER_STAGES):
                raise ConfigError(f"adder_stages must be an integer from 0 to {MAX_ADDER_STAGES}, "
                                  f"not {adder_stages!r}")
            if routing not in ROUTINGS:
                raise ConfigError(f"routing must be one of {', '.join(ROUTINGS)}, not {routing!r}")
            check_shared(config, variant, routing, shared)
        self._shared = shared
        self._config, self._variant = config, variant
        self._adder_stages, self._routing = adder_stages, routing
        self._router_register = router_register
        self._isolate_zero = isolate_zero
        self.block_layout = pe_block_layout(config, variant, shared)
        super().__init__({
            "blocks": In(stream.Signature(self.block_layout)),
            "result": Out(stream.Signature(signed(config.acc_width))),
        })

    @property
    def config(self) -> StrumConfig:
        return self._config

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def adder_stages(self) -> int:
        return self._adder_stages

    @property
    def routing(self) -> str:
        return self._routing

    @property
    def shared(self) -> str:
        return self._shared

    @property
    def router_register(self) -> bool:
        return self._router_register

    @property
    def isolate_zero(self) -> bool:
        return self._isolate_zero

    def _isolated(self, act, weight):
        """``act``, or 0 when the weight is zero (with isolate_zero)."""
        return Mux(weight.any(), act, 0) if self._isolate_zero else act

    @property
    def latency(self) -> int:
        return self._adder_stages + 1 + int(self._router_register)

    def _operand(self, m, value, name):
        """``value`` itself, or registered (with the pipeline's enable) with router_register."""
        if not self._router_register:
            return value
        reg = Signal.like(value, name=f"{name}_q")
        with m.If(self._advance):
            m.d.sync += reg.eq(value)
        return reg

    # -- datapath -----------------------------------------------------------------------

    def _int8_paths(self, m, payload):
        products = []
        for i in range(self._config.block_size):
            lane = m.submodules[f"lane_{i}"] = Int8Lane(config=self._config)
            weight = self._operand(m, payload.weights[i], f"weight_{i}")
            m.d.comb += [lane.act.eq(self._isolated(self._operand(m, payload.act[i], f"act_{i}"), weight)),
                         lane.weight.eq(weight)]
            products.append(lane.product)
        return [("lanes", products, False)]

    def _static_paths(self, m, payload):
        config = self._config
        G, groups = config.group_size, config.groups_per_block
        h, l = config.high_per_group, config.group_size - config.high_per_group
        has_low = config.scheme != "zero" and config.low_lanes > 0
        high_products, low_products = [], []
        for j in range(groups):
            if self._shared == "route":          # routed at the array edge: no router here
                high_act = [payload.high_act[j * h + r] for r in range(h)]
                low_act = [payload.low_act[j * l + r] for r in range(l if has_low else 0)]
            else:
                router = m.submodules[f"router_{j}"] = ActivationRouter(
                    group_size=G, high=h, act_width=config.act_width, routing=self._routing,
                    route_low=has_low, decoded=self._shared == "decode")
                if self._shared == "decode":
                    m.d.comb += [router.high_select[r].eq(payload.high_select[j * h + r])
                                 for r in range(h)]
                    m.d.comb += [router.low_select[r].eq(payload.low_select[j * l + r])
                                 for r in range(l if has_low else 0)]
                else:
                    m.d.comb += router.mask.eq(payload.mask[j * G:(j + 1) * G])
                m.d.comb += [router.act[i].eq(payload.act[j * G + i]) for i in range(G)]
                high_act = [router.high[r] for r in range(h)]
                low_act = [router.low[r] for r in range(l if has_low else 0)]
            for r in range(h):
                lane = m.submodules[f"high_{j * h + r}"] = Int8Lane(config=config)
                weight = self._operand(m, payload.high[j * h + r], f"high_weight_{j * h + r}")
                act = self._operand(m, high_act[r], f"high_act_{j * h + r}")
                m.d.comb += [lane.act.eq(self._isolated(act, weight)), lane.weight.eq(weight)]
                high_products.append(lane.product)
            for r in range(l if has_low else 0):
                lane = m.submodules[f"low_{j * l + r}"] = low_lane_class(config.scheme)(config=config)
                code = self._operand(m, payload.low[j * l + r], f"low_code_{j * l + r}")
                act = self._operand(m, low_act[r], f"low_act_{j * l + r}")
                # A code is zero exactly when its value is (DLIQ 0 * 2^e, MIP2Q sign + c = 0 or -0).
                zero = code if config.scheme == "dliq" else code[:config.low_width - 1]
                m.d.comb += [lane.act.eq(self._isolated(act, zero)), lane.code.eq(code)]
                low_products.append(lane.product)
        return [("high", high_products, False), ("low", low_products, config.scheme == "dliq")]

    def _dynamic_paths(self, m, payload):
        config = self._config
        high_products, low_products, merged = [], [], []
        mask = self._operand(m, payload.mask, "mask")
        for i in range(config.block_size):
            is_high = mask[i]
            weight = self._operand(m, payload.weights[i], f"weight_{i}")
            act = self._operand(m, payload.act[i], f"act_{i}")
            high = m.submodules[f"high_{i}"] = Int8Lane(config=config)
            low = m.submodules[f"low_{i}"] = low_lane_class(config.scheme)(config=config)
            # Operand isolation: the path the mask does not choose sees only zeros.
            m.d.comb += [
                high.act.eq(act), high.weight.eq(Mux(is_high, weight, 0)),
                low.act.eq(act),
                low.code.eq(Mux(is_high, 0, weight.as_unsigned()[:config.low_width])),
            ]
            high_products.append(high.product)
            low_products.append(low.product)
            merged.append(Mux(is_high, high.product, low.product))
        if config.scheme == "dliq":
            return [("high", high_products, False), ("low", low_products, True)]
        return [("lanes", merged, False)]

    def elaborate(self, platform):
        m = Module()
        config, stages = self._config, self._adder_stages
        payload = self.blocks.payload

        advance = self._advance = Signal()
        m.d.comb += [advance.eq(~self.result.valid | self.result.ready),
                     self.blocks.ready.eq(advance)]

        paths = {"int8": self._int8_paths, "static": self._static_paths,
                 "dynamic": self._dynamic_paths}[self._variant](m, payload)

        def delayed(value, name):
            for stage in range(stages + int(self._router_register)):
                reg = Signal.like(value, name=f"{name}_d{stage + 1}")
                with m.If(advance):
                    m.d.sync += reg.eq(value)
                value = reg
            return value

        block_sum = 0
        for name, products, shifted in paths:
            if not products:
                continue
            width = max(len(p) for p in products)
            tree = m.submodules[f"{name}_tree"] = AdderTree(
                count=len(products), input_width=width, stages=stages,
                output_width=min(width + (len(products) - 1).bit_length(), config.acc_width))
            m.d.comb += [tree.inputs[i].eq(p) for i, p in enumerate(products)]
            m.d.comb += tree.enable.eq(advance)
            partial = tree.sum
            if shifted:
                low_shift = m.submodules.low_shift = LowShift(config=config, width=len(tree.sum))
                m.d.comb += [low_shift.value.eq(tree.sum),
                             low_shift.shift.eq(delayed(payload.shift, "shift"))]
                partial = low_shift.shifted
            block_sum = block_sum + partial

        m.submodules.accumulator = acc = Accumulator(width=config.acc_width)
        m.d.comb += [
            acc.addend.eq(block_sum),
            acc.valid.eq(delayed(self.blocks.valid, "valid")),
            acc.first.eq(delayed(payload.first, "first")),
            acc.enable.eq(advance),
            self.result.payload.eq(acc.value),
        ]
        last = delayed(payload.last, "last")
        with m.If(advance):
            m.d.sync += self.result.valid.eq(acc.valid & last)
        return m
