"""StruM: structured mixed-precision inference, from golden quantizer to hardware.

The subpackages are ``strum.quant`` (the golden model), ``strum.hw`` (Amaranth
components), ``strum.sim`` (co-simulation) and ``strum.synth`` (synthesis flows).
"""

__version__ = "0.1.0"
