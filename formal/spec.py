"""The specification the PE is proven against, as Verilog checkers (``docs/verification.md``).

Written from the memory-image definition (method sections 5-7 and
``docs/memory-image.md``), sharing nothing with :mod:`strum.hw` but the config and the
payload layout (the field offsets of ``interface.json``). The PE is proven in parts, each
checker wrapping the PE with its multiplier lanes cut out (Yosys ``expose -evert``: a
lane's ``act``/``weight``/``code`` become outputs of the PE, its ``product`` an input):

``route``
    Every lane receives its weight field and the activation of that weight's lane: high
    slot k takes the activation of the lane that is the k-th set mask bit of the block,
    low slot k that of the k-th clear bit (the memory image's compaction), for every mask
    legal per selection group.
``lanes``
    Every lane's product is its activation times its decoded weight (int8; DLIQ q4 as a
    4-bit two's complement; MIP2Q ``sign << 3 | c``, 0 or +-2**(c-1); zero).
``sum``
    With the lane products free values: the accumulator, ``pe.latency`` cycles after a
    block is taken, is the wrapped sum of all products (DLIQ low products times 2**e),
    loaded on ``first`` and added otherwise; ``result.valid`` rises for ``last`` and a
    stalled result holds; ``blocks.ready`` is low exactly while a result is offered and
    not taken; a reset empties the pipeline. Proven by temporal induction, with at most
    one stall cycle in a row, which ``hold`` makes general.
``hold``
    While ``blocks.ready`` is low (and no reset), no register of the PE changes: a stall
    of any length is the same as a stall of one cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from strum.quant.config import StrumConfig

__all__ = ["Lane", "PeShape", "lanes_of", "route_checker", "sum_checker", "hold_checker",
           "lane_checker", "esc"]

#: Low-lane product widths of the lanes' spec (act 8 bits times the decoded weight).
_LOW_PRODUCT = {"dliq": 12, "mip2q": 15, "zero": 1}


def esc(name: str) -> str:
    """A Verilog identifier for ``name`` (escaped when it is not a simple one)."""
    simple = name.replace("_", "a").isalnum() and not name[0].isdigit()
    return name if simple else f"\\{name} "


@dataclass(frozen=True)
class Lane:
    """One multiplier lane of the PE: its instance name and what it computes.

    kind: ``int8``, ``dliq``, ``mip2q`` or ``zero``; ``weight_port``: ``weight`` or ``code``;
    ``slot``: the index of its weight field (``high[slot]``, ``low[slot]``, ``weights[slot]``).
    """

    name: str
    kind: str
    slot: int
    side: str              # "high", "low" or "lane"

    @property
    def weight_port(self) -> str:
        return "weight" if self.kind == "int8" else "code"

    @property
    def weight_width(self) -> int:
        return 8 if self.kind == "int8" else 4

    @property
    def product_width(self) -> int:
        return 16 if self.kind == "int8" else _LOW_PRODUCT[self.kind]


@dataclass(frozen=True)
class PeShape:
    """What the checkers need to know about a PE: config, variant, latency, payload fields."""

    config: StrumConfig
    variant: str
    latency: int
    fields: dict            # path -> (offset, width)
    payload_width: int
    #: Registers between the payload and the lanes (``router_register``: 1).
    operand_stages: int = 0
    #: ``shared`` option of a static PE: ``none``, ``decode`` or ``route``.
    shared: str = "none"
    #: The Verilog vector the fields are read from (a checker may register the payload).
    source: str = "blocks__payload"

    def field(self, path: str) -> str:
        offset, width = self.fields[path]
        return f"{self.source}[{offset + width - 1}:{offset}]"

    def bit(self, path: str, index: int) -> str:
        offset, width = self.fields[path]
        assert index < width
        return f"{self.source}[{offset + index}]"


def lanes_of(shape: PeShape) -> list[Lane]:
    """The PE's lanes by instance name, as ``hw.pe`` names them (the decomposition's map)."""
    config, variant = shape.config, shape.variant
    B, H, L = config.block_size, config.high_lanes, config.low_lanes
    if variant == "int8":
        return [Lane(f"lane_{i}", "int8", i, "lane") for i in range(B)]
    if variant == "static":
        lanes = [Lane(f"high_{k}", "int8", k, "high") for k in range(H)]
        if config.scheme != "zero":
            lanes += [Lane(f"low_{k}", config.scheme, k, "low") for k in range(L)]
        return lanes
    lanes = [Lane(f"high_{i}", "int8", i, "high") for i in range(B)]
    if config.scheme != "zero":        # a pruned lane is the constant 0, no instance
        lanes += [Lane(f"low_{i}", config.scheme, i, "low") for i in range(B)]
    return lanes


# -- shared pieces ----------------------------------------------------------------------

def _pe_instance(shape: PeShape, lanes: list[Lane], *, pe_module: str = "strum_pe",
                 registers=()) -> list[str]:
    """Declarations and the instance of the lane-cut PE; lane wires named ``<lane>_<port>``."""
    lines = []
    for lane in lanes:
        lines.append(f"  wire [7:0] {lane.name}_act;")
        lines.append(f"  wire [{lane.weight_width - 1}:0] {lane.name}_{lane.weight_port};")
    ports = [".clk(clk)", ".rst(rst)", ".blocks__valid(blocks__valid)", ".blocks__ready(blocks__ready)",
             ".blocks__payload(blocks__payload)", ".result__ready(result__ready)",
             ".result__valid(result__valid)", ".result__payload(result__payload)"]
    for lane in lanes:
        ports.append(f".{esc(lane.name + '.act')}({lane.name}_act)")
        ports.append(f".{esc(lane.name + '.' + lane.weight_port)}({lane.name}_{lane.weight_port})")
        ports.append(f".{esc(lane.name + '.product')}({lane.name}_product)")
    for n, (d, q, width) in enumerate(registers):        # flip-flops cut: q free, d observed
        lines.append(f"  wire [{width - 1}:0] d_{n};")
        ports += [f".{esc(d)}(d_{n})", f".{esc(q)}(q_{n})"]
    lines.append(f"  {esc(pe_module)} pe (\n    " + ",\n    ".join(ports) + "\n  );")
    return lines


def _header(name: str, shape: PeShape, lanes: list[Lane], registers=()) -> list[str]:
    A = shape.config.acc_width
    ports = ["input clk", "input rst", "input blocks__valid", "output blocks__ready",
             f"input [{shape.payload_width - 1}:0] blocks__payload", "input result__ready",
             "output result__valid", f"output [{A - 1}:0] result__payload"]
    ports += [f"input [{lane.product_width - 1}:0] {lane.name}_product" for lane in lanes]
    ports += [f"input [{width - 1}:0] q_{n}" for n, (_, _, width) in enumerate(registers)]
    return [f"module {name} (\n  " + ",\n  ".join(ports) + "\n);"]


# -- route --------------------------------------------------------------------------------

def _running_count(name: str, bits: list[str], w: int) -> list[str]:
    """Wires ``<name>_i``: set bits among ``bits[:i]`` (a running count, w bits)."""
    lines = [f"  wire [{w - 1}:0] {name}_0 = {w}'d0;"]
    lines += [f"  wire [{w - 1}:0] {name}_{i + 1} = {name}_{i} + {{{w - 1}'d0, {bit}}};"
              for i, bit in enumerate(bits)]
    return lines


def route_checker(shape: PeShape, registers, pe_module: str, *, witness: bool = False,
                  legal_per: str = "group") -> str:
    """Checker ``strum_route_check``: every lane gets its weight's activation and weight field.

    Without ``operand_stages`` the PE comes with every flip-flop cut (``registers`` as for
    :func:`hold_checker`), so the routing is proven for every register state: it must
    depend on the payload alone. With ``operand_stages`` (``router_register``) the lanes'
    operands are registered: the checker registers the payload itself when the PE
    advances (``blocks.ready``, which the sum part proves) and checks the lanes against
    that copy, one cycle after the block entered and as long as it stays (a sequential
    check of the uncut PE, ``registers`` empty).
    ``witness``: also fix the activations and weights to distinct nonzero values, so that a
    counterexample (only the mask left free) shows a misrouting as a wrong block sum.
    ``legal_per``: ``"group"`` (the memory image's rule), or ``"block"`` to assume only H
    set bits per block, the reader's check before issue 14 (a static PE with G < B then
    fails: the counterexample is a mask the old reader let through).

    ``shared="decode"``: the payload holds the one-hot selects of the row's mask decoder
    instead of the mask; the checker takes the mask as a free input ``spec_mask`` and
    assumes the selects are the memory image's compaction of it (high select r of a group
    has bit j set when lane r + j of the group is its r-th set lane, low likewise).
    ``shared="route"``: the payload holds the routed activations: each lane must get its own.
    """
    from dataclasses import replace

    config, variant = shape.config, shape.variant
    lanes = lanes_of(shape)
    staged = shape.operand_stages > 0
    decode = variant == "static" and shape.shared == "decode"
    B = config.block_size
    header = _header("strum_route_check", shape, lanes, registers)
    if decode:
        header[0] = header[0].replace("\n);", f",\n  input [{B - 1}:0] spec_mask\n);")
    lines = header + _pe_instance(shape, lanes, pe_module=pe_module, registers=registers)
    # src: where the checked block's fields are read (the payload, or its registered copy).
    src = replace(shape, source="r_payload") if staged else shape
    guard = "r_known" if staged else None
    if staged:
        lines += [f"  reg [{shape.payload_width - 1}:0] r_payload = 0;", "  reg r_known = 0;",
                  *([f"  reg [{B - 1}:0] r_mask = 0;"] if decode else []),
                  "  always @(posedge clk)",
                  "    if (rst) r_known <= 0;",
                  "    else if (blocks__ready) begin",
                  "      r_payload <= blocks__payload; r_known <= 1;"
                  + (" r_mask <= spec_mask;" if decode else ""),
                  "    end"]
    body = []
    if witness:
        for path, (offset, width) in shape.fields.items():
            index = int(path[path.index("[") + 1:-1]) if "[" in path else 0
            if path.startswith(("act[", "high_act[", "low_act[")):
                value = 7 + 3 * index + (50 if path.startswith("low_act[") else 0)
            elif path.startswith(("high[", "weights[")):
                value = index + 1 if path.startswith("high[") or variant == "int8" else (index % 15) + 1
            elif path.startswith("low["):
                value = (index % 7) + 1 + (8 if index % 2 else 0)
            else:
                continue
            body.append(f"    assume({shape.field(path)} == {width}'d{value});")
        if "shift" in shape.fields:       # a shift the image can hold, for a readable block
            body.append(f"    assume({shape.field('shift')} <= {config.dliq_max_shift});")
    checks = []
    if variant == "int8":
        act = [src.field(f"act[{i}]") for i in range(B)]
        for i in range(B):
            checks.append(f"assert(lane_{i}_act == {act[i]});")
            checks.append(f"assert(lane_{i}_weight == {src.field(f'weights[{i}]')});")
    elif variant == "dynamic":
        act = [src.field(f"act[{i}]") for i in range(B)]
        for i in range(B):
            m = src.bit("mask", i)
            w = src.field(f"weights[{i}]")
            checks.append(f"assert(high_{i}_act == {act[i]});")
            checks.append(f"assert(high_{i}_weight == ({m} ? {w} : 8'd0));")
            if config.scheme == "zero":
                continue
            checks.append(f"assert(low_{i}_act == {act[i]});")
            offset = shape.fields[f"weights[{i}]"][0]
            checks.append(f"assert(low_{i}_code == ({m} ? 4'd0 : {src.source}[{offset + 3}:{offset}]));")
    elif shape.shared == "route":        # routed outside the PE: each lane takes its own field
        for lane in lanes:
            checks.append(f"assert({lane.name}_act == {src.field(f'{lane.side}_act[{lane.slot}]')});")
    else:
        H, L = config.high_lanes, config.low_lanes
        G, groups, h = config.group_size, config.groups_per_block, config.high_per_group
        l = G - h
        w = B.bit_length()
        # in_*: the block entering (assumptions); ones_*: the block checked (its copy).
        in_bits = ([f"spec_mask[{i}]" for i in range(B)] if decode
                   else [shape.bit("mask", i) for i in range(B)])
        bits = ([f"{'r_mask' if staged else 'spec_mask'}[{i}]" for i in range(B)] if decode
                else [src.bit("mask", i) for i in range(B)])
        # ones_<i>: set mask bits below lane i in the whole block, a running count. The
        # memory image compacts over the block: high[k] is the k-th set lane of the block,
        # low[k] the k-th clear one. Selection groups are the hardware's business.
        lines += _running_count("ones", bits, w)
        if staged:
            lines += _running_count("in_ones", in_bits, w)
        ones_in = "in_ones" if staged else "ones"
        if legal_per == "group":      # the image holds h set bits in every group
            for g in range(groups):
                body.append(f"    assume({ones_in}_{(g + 1) * G} - {ones_in}_{g * G} == {w}'d{h});")
        else:
            body.append(f"    assume({ones_in}_{B} == {w}'d{H});")
        if decode:                    # the selects are the compaction of the mask, per group
            has_low = "low_select[0]" in shape.fields
            for g in range(groups):
                for p in range(G):
                    i = g * G + p
                    count = f"({ones_in}_{i} - {ones_in}_{g * G})"
                    for r in range(max(0, p - l), min(p, h - 1) + 1):
                        body.append(f"    if ({in_bits[i]} && {count} == {w}'d{r}) assume("
                                    f"{shape.field(f'high_select[{g * h + r}]')} == {l + 1}'d{1 << (p - r)});")
                    for r in range(max(0, p - h), min(p, l - 1) + 1) if has_low else ():
                        body.append(f"    if (!{in_bits[i]} && {w}'d{p} - {count} == {w}'d{r}) assume("
                                    f"{shape.field(f'low_select[{g * l + r}]')} == {h + 1}'d{1 << (p - r)});")
        act = [src.field(f"act[{i}]") for i in range(B)]
        for i in range(B):
            for k in range(max(0, i - L), min(i, H - 1) + 1):          # the k-th set bit is at i
                checks.append(f"if ({bits[i]} && ones_{i} == {w}'d{k}) assert(high_{k}_act == {act[i]});")
            if config.scheme == "zero":
                continue
            for k in range(max(0, i - H), min(i, L - 1) + 1):          # the k-th clear bit is at i
                checks.append(f"if (!{bits[i]} && {w}'d{i} - ones_{i} == {w}'d{k}) "
                              f"assert(low_{k}_act == {act[i]});")
    if variant == "static":
        for lane in lanes:
            checks.append(f"assert({lane.name}_{lane.weight_port} == {src.field(f'{lane.side}[{lane.slot}]')});")
    lines.append("  always @* begin")
    lines += body
    if guard:
        lines.append(f"    if ({guard}) begin")
        lines += [f"      {check}" for check in checks]
        lines.append("    end")
    else:
        lines += [f"    {check}" for check in checks]
    lines += ["  end", "endmodule", ""]
    return "\n".join(lines)


# -- sum, accumulator and handshake -----------------------------------------------------------

def _tree(lines: list[str], name: str, terms: list[str], width: int) -> str:
    """A balanced adder tree over ``terms`` in order (a chain is far slower to prove)."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for j in range(0, len(terms) - 1, 2):
            wire = f"{name}_l{level}_{j // 2}"
            lines.append(f"  wire [{width - 1}:0] {wire} = {terms[j]} + {terms[j + 1]};")
            nxt.append(wire)
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms, level = nxt, level + 1
    return terms[0] if terms else f"{width}'d0"


