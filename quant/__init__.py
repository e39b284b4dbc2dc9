"""strum.quant: the golden model. Every rounding, clipping, selection and packing rule."""

from .config import ConfigError, StrumConfig

__all__ = ["ConfigError", "StrumConfig"]
