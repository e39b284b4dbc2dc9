"""A layer with more high lanes than the static PE, run as passes of ordinary blocks.

:func:`strum.quant.policy.split_passes` turns each block of H_layer high lanes into
``ceil(H_layer / H_pe)`` blocks a PE with H_pe high lanes runs; here a whole
:class:`~strum.sim.layer.LayerJob` becomes the job of that PE: each weight block is
followed by its other passes, and each activation block is sent once per pass. The
accumulators, and so the golden outputs, are those of the original layer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from strum.quant.config import StrumConfig
from strum.quant.image import BlockFields
from strum.quant.policy import split_passes

from .layer import LayerJob

__all__ = ["split_job"]


def split_job(job: LayerJob, pe_config: StrumConfig) -> LayerJob:
    """``job`` (a StruM layer) as the block stream of a PE with ``pe_config``'s H."""
    parts = split_passes(job.config, pe_config, job.weights)
    # [K, nb, passes, ...] -> [K, nb * passes, ...]: a block's passes follow each other.
    fields = {name: np.stack([getattr(part, name) for part in parts], axis=2)
              for name in ("mask", "high", "low_codes", "shift")}
    fields = {name: value.reshape(value.shape[:1] + (-1,) + value.shape[3:])
              for name, value in fields.items()}
    return dataclasses.replace(job, config=pe_config, weights=BlockFields(**fields),
                               patches=np.repeat(job.patches, len(parts), axis=2))
