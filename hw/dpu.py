"""The DPU: an R x C output-stationary array of PEs behind two streams.

PE (r, c) accumulates one output (output channel k0 + r at output position p0 + c) over
a layer's reduction vector, one block per cycle. Each transfer on ``steps`` carries one
reduction step of a whole tile: R weight blocks, shared along the rows, and C
activation blocks, shared along the columns (or, with ``activations="per_pe"``, R x C
activation blocks, one per PE, for depthwise layers). The sequencer marks the step after a
``last`` step as the ``first`` of the next accumulation, fans every step out to all PEs
at once, and offers the R x C accumulators as one ``tiles`` transfer when the tile's
last step has passed through. Draining is one transfer, so it never stalls the array
while the consumer keeps up; the PEs' result registers hold a tile while the next one
is being computed.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from strum.quant.config import ConfigError, StrumConfig

from .layouts import check_variant, pe_block_layout, refused_quietly
from .pe import StrumPE

__all__ = ["StrumDPU", "dpu_step_layout", "dpu_tile_layout", "MAX_ARRAY_SIDE", "ACTIVATIONS",
           "check_activations"]

MAX_ARRAY_SIDE = 64
_PE_CONTROL_FIELDS = ("act", "first", "last")
#: How a step hands out activations: one block per column, shared by its R PEs, or one
#: block per PE (a depthwise layer: row r needs channel k0 + r's own activations).
ACTIVATIONS = ("per_column", "per_pe")


def check_activations(activations: str) -> str:
    """Refuse an ``activations`` option not in :data:`ACTIVATIONS`; return it."""
    if activations not in ACTIVATIONS:
        raise ConfigError(f"activations must be one of {', '.join(ACTIVATIONS)}, not {activations!r}")
    return activations


def _weight_layout(config: StrumConfig, variant: str) -> data.StructLayout:
    """The weight fields of a PE block (everything but activations and control)."""
    return data.StructLayout({name: field.shape for name, field in pe_block_layout(config, variant)
                              if name not in _PE_CONTROL_FIELDS})


def dpu_step_layout(config: StrumConfig, variant: str | None, rows: int, cols: int, *,
                    activations: str = "per_column") -> data.StructLayout:
    """One reduction step of a tile: ``weights`` (R blocks), ``act`` (C blocks: ``act[c]``;
    with ``activations="per_pe"`` R x C blocks: ``act[r][c]``), ``last``."""
    variant = check_variant(config, variant)
    block = data.ArrayLayout(signed(config.act_width), config.block_size)
    act = data.ArrayLayout(block, cols)
    if check_activations(activations) == "per_pe":
        act = data.ArrayLayout(act, rows)
    return data.StructLayout({
        "weights": data.ArrayLayout(_weight_layout(config, variant), rows),
        "act": act,
        "last": unsigned(1),
    })


def dpu_tile_layout(config: StrumConfig, rows: int, cols: int) -> data.ArrayLayout:
    """The R x C accumulators of a tile: ``tile[r][c]``."""
    return data.ArrayLayout(data.ArrayLayout(signed(config.acc_width), cols), rows)


class StrumDPU(wiring.Component):
    """An R x C array of :class:`~strum.hw.pe.StrumPE`, output-stationary.

    Parameters
    ----------
    config : StrumConfig
        The PEs' config.
    rows, cols : int
        R (output channels per tile) and C (output positions per tile), 1..64.
    variant, adder_stages, routing, router_register
        Passed to every PE (see :class:`~strum.hw.pe.StrumPE`).
    shared : str
        What the array does once for several PEs (static PEs; see
        :data:`~strum.hw.layouts.SHARINGS`): ``none`` (every PE decodes and routes),
        ``decode`` (one mask decoder per row and selection group, its one-hot selects
        go to the row's PEs, which keep only the multiplexers), ``route`` (one router
        per column, selection group and set of ``config.mask_share`` rows at the array
        edge: rows k0 + qK .. k0 + qK + K - 1 share their masks, so their activations are
        routed once, with the mask of row qK; the PEs have no router). The ``steps``
        layout is the same for every option: with ``route``, only the mask of each set's
        first row is read.
    activations : str
        ``per_column`` (default): each step carries C activation blocks, ``act[c]`` shared
        by column c's R PEs. ``per_pe``: each step carries R x C blocks, ``act[r][c]`` to
        PE (r, c) alone, so that the R rows of a depthwise (or grouped) layer, R channels
        of different groups, each get their own channel's activations and all R rows stay
        busy (one row per tile otherwise). The cost: the step, and so the activation bus
        and buffer read port, is R times as wide (R x C x B x 8 bits). Not with
        ``shared="route"`` (its routers serve a column's rows with one activation block).

    Attributes
    ----------
    steps : In(stream.Signature(dpu_step_layout(config, variant, rows, cols, activations=...)))
        One reduction step of a tile per transfer; ``last`` marks a tile's final step.
    tiles : Out(stream.Signature(dpu_tile_layout(config, rows, cols)))
        The accumulators of every PE after a tile's last step.
    latency : int
        Cycles from the transfer of a tile's last step to ``tiles.valid``: the PE's.

    Raises
    ------
    ConfigError
        For rows or cols out of range, or anything the PE refuses.
    """

    def __init__(self, *, config: StrumConfig, rows: int = 4, cols: int = 4,
                 variant: str | None = None, adder_stages: int = 1, routing: str | None = None,
                 shared: str = "none", router_register: bool = False,
                 activations: str = "per_column"):
        with refused_quietly(self):
            check_activations(activations)
            if activations == "per_pe" and shared == "route":
                raise ConfigError("activations='per_pe' does not go with shared='route': the edge "
                                  "routers serve a column's rows with one activation block")
            for name, value in (("rows", rows), ("cols", cols)):
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ARRAY_SIDE:
                    raise ConfigError(f"{name} must be an integer from 1 to {MAX_ARRAY_SIDE}, not {value!r}")
            variant = check_variant(config, variant)
            pe_options = {"config": config, "variant": variant, "adder_stages": adder_stages}
            if routing is not None:
                pe_options["routing"] = routing
            if router_register:
                pe_options["router_register"] = router_register
            if shared != "none":
                pe_options["shared"] = shared
                if shared == "route" and rows % config.mask_share:
                    raise ConfigError(f"rows={rows} must be a multiple of mask_share="
                                      f"{config.mask_share}: the rows sharing one mask route together")
            # The PEs are built here, so that their parameter checks run before any hardware.
            self._pes = [[StrumPE(**pe_options) for _ in range(cols)] for _ in range(rows)]
        self._config, self._variant, self._rows, self._cols = config, variant, rows, cols
        self._router_register = router_register
        self._shared = shared
        self._activations = activations
        super().__init__({
            "steps": In(stream.Signature(dpu_step_layout(config, variant, rows, cols,
                                                         activations=activations))),
            "tiles": Out(stream.Signature(dpu_tile_layout(config, rows, cols))),
        })

    @property
    def config(self) -> StrumConfig:
        return self._config

    @property
    def router_register(self) -> bool:
        return self._router_register

    @property
    def variant(self) -> str:
        return self._variant

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def adder_stages(self) -> int:
        return self._pes[0][0].adder_stages

    @property
    def routing(self) -> str:
        return self._pes[0][0].routing

    @property
    def shared(self) -> str:
        return self._shared

    @property
    def activations(self) -> str:
        return self._activations

    @property
    def latency(self) -> int:
        return self._pes[0][0].latency

    def elaborate(self, platform):
        m = Module()
        steps, tiles = self.steps, self.tiles
        weight_fields = [name for name, _ in _weight_layout(self._config, self._variant)]

        everyone = [(r, c, pe) for r, row in enumerate(self._pes) for c, pe in enumerate(row)]
        for r, c, pe in everyone:
            m.submodules[f"pe_{r}_{c}"] = pe

        # All PEs take a step together or none does: PE ready never depends on PE valid.
        all_ready = Signal()
        m.d.comb += all_ready.eq(Cat(pe.blocks.ready for _, _, pe in everyone).all())
        m.d.comb += steps.ready.eq(all_ready)
        take = steps.valid & all_ready

        starting = Signal(init=1)            # the next step opens a new accumulation
        with m.If(take):
            m.d.sync += starting.eq(steps.payload.last)

        pe_fields = {name for name, _ in everyone[0][2].block_layout}
        shared_inputs = self._shared_inputs(m)
        for r, c, pe in everyone:
            block = pe.blocks.payload
            m.d.comb += [
                pe.blocks.valid.eq(take),
                block.first.eq(starting),
                block.last.eq(steps.payload.last),
            ]
            if "act" in pe_fields:
                act = steps.payload.act[r][c] if self._activations == "per_pe" else steps.payload.act[c]
                m.d.comb += block.act.eq(act)
            m.d.comb += [getattr(block, name).eq(getattr(steps.payload.weights[r], name))
                         for name in weight_fields if name in pe_fields]
            for name, values in shared_inputs(r, c).items():
                m.d.comb += [getattr(block, name)[i].eq(value) for i, value in enumerate(values)]

        # Every PE sees the same steps, so their results are valid in the same cycle.
        m.d.comb += tiles.valid.eq(Cat(pe.result.valid for _, _, pe in everyone).all())
        for r, c, pe in everyone:
            m.d.comb += [tiles.payload[r][c].eq(pe.result.payload),
                         pe.result.ready.eq(tiles.valid & tiles.ready)]
        return m

    def _shared_inputs(self, m):
        """Build the row decoders or edge routers; return ``(r, c) -> {PE field: values}``."""
        from .mask_decoder import MaskDecoder
        from .router import ActivationRouter

        config, weights, act = self._config, self.steps.payload.weights, self.steps.payload.act
        G, groups = config.group_size, config.groups_per_block
        h, l = config.high_per_group, config.group_size - config.high_per_group
        has_low = config.scheme in ("dliq", "mip2q") and config.low_lanes > 0
        low_groups = groups if has_low else 0
        if self._shared == "decode":
            selects = {}
            for r in range(self._rows):
                high, low = [], []
                for j in range(groups):
                    decoder = m.submodules[f"mask_decoder_{r}_{j}"] = MaskDecoder(
                        group_size=G, high=h, encoding="onehot")
                    m.d.comb += decoder.mask.eq(weights[r].mask[j * G:(j + 1) * G])
                    high += [decoder.high_select[i] for i in range(h)]
                    low += [decoder.low_select[i] for i in range(l)] if j < low_groups else []
                selects[r] = {"high_select": high, "low_select": low}
            return lambda r, c: {k: v for k, v in selects[r].items() if v}
        if self._shared == "route":
            K, routed = config.mask_share, {}
            for q in range(self._rows // K):
                for c in range(self._cols):
                    high, low = [], []
                    for j in range(groups):
                        router = m.submodules[f"router_{q}_{c}_{j}"] = ActivationRouter(
                            group_size=G, high=h, act_width=config.act_width,
                            routing=self.routing, route_low=has_low)
                        m.d.comb += router.mask.eq(weights[q * K].mask[j * G:(j + 1) * G])
                        m.d.comb += [router.act[i].eq(act[c][j * G + i]) for i in range(G)]
                        high += [router.high[i] for i in range(h)]
                        low += [router.low[i] for i in range(l)] if has_low else []
                    routed[q, c] = {"high_act": high, "low_act": low}
            return lambda r, c: {k: v for k, v in routed[r // K, c].items() if v}
        return lambda r, c: {}