def sum_checker(shape: PeShape) -> str:
    """Checker ``strum_sum_check``: accumulation, latency, stalls, reset and handshake.

    With ``operand_stages`` (``router_register``) the lanes see a block's operands one
    stage after it enters: the checker holds the block in a stage of its own (``s_payload``,
    moving when the pipeline advances) and takes the products, and the block's
    first/last/shift/mask, from that stage; the remaining latency - 1 stages follow.
    """
    from dataclasses import replace

    config, variant = shape.config, shape.variant
    A = config.acc_width
    pre = shape.operand_stages
    if pre not in (0, 1):
        raise ValueError(f"operand_stages must be 0 or 1, not {pre}")
    L = shape.latency - pre             # the stages after the block's products are known
    src = replace(shape, source="s_payload") if pre else shape
    lanes = lanes_of(shape)
    lines = _header("strum_sum_check", shape, lanes) + _pe_instance(shape, lanes)
    if pre:
        lines += [f"  reg [{shape.payload_width - 1}:0] s_payload = 0;", "  reg s_valid = 0;"]
    for lane in lanes:           # each product sign-extended (or wrapped) to the accumulator
        lines.append(f"  wire [{A - 1}:0] {lane.name}_term = $signed({lane.name}_product);")
    first, last = src.field("first"), src.field("last")
    shift = src.field("shift") if config.scheme == "dliq" else None
    high = [f"{lane.name}_term" for lane in lanes if lane.side in ("high", "lane")]
    low = [f"{lane.name}_term" for lane in lanes if lane.side == "low"]
    if variant == "dynamic" and config.scheme != "dliq":
        merged = []
        for i in range(config.block_size):
            low_term = f"low_{i}_term" if config.scheme != "zero" else f"{A}'d0"
            lines.append(f"  wire [{A - 1}:0] lane_{i}_chosen = {src.bit('mask', i)} ? "
                         f"high_{i}_term : {low_term};")
            merged.append(f"lane_{i}_chosen")
        block_sum = _tree(lines, "sum", merged, A)
    else:
        high_sum = _tree(lines, "high_sum", high, A)
        low_sum = _tree(lines, "low_sum", low, A)
        if shift is not None:
            lines.append(f"  wire [{A - 1}:0] low_shifted = {low_sum} << {shift};")
            low_sum = "low_shifted"
        block_sum = f"({high_sum} + {low_sum})" if low else high_sum
    lines += [
        f"  wire [{A - 1}:0] block_sum = {block_sum};",
        f"  reg [{L - 1}:0] d_valid = 0, d_last = 0, d_known = 0;",
        *[f"  reg [{A - 1}:0] d_acc_{k} = 0;" for k in range(L)],
        f"  reg [{A - 1}:0] acc_now = 0;",
        "  reg known_now = 0, prev_stall = 0;",
        f"  wire spec_result_valid = d_valid[{L - 1}] & d_last[{L - 1}];",
        "  wire spec_ready = !spec_result_valid | result__ready;",
        *(["  always @(posedge clk)",
           "    if (rst) s_valid <= 0;",
           "    else if (spec_ready) begin s_valid <= blocks__valid; s_payload <= blocks__payload; end",
           "  wire taken = s_valid & spec_ready;"] if pre else
          ["  wire taken = blocks__valid & spec_ready;"]),
        "  wire stall = spec_result_valid & !result__ready & !rst;",
        # The block's contribution is computed in the cycle it enters, then registered.
        f"  wire [{A - 1}:0] next_acc = {first} ? block_sum : acc_now + block_sum;",
        f"  wire [{A - 1}:0] entering_acc = taken ? next_acc : acc_now;",
        f"  wire entering_known = taken ? (known_now | {first}) : known_now;",
        "  always @(posedge clk) begin",
        "    if (rst) begin",
        "      d_valid <= 0; d_last <= 0; d_known <= 0; acc_now <= 0; known_now <= 0; prev_stall <= 0;",
        *[f"      d_acc_{k} <= 0;" for k in range(L)],
        "    end else begin",
        "      prev_stall <= stall;",
        f"      if (taken) begin acc_now <= next_acc; known_now <= known_now | {first}; end",
        "      if (spec_ready) begin",
        f"        d_valid[0] <= taken; d_last[0] <= {last}; d_known[0] <= entering_known;",
        "        d_acc_0 <= entering_acc;",
        *[f"        d_valid[{k}] <= d_valid[{k - 1}]; d_last[{k}] <= d_last[{k - 1}]; "
          f"d_known[{k}] <= d_known[{k - 1}]; d_acc_{k} <= d_acc_{k - 1};" for k in range(1, L)],
        "      end",
        "    end",
        "  end",
        "  always @* begin",
    ]
    if shift is not None:
        lines.append(f"    assume({shape.field('shift')} <= {config.dliq_max_shift});")
    lines += [
        "    assume(!(prev_stall && stall));     // longer stalls: see the hold part",
        "    assert(blocks__ready == spec_ready);",
        "    assert(result__valid == spec_result_valid);",
        f"    if (d_known[{L - 1}]) assert(result__payload == d_acc_{L - 1});",
        "  end",
        "endmodule", "",
    ]
    return "\n".join(lines)


