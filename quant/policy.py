"""Per-layer precision: which layers keep more high lanes, and what that costs the hardware.

A StruM network need not use one H everywhere. :class:`Policy` picks each layer's H
from the multiples of the PE's H up to B (B is int8 in effect):

- ``keep_int8``: layers that stay at H = B: ``first``, ``last``, ``depthwise`` or names;
- a budget of average stored bits per weight (``budget_bits``), of static-PE cycles
  relative to one pass per block (``budget_cycles``), or both: a sensitivity pass measures the
  network's output SQNR on the calibration images with each layer alone at each H (every
  other layer at H = B), and layers are raised greedily by output noise removed per bit
  (or cycle) spent, until the next step would break the budget.

The hardware cost is real. The dynamic PE runs any H in one cycle per block. The static
PE has H_pe high lanes: a block with H > H_pe high lanes runs in ``ceil(H / H_pe)``
passes, each an ordinary block for that PE (:func:`split_passes`); the passes' weights
sum to the block's, so their accumulators add up to the same result (tested on the
golden model, and through the Verilator DPU with :func:`strum.sim.passes.split_job`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .blocks import block_count
from .config import ConfigError, StrumConfig
from .image import BlockFields, compact, decode_blocks

__all__ = ["KEEP_RULES", "Policy", "PolicyResult", "passes", "split_passes", "layer_cycles",
           "network_cycles", "keep_set"]

KEEP_RULES = ("first", "last", "depthwise")


def passes(layer_high: int, pe_high: int) -> int:
    """Static-PE passes of one block with ``layer_high`` high lanes on a PE with ``pe_high``."""
    if pe_high < 1:
        return 1 if layer_high == 0 else math.inf
    return max(1, -(-layer_high // pe_high))


def split_passes(layer_config: StrumConfig, pe_config: StrumConfig,
                 fields: BlockFields) -> list[BlockFields]:
    """Blocks of a layer with more high lanes than the PE, as blocks the PE runs.

    Pass p carries, in every selection group, the high lanes of rank ``p*h .. p*h+h-1``
    (h = the PE's high lanes per group) with their values, topped up with already-used
    high lanes of value 0; the first pass also carries every low lane with its code and
    the DLIQ shift, later passes have low codes 0. ``sum(decode(pass))`` equals
    ``decode(block)`` lane by lane, so the accumulators add up to the layer's.
    """
    if (layer_config.scheme, layer_config.block_size, layer_config.group_size) != \
            (pe_config.scheme, pe_config.block_size, pe_config.group_size):
        raise ConfigError("split_passes: layer and PE must share scheme, block and group size")
    if layer_config.high_lanes < pe_config.high_lanes:
        raise ConfigError(f"split_passes: the layer's high_lanes={layer_config.high_lanes} is "
                          f"below the PE's {pe_config.high_lanes}")
    weights = decode_blocks(layer_config, fields)
    block, group = pe_config.block_size, pe_config.group_size
    per_group, layer_per_group = pe_config.high_per_group, layer_config.high_per_group
    grouped = fields.mask.reshape(fields.mask.shape[:-1] + (block // group, group))
    rank = (np.cumsum(grouped, axis=-1) - 1).reshape(fields.mask.shape)
    low_codes = np.zeros(fields.mask.shape, dtype=np.uint8)
    low_codes[~fields.mask] = fields.low_codes.reshape(-1)
    result = []
    for index in range(passes(layer_config.high_lanes, pe_config.high_lanes)):
        first = min(index * per_group, layer_per_group - per_group)
        window = fields.mask & (rank >= first) & (rank < first + per_group)
        live = fields.mask & (rank >= index * per_group) & (rank < (index + 1) * per_group)
        values = np.where(live, weights, 0)
        codes = np.where(fields.mask, 0, low_codes) if index == 0 else np.zeros_like(low_codes)
        shift = fields.shift if index == 0 else np.zeros_like(fields.shift)
        result.append(compact(pe_config, window, values, codes.astype(np.uint8), shift))
    return result


def _layer_high(config: StrumConfig) -> int:
    return config.high_lanes if config.is_strum else config.block_size


def layer_cycles(layer, config: StrumConfig, pe_config: StrumConfig, positions: int) -> dict:
    """Block-cycles per image of one layer on one PE: static (passes) and dynamic."""
    blocks = layer.weight.shape[0] * block_count(layer.weight[0].size, pe_config.block_size)
    work = blocks * positions
    count = passes(_layer_high(config), pe_config.high_lanes) if pe_config.is_strum else 1
    return {"passes": count, "static": work * count, "dynamic": work, "int8_pe": work}


def network_cycles(network, quantized, statistics, pe_config: StrumConfig) -> dict:
    """Block-cycles per image of the whole network on one PE of ``pe_config``'s H.

    ``static`` counts the passes of layers with more high lanes than the PE; ``dynamic``
    and ``int8_pe`` are one cycle per block (the int8 PE of the same B).
    """
    total = {"static": 0, "dynamic": 0, "int8_pe": 0}
    for layer in network.layers:
        row = layer_cycles(layer, quantized[layer.name].config, pe_config,
                           statistics[layer.name].positions)
        for key in total:
            total[key] += row[key]
    total["static_vs_int8_pe"] = total["static"] / total["int8_pe"] if total["int8_pe"] else None
    return total


def keep_set(network, names) -> set[str]:
    """Layer names a ``keep_int8`` list selects (rules and names), or a ConfigError."""
    layers = network.layers
    chosen = set()
    known = {layer.name for layer in layers}
    for item in names:
        if item == "first":
            chosen.add(layers[0].name)
        elif item == "last":
            chosen.add(layers[-1].name)
        elif item == "depthwise":
            chosen |= {layer.name for layer in layers if layer.op == "Conv"
                       and layer.attrs["group"] > 1 and layer.weight.shape[1] == 1}
        elif item in known:
            chosen.add(item)
        else:
            raise ConfigError(f"keep-int8: {item!r} is neither {', '.join(KEEP_RULES)} nor a "
                              f"layer of {network.path.name}")
    return chosen


@dataclass(frozen=True)
class PolicyResult:
    configs: dict
    quantized: dict
    report: dict


@dataclass(frozen=True)
class Policy:
    """Per-layer H: ``keep_int8`` rules and names, and budgets (all must hold).

    Parameters
    ----------
    keep_int8 : tuple of str
        ``first``, ``last``, ``depthwise`` or layer names: these layers get H = B.
    budget_bits : float or None
        Average stored bits per weight the network may use.
    budget_cycles : float or None
        Static-PE cycles the network may use, relative to one pass per block.
    """

    keep_int8: tuple = field(default_factory=tuple)
    budget_bits: float | None = None
    budget_cycles: float | None = None

    def __post_init__(self):
        if self.budget_bits is not None and not 0 < self.budget_bits <= 64:
            raise ConfigError(f"budget_bits must be a positive bits-per-weight figure, "
                              f"not {self.budget_bits!r}")
        if self.budget_cycles is not None and not self.budget_cycles >= 1:
            raise ConfigError(f"budget_cycles must be at least 1 (one pass per block), "
                              f"not {self.budget_cycles!r}")

    def choose(self, network, config: StrumConfig, method: str, statistics, calibration,
               act_scales) -> PolicyResult:
        """Each layer's config and quantized weight under this policy."""
        from .calibrate import quantize_layer
        from .quantize import sqnr_db

        if not config.is_strum or config.high_lanes < 1:
            raise ConfigError(f"a per-layer policy needs a StruM scheme with high_lanes >= 1, "
                              f"not {config.scheme} H={config.high_lanes}")
        block, step = config.block_size, config.high_lanes
        candidates = [h for h in range(step, block + 1, step)
                      if (h * config.group_size) % block == 0]
        if candidates[-1] != block:
            candidates.append(block)
        kept = keep_set(network, self.keep_int8)
        layers = network.layers
        options = {}          # layer -> H -> quantized
        for layer in layers:
            heights = [block] if layer.name in kept else candidates
            options[layer.name] = {h: quantize_layer(layer, config.replace(high_lanes=h),
                                                     statistics.get(layer.name) if statistics else None,
                                                     method) for h in heights}
        budgeted = self.budget_bits is not None or self.budget_cycles is not None
        noise = {layer.name: {} for layer in layers}
        if budgeted:
            reference = network.run_onnxruntime(calibration)
            top = {name: q[block] if block in q else q[max(q)] for name, q in options.items()}
            base = network.run_integer(calibration, top, act_scales, config)
            base_noise = 10 ** (-sqnr_db(reference, base) / 10)
            for layer in layers:
                for h, q in options[layer.name].items():
                    if h == block:
                        noise[layer.name][h] = base_noise
                        continue
                    trial = dict(top, **{layer.name: q})
                    y = network.run_integer(calibration, trial, act_scales, config)
                    noise[layer.name][h] = 10 ** (-sqnr_db(reference, y) / 10)

        cost = {}
        for layer in layers:
            positions = statistics[layer.name].positions if statistics else 1
            for h, q in options[layer.name].items():
                bits = q.bits_per_weight * layer.weight.size
                cycles = layer_cycles(layer, q.config, config, positions)["static"]
                cost[layer.name, h] = (bits, cycles)
        chosen = {name: min(q) for name, q in options.items()}
        weights = sum(layer.weight.size for layer in layers)
        single = sum(cost[layer.name, min(options[layer.name])][1] / passes(
            min(options[layer.name]), step) for layer in layers)

        def spend(choice):
            bits = sum(cost[name, h][0] for name, h in choice.items())
            cycles = sum(cost[name, h][1] for name, h in choice.items())
            return bits / weights, cycles / single

        def fits(choice):
            bits, cycles = spend(choice)
            return ((self.budget_bits is None or bits <= self.budget_bits + 1e-12)
                    and (self.budget_cycles is None or cycles <= self.budget_cycles + 1e-12))

        if budgeted:
            # Price of a step: its share of each budget's total (bits and/or cycles).
            scale = (1 / (self.budget_bits * weights) if self.budget_bits else 0.0,
                     1 / (self.budget_cycles * single) if self.budget_cycles else 0.0)
            while True:
                best = None
                for name, h in chosen.items():
                    for higher in (c for c in options[name] if c > h):
                        gain = noise[name][h] - noise[name][higher]
                        price = sum((cost[name, higher][i] - cost[name, h][i]) * scale[i]
                                    for i in (0, 1))
                        trial = dict(chosen, **{name: higher})
                        if gain <= 0 or not fits(trial):
                            continue
                        ratio = gain / max(price, 1e-30)
                        if best is None or ratio > best[0]:
                            best = (ratio, name, higher)
                if best is None:
                    break
                chosen[best[1]] = best[2]
        bits, cycles = spend(chosen)
        report = {
            "keep_int8": sorted(kept), "budget_bits": self.budget_bits,
            "budget_cycles": self.budget_cycles, "candidates": candidates,
            "bits_per_weight": bits, "static_cycles_vs_one_pass": cycles,
            "within_budget": fits(chosen),
            "layers": [{
                "name": layer.name, "high_lanes": chosen[layer.name],
                "passes": passes(chosen[layer.name], step),
                "bits_per_weight": options[layer.name][chosen[layer.name]].bits_per_weight,
                "sensitivity_sqnr_db": {str(h): _db(n) for h, n in noise[layer.name].items()},
            } for layer in layers],
        }
        return PolicyResult(
            configs={name: config.replace(high_lanes=h) for name, h in chosen.items()},
            quantized={name: options[name][h] for name, h in chosen.items()},
            report=report)


def _db(noise: float) -> float | None:
    return float(-10 * np.log10(noise)) if noise > 0 else None
