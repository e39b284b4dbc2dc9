"""The work a static PE's row or array edge does for it (``shared``), proven on its own.

With ``shared="decode"`` the PE receives one-hot selects from a :class:`MaskDecoder` per
row and selection group; with ``shared="route"`` routed activations from an
:class:`ActivationRouter` per group at the array edge. The PE's route part assumes
(decode) or checks against (route) the memory image's compaction *per group*; this part
proves the generated decoder or router, one group of G lanes with h high lanes, against
the same definition, for every mask with h set bits:

``decode``
    high select r has exactly bit j set, where lane r + j is the r-th set lane of the
    group; low select r likewise for the r-th clear lane (the PE's route assumption).
``route``
    high output r is the activation of the r-th set lane, low output r that of the r-th
    clear lane.

Per group is enough: with h set bits in every group, the k-th set lane of the block is
the (k - g*h)-th set lane of group g = k // h, so the block's compaction is the groups'
compactions side by side, which is how the DPU concatenates them (that wiring is
co-simulated, ``tests/test_shared.py``, not proven).
"""

from __future__ import annotations

from strum.quant.config import StrumConfig

__all__ = ["edge_component", "edge_checker"]


def edge_component(config: StrumConfig, shared: str, routing: str = "onehot"):
    """The decoder or router the row or edge builds for one group of ``config``."""
    from strum.hw.mask_decoder import MaskDecoder
    from strum.hw.router import ActivationRouter

    G, h = config.group_size, config.high_per_group
    if shared == "decode":
        return MaskDecoder(group_size=G, high=h, encoding="onehot")
    if shared == "route":
        has_low = config.scheme in ("dliq", "mip2q") and config.low_lanes > 0
        return ActivationRouter(group_size=G, high=h, act_width=config.act_width, routing=routing,
                                route_low=has_low)
    raise ValueError(f"shared must be 'decode' or 'route', not {shared!r}")


def edge_checker(config: StrumConfig, shared: str, module: str, *, route_low: bool = True) -> str:
    """Checker ``strum_edge_check`` of ``module`` (the decoder or router of one group)."""
    G, h = config.group_size, config.high_per_group
    l = G - h
    A = config.act_width
    w = G.bit_length()
    ports, lines = [f"input [{G - 1}:0] mask"], []
    if shared == "route":
        ports.append(f"input [{G * A - 1}:0] act")
        outputs = [("high", h * A)] + ([("low", l * A)] if route_low and l else [])
    else:
        outputs = [("high_select", h * (l + 1)), ("low_select", l * (h + 1))]
    outputs = [(name, width) for name, width in outputs if width]
    lines.append("module strum_edge_check (" + ", ".join(ports) + ");")
    lines += [f"  wire [{width - 1}:0] {name};" for name, width in outputs]
    connections = [".mask(mask)"] + ([".act(act)"] if shared == "route" else [])
    connections += [f".{name}({name})" for name, _ in outputs]
    lines.append(f"  {module} dut ({', '.join(connections)});")
    lines.append(f"  wire [{w - 1}:0] ones_0 = {w}'d0;")
    lines += [f"  wire [{w - 1}:0] ones_{i + 1} = ones_{i} + {{{w - 1}'d0, mask[{i}]}};" for i in range(G)]
    lines += ["  always @* begin", f"    assume(ones_{G} == {w}'d{h});"]
    names = {name for name, _ in outputs}
    for i in range(G):
        for r in range(max(0, i - l), min(i, h - 1) + 1):          # lane i is the r-th set lane
            if shared == "route":
                check = f"high[{r * A + A - 1}:{r * A}] == act[{i * A + A - 1}:{i * A}]"
            else:
                check = f"high_select[{r * (l + 1) + l}:{r * (l + 1)}] == {l + 1}'d{1 << (i - r)}"
            lines.append(f"    if (mask[{i}] && ones_{i} == {w}'d{r}) assert({check});")
        for r in range(max(0, i - h), min(i, l - 1) + 1):          # lane i is the r-th clear lane
            if shared == "route" and "low" in names:
                check = f"low[{r * A + A - 1}:{r * A}] == act[{i * A + A - 1}:{i * A}]"
            elif shared == "decode" and "low_select" in names:
                check = f"low_select[{r * (h + 1) + h}:{r * (h + 1)}] == {h + 1}'d{1 << (i - r)}"
            else:
                continue
            lines.append(f"    if (!mask[{i}] && {w}'d{i} - ones_{i} == {w}'d{r}) assert({check});")
    lines += ["  end", "endmodule", ""]
    return "\n".join(lines)
