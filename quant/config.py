"""The one configuration object of a StruM design.

A :class:`StrumConfig` is frozen, validates itself on construction and round-trips
to JSON. The quantizer, the hardware generator, the simulator and the synthesis
reports all read their parameters and every bit width from it, so that a width or
a rule is never derived twice.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ConfigError",
    "StrumConfig",
    "SCHEMES",
    "STRUM_SCHEMES",
    "HARDWARE_SCHEMES",
    "BLOCK_SIZES",
    "ROUNDINGS",
]


class ConfigError(ValueError):
    """A parameter is out of its documented range; the message names it."""


#: Low-lane forms of StruM (high lanes are always int8).
STRUM_SCHEMES = ("dliq", "mip2q", "zero")
#: Comparison schemes; ``2:4`` keeps 2 of every 4 weights at int8.
BASELINE_SCHEMES = ("int8", "int4", "int4-g16", "pot", "2:4")
SCHEMES = STRUM_SCHEMES + BASELINE_SCHEMES
#: Schemes a generated PE can run (int8 is the baseline PE).
HARDWARE_SCHEMES = ("dliq", "mip2q", "zero", "int8")
BLOCK_SIZES = (4, 8, 16, 32)
#: ``haz``: round half away from zero; ``rne``: round half to even.
ROUNDINGS = ("haz", "rne")

ACT_WIDTH = 8          # activations are int8, -128..127
HIGH_WIDTH = 8         # high lanes hold the base int8 weight, -127..127
LOW_WIDTH = 4          # a low lane is a 4-bit code
DLIQ_MAX_SHIFT = 4     # e = max(0, bitlen(m) - 3) with m <= 127
MIP2Q_MAX_EXP = 6      # low magnitudes saturate at 2**6 = 64
INT4_G16_GROUP = 16    # int4-g16: group length along the reduction vector
INT4_G16_SCALE_BITS = 8  # int4-g16: unsigned integer group multiplier, 1..255
MAX_MASK_SHARE = 64    # output channels sharing one mask: at most a DPU's rows


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class StrumConfig:
    """Quantization scheme and datapath widths of a StruM layer or PE.

    Parameters
    ----------
    scheme : str
        One of :data:`SCHEMES`. ``dliq``, ``mip2q`` and ``zero`` are StruM with that
        low-lane form; the others are comparison schemes.
    block_size : int
        B, lanes per block along the reduction vector, one of 4, 8, 16, 32.
    high_lanes : int
        H, lanes per block that stay int8 (0..B). H = B is plain int8.
    group_size : int or None
        G, selection group: the H high lanes are chosen as H*G/B per group of G
        consecutive lanes. ``None`` means G = B (free choice in the block).
    rounding : str
        ``haz`` (round half away from zero) or ``rne`` (half to even), used by every
        rounding step of the quantizer.
    acc_width : int
        Accumulator width in bits (two's complement, wraps on overflow).
    max_reduction_length : int or None
        The longest reduction vector (weights per output channel) the design must
        accumulate without overflow, checked against ``acc_width``. ``None``: as long as
        ``acc_width`` allows (see :attr:`reduction_limit`).
    mask_share : int
        K, consecutive output channels that share one mask per block position: their
        high lanes are selected jointly (by the sum of their ``|q8|``) and the memory
        image stores one mask per K channels (the last group may be shorter). 1: every
        channel has its own mask.

    Raises
    ------
    ConfigError
        When a parameter is out of range; the message names the parameter.
    """

    scheme: str = "dliq"
    block_size: int = 16
    high_lanes: int = 8
    group_size: int | None = None
    rounding: str = "haz"
    acc_width: int = 32
    max_reduction_length: int | None = None
    mask_share: int = 1

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {', '.join(SCHEMES)}, not {self.scheme!r}")
        if not _is_int(self.block_size) or self.block_size not in BLOCK_SIZES:
            raise ConfigError(
                f"block_size must be one of {', '.join(map(str, BLOCK_SIZES))}, not {self.block_size!r}")
        if not _is_int(self.high_lanes) or not 0 <= self.high_lanes <= self.block_size:
            raise ConfigError(
                f"high_lanes must be an integer from 0 to block_size={self.block_size}, "
                f"not {self.high_lanes!r}")
        if self.group_size is None:
            object.__setattr__(self, "group_size", self.block_size)
        if (not _is_int(self.group_size) or self.group_size < 1
                or self.block_size % self.group_size):
            raise ConfigError(
                f"group_size must divide block_size={self.block_size}, not {self.group_size!r}")
        if (self.high_lanes * self.group_size) % self.block_size:
            raise ConfigError(
                f"group_size={self.group_size} must give a whole number of high lanes per group: "
                f"high_lanes*group_size/block_size = {self.high_lanes}*{self.group_size}/"
                f"{self.block_size} is not an integer")
        if self.rounding not in ROUNDINGS:
            raise ConfigError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {self.rounding!r}")
        if not _is_int(self.acc_width) or not 8 <= self.acc_width <= 48:
            raise ConfigError(f"acc_width must be an integer from 8 to 48, not {self.acc_width!r}")
        if not _is_int(self.mask_share) or not 1 <= self.mask_share <= MAX_MASK_SHARE:
            raise ConfigError(f"mask_share must be an integer from 1 to {MAX_MASK_SHARE}, "
                              f"not {self.mask_share!r}")
        if self.max_reduction_length is not None:
            if not _is_int(self.max_reduction_length) or self.max_reduction_length < 1:
                raise ConfigError(f"max_reduction_length must be a positive integer or None, "
                                  f"not {self.max_reduction_length!r}")
            self.check_reduction_length(self.max_reduction_length, what="max_reduction_length")

    # -- derived quantities: the only place they are computed ------------------------

    @property
    def is_strum(self) -> bool:
        return self.scheme in STRUM_SCHEMES

    @property
    def low_lanes(self) -> int:
        """L = B - H."""
        return self.block_size - self.high_lanes

    @property
    def high_per_group(self) -> int:
        return self.high_lanes * self.group_size // self.block_size

    @property
    def groups_per_block(self) -> int:
        return self.block_size // self.group_size

    @property
    def act_width(self) -> int:
        return ACT_WIDTH

    @property
    def high_width(self) -> int:
        return HIGH_WIDTH

    @property
    def low_width(self) -> int:
        return LOW_WIDTH

    @property
    def dliq_max_shift(self) -> int:
        return DLIQ_MAX_SHIFT

    @property
    def shift_width(self) -> int:
        """Bits of the per-block DLIQ shift field."""
        return DLIQ_MAX_SHIFT.bit_length()

    @property
    def mip2q_max_exp(self) -> int:
        return MIP2Q_MAX_EXP

    @property
    def max_weight_magnitude(self) -> int:
        """Largest |w_int| the scheme produces: bounds the accumulator."""
        return {
            "int8": 127, "2:4": 127, "zero": 127, "mip2q": 127,
            "dliq": 128,                          # q4 = -8 at e = 4 gives -128
            "int4": 7, "pot": 2 ** MIP2Q_MAX_EXP,
            "int4-g16": 7 * (2 ** INT4_G16_SCALE_BITS - 1),
        }[self.scheme]

    @property
    def mask_bytes(self) -> int:
        return (self.block_size + 7) // 8

    @property
    def block_bytes(self) -> int:
        """Bytes of one block in the memory image (StruM schemes only)."""
        if not self.is_strum:
            raise ConfigError(f"scheme {self.scheme!r} has no StruM memory image")
        size = self.mask_bytes + self.high_lanes
        if self.scheme in ("dliq", "mip2q"):
            size += (self.low_lanes + 1) // 2
        if self.scheme == "dliq":
            size += 1
        return size

    @property
    def reduction_limit(self) -> int:
        """Longest reduction vector whose worst case fits the accumulator."""
        if self.max_reduction_length is not None:
            return self.max_reduction_length
        return self._overflow_free_length()

    def _overflow_free_length(self) -> int:
        # Worst case: activation -128 times the largest weight magnitude, on every lane.
        return (2 ** (self.acc_width - 1) - 1) // (2 ** (ACT_WIDTH - 1) * self.max_weight_magnitude)

    def check_reduction_length(self, length: int, *, what: str = "reduction length") -> None:
        """Refuse a reduction length whose worst case could overflow the accumulator."""
        if self.max_reduction_length is not None and length > self.max_reduction_length:
            raise ConfigError(f"{what}={length} exceeds max_reduction_length={self.max_reduction_length}")
        worst = 2 ** (ACT_WIDTH - 1) * self.max_weight_magnitude * length
        limit = 2 ** (self.acc_width - 1) - 1
        if worst > limit:
            longest = self._overflow_free_length()
            raise ConfigError(
                f"acc_width={self.acc_width} is too narrow for {what}={length} with scheme "
                f"{self.scheme!r}: the worst case 128*{self.max_weight_magnitude}*{length} = {worst} "
                f"exceeds {limit}; use a wider accumulator or at most {longest} weights")

    # -- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "StrumConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config has unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "StrumConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config is not valid JSON: {error}") from None
        return cls.from_dict(data)

    def replace(self, **changes) -> "StrumConfig":
        return dataclasses.replace(self, **changes)