# -- hold -------------------------------------------------------------------------------------

def hold_checker(shape: PeShape, registers: list[tuple[str, str, int]], pe_module: str) -> str:
    """Checker ``strum_hold_check``: with every flip-flop cut (``expose -evert-dff``: its
    ``q`` an input, its ``d`` an output), a stalled, un-reset PE loads every register
    with its own value. ``registers``: (d port, q port, width)."""
    lanes = lanes_of(shape)
    lines = (_header("strum_hold_check", shape, lanes, registers)
             + _pe_instance(shape, lanes, pe_module=pe_module, registers=registers))
    lines.append("  always @* begin")
    lines.append("    assume(!rst && !blocks__ready);")
    lines += [f"    assert(d_{n} == q_{n});" for n in range(len(registers))]
    lines += ["  end", "endmodule", ""]
    return "\n".join(lines)


# -- lanes ----------------------------------------------------------------------------------

def lane_checker(lane: Lane, module: str) -> str:
    """Checker ``strum_lane_check_<name>``: the lane module's product for every input."""
    W = lane.product_width
    lines = [f"module strum_lane_check_{lane.name} (input [7:0] act, "
             f"input [{lane.weight_width - 1}:0] {lane.weight_port});",
             f"  wire [{W - 1}:0] product;",
             f"  {esc(module)} dut (.act(act), .{lane.weight_port}({lane.weight_port}), .product(product));",
             "  wire signed [17:0] got = $signed(product);"]
    if lane.kind == "int8":
        lines.append("  wire signed [17:0] expected = $signed(act) * $signed(weight);")
    elif lane.kind == "dliq":       # q4: the code as a 4-bit two's complement
        lines.append("  wire signed [17:0] expected = $signed(act) * $signed(code);")
    elif lane.kind == "mip2q":      # sign << 3 | c; c = 0 is zero, else +-2**(c-1)
        lines += ["  wire signed [17:0] magnitude = $signed(act) * $signed({1'b0, 7'd1 << (code[2:0] - 3'd1)});",
                  "  wire signed [17:0] expected = code[2:0] == 3'd0 ? 18'sd0 : "
                  "(code[3] ? -magnitude : magnitude);"]
    else:
        lines.append("  wire signed [17:0] expected = 18'sd0;")
    lines += ["  always @* assert(got == expected);", "endmodule", ""]
    return "\n".join(lines)
