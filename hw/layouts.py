"""Payload layouts of the PE's block stream: the interface contract with the harnesses.

One block per stream transfer. Fields are packed least significant first, in the order
below; a field of zero width (H = 0 or L = 0) is left out.

========  ==========================================  ======================================
variant   weight fields (between ``act`` and ``first``)  meaning
========  ==========================================  ======================================
int8      ``weights``: B x signed(8)                  int8 weight of each lane, lane order
static    ``mask``: unsigned(B)                        bit i = 1 when lane i is high
          ``high``: H x signed(8)                      high values, ascending lane order
          ``low``: L x unsigned(4) (dliq, mip2q)       low codes, ascending lane order
          ``shift``: unsigned(shift_width) (dliq)      DLIQ block shift e
dynamic   ``mask``: unsigned(B)                        as static
          ``weights``: B x signed(8)                   lane order: the int8 value on a high
                                                      lane, the 4-bit low code (0..15,
                                                      zero-extended) on a low lane
          ``shift``: unsigned(shift_width) (dliq)      DLIQ block shift e
========  ==========================================  ======================================

Every layout starts with ``act`` (B x signed(8), lane order) and ends with ``first``
(this block starts a new accumulation: the accumulator is loaded with its sum) and
``last`` (after this block the accumulator is emitted on the result stream).

A static PE whose row shares part of its work (``shared``, :data:`SHARINGS`) takes other
fields in place of ``mask`` (and ``act``):

==========  ===============================================================================
shared      fields
==========  ===============================================================================
``none``    as above: the PE decodes its mask and routes its activations
``decode``  ``high_select``: H x unsigned(l + 1), ``low_select``: L x unsigned(h + 1) in
            place of ``mask``: the one-hot selects of the row's mask decoder (per group of
            G lanes, h high and l low, as :class:`~strum.hw.mask_decoder.MaskDecoder`)
``route``   ``high_act``: H x signed(8), ``low_act``: L x signed(8) (dliq, mip2q) in place
            of ``act`` and ``mask``: the activations already routed to the lanes (by a
            router at the array edge shared by the rows of one mask, or by fixed wiring)
==========  ===============================================================================

The static fields are the memory image's block fields as :func:`strum.quant.image.unpack_blocks`
returns them. The zero scheme has no ``low`` field: its image holds no low codes. The
dynamic PE takes the weights expanded to lane order, the form a weight buffer shared by
a row of PEs would hand out (one 8-bit slot per lane, as an int8 PE stores them).
"""

from __future__ import annotations

import contextlib

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from strum.quant.config import HARDWARE_SCHEMES, ConfigError, StrumConfig

__all__ = ["VARIANTS", "SHARINGS", "check_shared", "check_variant", "pe_block_layout", "refused_quietly"]

#: PE variants: the int8 baseline, static StruM and dynamic StruM.
VARIANTS = ("int8", "static", "dynamic")
#: What a static PE receives already done by its row or the array edge (see module doc).
SHARINGS = ("none", "decode", "route")


def check_variant(config: StrumConfig, variant: str | None) -> str:
    """Validate a (config, variant) pair and return the variant (``None``: the default).

    The int8 scheme runs on the ``int8`` PE only, and the ``int8`` PE runs the int8
    scheme only; a StruM scheme defaults to the ``static`` PE.

    Raises
    ------
    ConfigError
        For a config that is not a StrumConfig, a scheme no PE runs, an unknown variant or
        a variant that does not fit the scheme.
    """
    if not isinstance(config, StrumConfig):
        raise ConfigError(f"config must be a StrumConfig, not {type(config).__name__}")
    if config.scheme not in HARDWARE_SCHEMES:
        raise ConfigError(f"scheme {config.scheme!r} has no PE: the hardware runs "
                          f"{', '.join(HARDWARE_SCHEMES)}")
    if variant is None:
        variant = "int8" if config.scheme == "int8" else "static"
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    if (variant == "int8") != (config.scheme == "int8"):
        raise ConfigError(f"variant {variant!r} does not run scheme {config.scheme!r}: the int8 "
                          f"variant is the baseline PE of scheme 'int8', static and dynamic "
                          f"run the StruM schemes")
    return variant


def check_shared(config: StrumConfig, variant: str, routing: str, shared: str) -> None:
    """Refuse a ``shared`` option (:data:`SHARINGS`) that does not fit the PE."""
    if shared not in SHARINGS:
        raise ConfigError(f"shared must be one of {', '.join(SHARINGS)}, not {shared!r}")
    if shared != "none" and variant != "static":
        raise ConfigError(f"shared={shared!r} is an option of the static PE, not of variant {variant!r}")
    if shared == "decode" and routing != "onehot":
        raise ConfigError(f"shared='decode' hands one-hot selects to the PE: it needs routing "
                          f"'onehot', not {routing!r}")


def pe_block_layout(config: StrumConfig, variant: str | None = None,
                    shared: str = "none") -> data.StructLayout:
    """The payload layout of one block for a PE ``variant`` of ``config`` (see module doc)."""
    variant = check_variant(config, variant)
    B, H, L = config.block_size, config.high_lanes, config.low_lanes
    has_low = bool(L) and config.scheme in ("dliq", "mip2q")
    fields = {"act": data.ArrayLayout(signed(config.act_width), B)}
    if variant == "int8":
        fields["weights"] = data.ArrayLayout(signed(config.high_width), B)
    elif variant == "static" and shared == "route":
        del fields["act"]
        if H:
            fields["high_act"] = data.ArrayLayout(signed(config.act_width), H)
        if has_low:
            fields["low_act"] = data.ArrayLayout(signed(config.act_width), L)
        if H:
            fields["high"] = data.ArrayLayout(signed(config.high_width), H)
        if has_low:
            fields["low"] = data.ArrayLayout(unsigned(config.low_width), L)
    elif variant == "static":
        if shared == "decode":
            h = config.high_per_group
            l = config.group_size - h
            if H:
                fields["high_select"] = data.ArrayLayout(unsigned(l + 1), H)
            if has_low:
                fields["low_select"] = data.ArrayLayout(unsigned(h + 1), L)
        else:
            fields["mask"] = unsigned(B)
        if H:
            fields["high"] = data.ArrayLayout(signed(config.high_width), H)
        if L and config.scheme in ("dliq", "mip2q"):
            fields["low"] = data.ArrayLayout(unsigned(config.low_width), L)
    else:
        fields["mask"] = unsigned(B)
        fields["weights"] = data.ArrayLayout(signed(config.high_width), B)
    if config.scheme == "dliq":
        fields["shift"] = unsigned(config.shift_width)
    fields["first"] = unsigned(1)
    fields["last"] = unsigned(1)
    return data.StructLayout(fields)


@contextlib.contextmanager
def refused_quietly(component):
    """Wrap a constructor's parameter checks: a component refused before it was complete
    must not warn later, when it is collected, that it was never elaborated."""
    try:
        yield
    except Exception:
        component._MustUse__silence = True      # Amaranth's flag; it has no public switch
        raise
