"""What gets synthesized: a design (PE or DPU) of a config, as deterministic Verilog.

A :class:`Design` names a component kind and its parameters; the component itself
comes from a factory registered under that kind (:data:`FACTORIES`), so the flows never
import a hardware class directly: ``strum synth dpu`` works as soon as the DPU factory
finds ``strum.hw.dpu``. For the FPGA flows the component is wrapped in
:class:`RegisteredIO` so that Fmax measures register-to-register paths through the
datapath, not pads.

Parts for the area breakdown come from the Verilog module hierarchy: Amaranth names
every submodule instance ``<parent>.<name>`` (``dut.router_0.mask_decoder``) and the
flows keep that hierarchy, so :func:`part_of` maps a module path to a part.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from amaranth.back import verilog
from amaranth.hdl import Cat, ClockSignal, Instance, Module, ResetSignal, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow, In, Out

from strum.quant.config import ConfigError, StrumConfig

from .tools import SynthError, SynthInputError

__all__ = ["Design", "DESIGN_KINDS", "FACTORIES", "RegisteredIO", "wrap_registered_io", "design_verilog", "PARTS",
           "part_of", "TOP", "DUT", "DpuUnavailable"]

DESIGN_KINDS = ("pe", "dpu")
#: Verilog module of the design itself (its submodules are ``dut.<name>``).
DUT = "dut"
#: Top module of the FPGA flows: :class:`RegisteredIO` around :data:`DUT`.
TOP = "top"


class DpuUnavailable(SynthError):
    """The DPU (``strum.hw.dpu``) does not exist yet in this checkout."""


@dataclasses.dataclass(frozen=True)
class Design:
    """A component to synthesize.

    Parameters
    ----------
    kind : str
        ``"pe"`` or ``"dpu"`` (:data:`DESIGN_KINDS`).
    config : StrumConfig
    variant : str or None
        PE variant (``int8``, ``static``, ``dynamic``; None: the scheme's default).
    adder_stages : int
        Pipeline registers in the PE's adder trees.
    routing : str or None
        Activation routing of the static PE (see :mod:`strum.hw.router`; None: the PE's
        default).
    rows, cols : int
        DPU array size (a PE is 1 x 1).
    router_register : bool
        A pipeline register between the PE's routing and its lanes (see
        :class:`~strum.hw.pe.StrumPE`).
    isolate_zero : bool
        Zero-weight lanes hold their activation at 0 (PE only).
    shared : str
        What a PE receives already done by its row or the array edge
        (:data:`~strum.hw.layouts.SHARINGS`): a PE then leaves that part out; a DPU
        builds it once per row (``decode``) or per column and mask group (``route``).
    activations : str
        DPU only: ``per_column`` or ``per_pe`` (one activation block per PE, for
        depthwise layers; see :class:`~strum.hw.dpu.StrumDPU`).

    Raises
    ------
    SynthError
        For an unknown kind or a bad array size.
    ConfigError
        For a variant, routing or adder_stages the PE refuses.
    """

    kind: str = "pe"
    config: StrumConfig = StrumConfig()
    variant: str | None = None
    adder_stages: int = 1
    routing: str | None = None
    rows: int = 1
    cols: int = 1
    router_register: bool = False
    isolate_zero: bool = False
    shared: str = "none"
    activations: str = "per_column"

    def __post_init__(self):
        if self.kind not in DESIGN_KINDS:
            raise SynthInputError(f"design kind must be one of {', '.join(DESIGN_KINDS)}, not {self.kind!r}")
        if not isinstance(self.config, StrumConfig):
            raise SynthInputError(f"config must be a StrumConfig, not {type(self.config).__name__}")
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SynthInputError(f"{name} must be a positive integer, not {value!r}")
        if self.kind == "pe" and (self.rows, self.cols) != (1, 1):
            raise SynthInputError(f"a PE is 1x1, not {self.rows}x{self.cols}: use kind 'dpu' for an array")
        # The PE's own checks, before any component exists: a component whose constructor
        # raises still makes Amaranth warn that it was never used.
        from strum.hw.layouts import check_variant
        from strum.hw.pe import MAX_ADDER_STAGES
        from strum.hw.router import ROUTINGS
        from strum.hw.layouts import check_shared
        variant = check_variant(self.config, self.variant)
        if self.routing is not None and self.routing not in ROUTINGS:
            raise ConfigError(f"routing must be one of {', '.join(ROUTINGS)}, not {self.routing!r}")
        check_shared(self.config, variant, self.routing or "onehot", self.shared)
        if self.kind == "dpu" and self.shared == "route" and self.rows % self.config.mask_share:
            raise ConfigError(f"rows={self.rows} must be a multiple of mask_share="
                              f"{self.config.mask_share}: the rows sharing one mask route together")
        if self.activations != "per_column":        # (a checkout may have no DPU: see _dpu_factory)
            from strum.hw.dpu import check_activations
            check_activations(self.activations)
        if self.activations != "per_column" and self.kind != "dpu":
            raise SynthInputError(f"activations={self.activations!r} is an option of the DPU, "
                                  f"not of a {self.kind}")
        if self.activations == "per_pe" and self.shared == "route":
            raise ConfigError("activations='per_pe' does not go with shared='route': the edge "
                              "routers serve a column's rows with one activation block")
        if (not isinstance(self.adder_stages, int) or isinstance(self.adder_stages, bool)
                or not 0 <= self.adder_stages <= MAX_ADDER_STAGES):
            raise ConfigError(f"adder_stages must be an integer from 0 to {MAX_ADDER_STAGES}, "
                              f"not {self.adder_stages!r}")

    def component(self) -> wiring.Component:
        """A fresh component from the factory of :attr:`kind` (convert it, or Amaranth warns)."""
        return FACTORIES[self.kind](self)

    def resolved(self, component) -> "Design":
        """This design with the variant and routing the component chose for the defaults."""
        return dataclasses.replace(self, variant=component.variant,
                                   routing=getattr(component, "routing", self.routing))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["config"] = self.config.to_dict()
        if self.activations == "per_column":
            del data["activations"]     # the default: records made before the option stay valid
        return data

    @property
    def name(self) -> str:
        c = self.config
        array = f"-{self.rows}x{self.cols}" if self.kind == "dpu" else ""
        variant = self.variant or ("int8" if c.scheme == "int8" else "static")
        shared = "" if self.shared == "none" else f"-shared-{self.shared}"
        share = "" if c.mask_share == 1 else f"-k{c.mask_share}"
        return (f"{self.kind}{array}-{c.scheme}-b{c.block_size}-h{c.high_lanes}-g{c.group_size}"
                f"{share}-{variant}{shared}" + ("-rr" if self.router_register else "")
                + ("-iso" if self.isolate_zero else "")
                + ("-perpe" if self.activations == "per_pe" else ""))


def _options(design: Design) -> dict:
    options = {"config": design.config, "variant": design.variant,
               "adder_stages": design.adder_stages}
    if design.routing is not None:
        options["routing"] = design.routing
    if design.router_register:
        options["router_register"] = True
    if design.isolate_zero:
        options["isolate_zero"] = True
    if design.shared != "none":
        options["shared"] = design.shared
    return options


def _pe_factory(design: Design) -> wiring.Component:
    from strum.hw.pe import StrumPE
    return StrumPE(**_options(design))


def _dpu_factory(design: Design) -> wiring.Component:
    try:
        from strum.hw.dpu import StrumDPU
    except ImportError as error:
        raise DpuUnavailable(f"the DPU is not available yet ({error}): strum.hw.dpu.StrumDPU does "
                             f"not exist in this checkout; synthesize a PE with 'strum synth pe'") from None
    options = _options(design)
    if design.activations != "per_column":
        options["activations"] = design.activations
    return StrumDPU(**options, rows=design.rows, cols=design.cols)


#: kind -> factory(design) -> Component. A new kind needs only an entry here.
FACTORIES: dict[str, Callable[[Design], wiring.Component]] = {"pe": _pe_factory, "dpu": _dpu_factory}


class RegisteredIO(wiring.Component):
    """Registers every input and output of a design module, behind two pins.

    The design is instantiated as the Verilog module ``module`` (a black box here: its
    Verilog is generated separately and appended, see :func:`design_verilog`). Every
    input bit is one flip-flop of a shift chain fed from ``shift_in`` (a flip-flop
    whose input is the previous one: no logic), every output bit is captured in a
    flip-flop, and the captured bits are folded by XOR into ``fold_out`` (so nothing is
    optimised away). A design of any width then fits any package, and every timing
    path through the datapath starts and ends at a register.

    Parameters
    ----------
    signature : wiring.Signature
        The design's signature; port ``a__b`` of the module is member path (a, b), as
        Amaranth names them.
    module : str
        The design's Verilog module name.
    clocked : bool
        The module has ``clk`` and ``rst`` ports (its ``sync`` domain).

    Attributes
    ----------
    shift_in : In(1)
    fold_out : Out(1)
    input_bits, output_bits : int
        Flip-flops of the chain and of the capture register.
    """

    def __init__(self, signature: wiring.Signature, *, module: str = DUT, clocked: bool = True):
        self._module, self._clocked = module, clocked
        self._ports = [("__".join(map(str, path)), member.flow, member.shape)
                       for path, member in signature.members.flatten() if member.is_port]
        self.input_bits = sum(Shape.cast(s).width for _, f, s in self._ports if f == Flow.In)
        self.output_bits = sum(Shape.cast(s).width for _, f, s in self._ports if f == Flow.Out)
        super().__init__({"shift_in": In(1), "fold_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # Reset-less: the wrapper's flip-flops need no reset logic of their own.
        chain = Signal(max(self.input_bits, 1), reset_less=True)
        m.d.sync += chain.eq(Cat(self.shift_in, chain[:-1]))
        ports, outputs, offset = {}, [], 0
        if self._clocked:
            # A board whose clock domain has no reset (ULX3S) holds rst at 0.
            ports.update(i_clk=ClockSignal(), i_rst=ResetSignal(allow_reset_less=True))
        for name, flow, shape in self._ports:
            width = Shape.cast(shape).width
            if flow == Flow.In:
                ports[f"i_{name}"] = chain[offset:offset + width]
                offset += width
            else:
                outputs.append(Signal(width, name=f"dut_{name}"))
                ports[f"o_{name}"] = outputs[-1]
        m.submodules.dut = Instance(self._module, **ports)
        captured = Signal(max(self.output_bits, 1), reset_less=True)
        m.d.sync += captured.eq(Cat(*outputs))
        fold = Signal(reset_less=True)
        m.d.sync += fold.eq(captured.xor())
        m.d.comb += self.fold_out.eq(fold)
        return m


def wrap_registered_io(component: wiring.Component, verilog_text: str) -> RegisteredIO:
    """The :class:`RegisteredIO` wrapper of a design whose Verilog (module :data:`DUT`) is given."""
    header = re.search(rf"^module {DUT}\(([^)]*)\);", verilog_text, re.M)
    if header is None:
        raise SynthError(f"the design's Verilog has no module {DUT}")
    names = {port.strip() for port in header.group(1).split(",")}
    return RegisteredIO(component.signature, module=DUT, clocked={"clk", "rst"} <= names)


def design_verilog(component: wiring.Component, *, registered_io: bool = False) -> str:
    """Verilog of a component: module :data:`DUT` and its submodules, deterministic.

    With ``registered_io``, a :class:`RegisteredIO` top module :data:`TOP` comes first.
    The design's Verilog comes from :func:`strum.hw.export.to_verilog`, which caches it.
    """
    from strum.hw.export import to_verilog

    text = to_verilog(component, DUT)
    if not registered_io:
        return text
    wrapper = wrap_registered_io(component, text)
    return verilog.convert(wrapper, name=TOP, strip_internal_attrs=True) + text


# -- parts ----------------------------------------------------------------------------

#: Parts of the breakdown, in report order. ``registers`` collects every flip-flop of
#: the design; the other parts hold the combinational cells of their modules.
PARTS = ("int8_lanes", "low_lanes", "low_shift", "router", "mask_decoder", "adder_tree",
         "accumulator", "glue", "registers")

_PART_PATTERNS = (
    (re.compile(r"(lane|high)_\d+"), "int8_lanes"),       # int8 PE lanes, high lanes: 8x8
    (re.compile(r"low_\d+"), "low_lanes"),                # DLIQ 4x8, MIP2Q shift-and-negate
    (re.compile(r"low_shift"), "low_shift"),
    (re.compile(r"mask_decoder(_\d+)*"), "mask_decoder"),   # a DPU's row decoders: _<row>_<group>
    (re.compile(r"router(_\d+)+"), "router"),               # a DPU's edge routers: _<rows>_<col>_<group>
    (re.compile(r"\w+_tree"), "adder_tree"),
    (re.compile(r"accumulator"), "accumulator"),
)


def part_of(path: tuple[str, ...]) -> str:
    """The part of the module at ``path`` (instance names below the design's root).

    The innermost instance name decides: ``("router_0", "mask_decoder")`` is the mask
    decoder, ``("router_0",)`` the router's own multiplexers. The root itself and any
    container without a known name (a PE inside a DPU, the DPU top) is ``glue``: the
    handshake, pipeline delays, the dynamic PE's lane selection and the final sums.
    """
    if not path:
        return "glue"
    for pattern, part in _PART_PATTERNS:
        if pattern.fullmatch(path[-1]):
            return part
    return "glue"
