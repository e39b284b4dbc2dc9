"""Prove a PE's Verilog equal to the specification, for every input (``docs/verification.md``).

:func:`prove_pe` takes a :class:`~strum.hw.pe.StrumPE` (its generated Verilog, or a
user's edited Verilog of the same interface) and proves the four parts of
:mod:`strum.formal.spec` with Yosys's ``sat``; together they cover the whole PE. A PE
with ``router_register`` is proven with its lanes' operands one stage late (a sequential
route part); one with ``shared`` also gets the ``edge`` part (:mod:`strum.formal.edge`).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from strum.hw.export import payload_fields, to_verilog
from strum.hw.pe import StrumPE

from .spec import Lane, PeShape, hold_checker, lane_checker, lanes_of, route_checker, sum_checker
from .tools import ProofToolError, run_yosys, work_root

__all__ = ["PARTS", "EDGE_PART", "PartResult", "ProofReport", "ProofError", "check_interface", "pe_shape", "prove_pe"]

#: The parts, in the order they run.
PARTS = ("route", "lanes", "sum", "hold")
#: The part of a PE built with ``shared``: its row's decoder or edge's router (formal/edge.py).
EDGE_PART = "edge"
#: Induction depth limit of the sum part (it needs about 2 * latency + 2 steps).
MAX_INDUCTION = 40


class ProofError(ValueError):
    """The Verilog cannot be proven as given (a missing lane instance, a wrong port)."""


@dataclass
class PartResult:
    """One part's verdict: ``proven``, ``failed`` (with a counterexample) or ``unknown``."""

    part: str
    status: str
    cpu_seconds: float
    wall_seconds: float
    detail: str = ""
    counterexample: dict | None = None

    def to_dict(self) -> dict:
        return {"part": self.part, "status": self.status, "cpu_seconds": round(self.cpu_seconds, 2),
                "wall_seconds": round(self.wall_seconds, 2), "detail": self.detail,
                "counterexample": self.counterexample}


@dataclass
class ProofReport:
    config: dict
    variant: str
    latency: int
    parts: list[PartResult] = field(default_factory=list)
    #: Reading the Verilog and cutting it (Yosys), before any part.
    prepare_cpu_seconds: float = 0.0

    @property
    def proven(self) -> bool:
        return bool(self.parts) and all(part.status == "proven" for part in self.parts)

    def to_dict(self) -> dict:
        return {"config": self.config, "variant": self.variant, "latency": self.latency,
                "proven": self.proven, "prepare_cpu_seconds": round(self.prepare_cpu_seconds, 2),
                "parts": [part.to_dict() for part in self.parts]}


def pe_shape(pe: StrumPE) -> PeShape:
    fields = {path: (spec.offset, spec.width) for path, spec in payload_fields(pe.block_layout).items()}
    return PeShape(config=pe.config, variant=pe.variant, latency=pe.latency, fields=fields,
                   payload_width=pe.block_layout.size, operand_stages=int(pe.router_register),
                   shared=pe.shared)


# -- Yosys scripts ------------------------------------------------------------------------

def _select(lanes: list[Lane]) -> str:
    return " ".join(f"strum_pe/c:{lane.name}" for lane in lanes)


def _prepare(work: Path, shape: PeShape, lanes: list[Lane]) -> tuple[list[tuple[str, str, int]], float]:
    """Cut the lanes out (pe_cut.il) and, flattened, every flip-flop too (pe_hold.il)."""
    script = "\n".join([
        "read_verilog -sv pe.v",
        "hierarchy -top strum_pe",
        "proc",
        # Each lane instance of its own module, as generated: the lanes part proves that module.
        *[f"select -assert-count 1 strum_pe/c:{lane.name} strum_pe/t:strum_pe.{lane.name} %i"
          for lane in lanes],
        f"expose -evert {_select(lanes)}" if lanes else "",
        "write_rtlil pe_cut.il",
        "flatten",
        "opt_clean",
        "expose -evert-dff strum_pe/t:$dff strum_pe/t:$adff",
        "opt_clean",                    # the flip-flops, now driving nothing, go
        "select -assert-none strum_pe/t:$*ff* strum_pe/t:$*latch*",   # every register cut
        "rename strum_pe strum_pe_hold",
        "write_json -noscopeinfo pe_hold.json",
        "write_rtlil pe_hold.il",
    ])
    try:
        _, cpu, _ = run_yosys(script, cwd=work, log="prepare")
    except ProofToolError as error:
        missing = re.search(r"strum_pe/c:(\w+)", str(error))
        if "Assertion failed" in str(error) and missing:
            name = missing.group(1)
            raise ProofError(f"the Verilog has no lane instance {name!r} of module strum_pe.{name} "
                             f"in module strum_pe: the proof cuts the PE at its lanes, named as the "
                             f"generated Verilog names them") from None
        raise ProofError(f"Yosys cannot prepare the Verilog for the proof (top module strum_pe, "
                         f"the generated ports): {str(error).splitlines()[-1]}") from None
    module = json.loads((work / "pe_hold.json").read_text())["modules"]["strum_pe_hold"]
    ports = module["ports"]
    # A register with several names gets a d/q pair per name; only one q drives anything.
    used = {bit for cell in module["cells"].values() for bits in cell["connections"].values()
            for bit in bits}
    used |= {bit for name, net in module["netnames"].items() if name not in ports
             for bit in net["bits"]}
    registers = []
    for name, port in sorted(ports.items()):
        q = name[:-2] + ".q"
        if name.endswith(".d") and q in ports and any(bit in used for bit in ports[q]["bits"]):
            registers.append((name, q, len(port["bits"])))
    return registers, cpu


def _sat_script(read: str, top: str, sat: str) -> str:
    return "\n".join([read, "read_verilog -sv -formal check.v", f"hierarchy -top {top}", "proc",
                      "flatten", "chformal -lower", "opt_clean", f"sat {sat} {top}"])


_VERDICT_OK = ("SUCCESS!", "Induction step proven")
_ROW = re.compile(r"^\s+(?:(\d+|init)\s+)?(\\\S+|\S+)\s+(-?\d+|--)\s+(\S+)\s+([01xX]+)\s*$")


def _model(log: str) -> list[dict]:
    """Rows of the model table a failed ``sat`` prints: {step, signal, bits}."""
    rows = []
    for line in log.splitlines():
        match = _ROW.match(line)
        if match and not line.strip().startswith("Signal"):
            step, signal, _, _, bits = match.groups()
            rows.append({"step": step, "signal": signal.lstrip("\\"), "bits": bits})
    return rows


def _verdict(log: str) -> str:
    if "FAIL!" in log:                  # a model: a counterexample (base case or plain proof)
        return "failed"
    if any(token in log for token in _VERDICT_OK):
        return "proven"
    return "unknown"


def _value(bits: str, signed: bool = False) -> int:
    bits = bits.replace("x", "0").replace("X", "0")
    value = int(bits, 2)
    if signed and bits[0] == "1":
        value -= 1 << len(bits)
    return value


# -- counterexamples in the golden model's terms ---------------------------------------------

def _field(shape: PeShape, payload: int, path: str, signed: bool = False) -> int:
    offset, width = shape.fields[path]
    value = payload >> offset & ((1 << width) - 1)
    if signed and value >> (width - 1):
        value -= 1 << width
    return value


def _decode_block(shape: PeShape, payload: int, mask_value: int | None = None) -> dict:
    """A payload as the golden model sees it: mask, lane-order weights, activations.

    ``mask_value``: the mask when the payload holds none (``shared="decode"``: the
    checker's free mask, to which the selects are tied)."""
    from strum.quant.image import BlockFields, decode_blocks

    config = shape.config
    B = config.block_size
    if shape.shared == "route":         # no mask, no lane-order activations: the lanes' own
        block = {"first": _field(shape, payload, "first"), "last": _field(shape, payload, "last")}
        for side, count in (("high", config.high_lanes), ("low", config.low_lanes)):
            if f"{side}_act[0]" in shape.fields:
                block[f"{side}_act"] = [_field(shape, payload, f"{side}_act[{k}]", True) for k in range(count)]
        return block
    act = [_field(shape, payload, f"act[{i}]", True) for i in range(B)]
    block = {"act": act, "first": _field(shape, payload, "first"), "last": _field(shape, payload, "last")}
    if shape.variant == "int8":
        block["weights"] = [_field(shape, payload, f"weights[{i}]", True) for i in range(B)]
    else:
        mask_bits = _field(shape, payload, "mask") if mask_value is None else mask_value
        mask = np.array([(mask_bits >> i) & 1 for i in range(B)], dtype=bool)
        block["mask"] = "".join("1" if bit else "0" for bit in mask[::-1])
        shift = _field(shape, payload, "shift") if "shift" in shape.fields else 0
        if shape.variant == "static":
            H, L = config.high_lanes, config.low_lanes
            high = np.array([_field(shape, payload, f"high[{k}]", True) for k in range(H)], np.int64)
            low = np.array([_field(shape, payload, f"low[{k}]") for k in range(L)] if "low[0]" in shape.fields
                           else [0] * L, np.uint8)
        else:
            raw = [_field(shape, payload, f"weights[{i}]", True) for i in range(B)]
            high = np.array([w for w, m in zip(raw, mask) if m], np.int64)
            low = np.array([w & 0xF for w, m in zip(raw, mask) if not m], np.uint8)
        if shape.variant == "static" and mask.sum() != config.high_lanes:
            block["weights"] = None
        else:
            fields = BlockFields(mask=mask, high=high, low_codes=low, shift=np.int64(shift))
            block["weights"] = decode_blocks(config, fields).tolist()
        if config.scheme == "dliq":
            block["shift"] = shift
        if block["weights"] is not None:
            block["expected_block_sum"] = int(np.dot(block["weights"], act))
    return block


def _lane_weight(lane: Lane, code: int, shift: int) -> int:
    """The weight a lane multiplies by, from its weight input (memory-image decoding)."""
    from strum.quant.strum import dliq_decode, mip2q_decode

    if lane.kind == "int8":
        return code - 256 if code >= 128 else code
    if lane.kind == "dliq":
        return int(dliq_decode(np.array([code], np.uint8), shift)[0])
    if lane.kind == "mip2q":
        return int(mip2q_decode(np.array([code], np.uint8))[0])
    return 0


def _expected_acts(shape: PeShape, block: dict) -> dict:
    """The activation each lane should get: a static PE's high slot k takes the k-th set
    lane of the block's mask, low slot k the k-th clear one (the memory image's
    compaction); other PEs' lane i takes act[i]; with ``shared="route"`` slot k its own
    routed activation."""
    if shape.shared == "route":
        return {lane.name: block[f"{lane.side}_act"][lane.slot] for lane in lanes_of(shape)}
    act = block["act"]
    if shape.variant != "static":
        return {lane.name: act[lane.slot] for lane in lanes_of(shape)}
    mask = [bit == "1" for bit in block["mask"][::-1]]
    high = [i for i, bit in enumerate(mask) if bit]
    low = [i for i, bit in enumerate(mask) if not bit]
    return {**{f"high_{k}": act[i] for k, i in enumerate(high)},
            **{f"low_{k}": act[i] for k, i in enumerate(low)}}


def _route_counterexample(shape: PeShape, rows: list[dict], payload_signal: str = "blocks__payload") -> dict:
    # The last step of a sequential trace is the one that fails (rows come in step order).
    values = {row["signal"]: row["bits"] for row in rows}
    payload = _value(values[payload_signal])
    mask = next((values[name] for name in ("r_mask", "spec_mask") if name in values), None)
    block = _decode_block(shape, payload, None if mask is None else _value(mask))
    got_sum, lanes = 0, []
    expected_act = _expected_acts(shape, block)
    for lane in lanes_of(shape):
        act = _value(values.get(f"{lane.name}_act", "0"), True)
        code = _value(values.get(f"{lane.name}_{lane.weight_port}", "0"))
        weight = _lane_weight(lane, code, block.get("shift", 0))
        got_sum += act * weight
        entry = {"lane": lane.name, "act": act, "weight": weight}
        if expected_act.get(lane.name, act) != act:
            entry["expected_act"] = expected_act[lane.name]
        lanes.append(entry)
    block["got_block_sum"] = got_sum
    block["lanes"] = lanes
    return block


# -- the parts --------------------------------------------------------------------------------

def _part_route(work: Path, shape: PeShape, registers, legal_per: str) -> PartResult:
    # Registered lane operands: a sequential check of the uncut PE (flip-flops kept),
    # else a combinational one of the PE with every flip-flop cut.
    staged = shape.operand_stages > 0
    registers = () if staged else registers
    module, read = ("strum_pe", "read_rtlil pe_cut.il") if staged else ("strum_pe_hold", "read_rtlil pe_hold.il")
    payload = "r_payload" if staged else "blocks__payload"
    shows = [payload] + [f"{lane.name}_{port}" for lane in lanes_of(shape)
                         for port in ("act", lane.weight_port)]
    if shape.shared == "decode":
        shows.append("r_mask" if staged else "spec_mask")
    sat = ((f"-tempinduct -maxsteps {MAX_INDUCTION} " if staged else "-seq 1 ")
           + "-prove-asserts -set-assumes " + " ".join(f"-show {name}" for name in shows))
    (work / "check.v").write_text(route_checker(shape, registers, module, legal_per=legal_per))
    log, cpu, wall = run_yosys(_sat_script(read, "strum_route_check", sat), cwd=work, log="route")
    status = _verdict(log)
    result = PartResult("route", status, cpu, wall)
    if status == "unknown" and staged:
        result.detail = f"induction did not close within {MAX_INDUCTION} steps"
    if status == "failed":
        result.counterexample = _route_counterexample(shape, _model(log), payload)
        result.detail = "a lane receives the wrong activation or weight field"
        # The solver's values may hide the fault in the sum (zeros, equal activations):
        # ask again with distinct activations and weights, only the mask free.
        (work / "check.v").write_text(route_checker(shape, registers, module, witness=True,
                                                    legal_per=legal_per))
        log, _, _ = run_yosys(_sat_script(read, "strum_route_check", sat), cwd=work, log="route_witness")
        if _verdict(log) == "failed":
            result.counterexample = _route_counterexample(shape, _model(log), payload)
    return result


def _part_lanes(work: Path, shape: PeShape) -> PartResult:
    lanes = lanes_of(shape)
    text = "".join(lane_checker(lane, f"strum_pe.{lane.name}") for lane in lanes)
    (work / "check.v").write_text(text)
    script = ["read_verilog -sv pe.v", "read_verilog -sv -formal check.v", "hierarchy", "proc"]
    # A lane is combinational (the sum part counts its latency without it).
    script += [f"select -assert-none strum_pe.{lane.name}/t:$*ff* strum_pe.{lane.name}/t:$*latch*"
               for lane in lanes]
    script += ["flatten", "chformal -lower", "opt_clean"]
    for lane in lanes:
        script += [f"log STRUM-LANE {lane.name}",
                   f"sat -prove-asserts -show act -show {lane.weight_port} -show product "
                   f"-show expected strum_lane_check_{lane.name}"]
    try:
        log, cpu, wall = run_yosys("\n".join(script), cwd=work, log="lanes")
    except ProofToolError as error:
        bad = re.search(r"strum_pe\.(\w+)/t:", str(error))
        if "Assertion failed" in str(error) and bad:
            return PartResult("lanes", "failed", 0.0, 0.0,
                              detail=f"lane {bad.group(1)} holds a register or latch: lanes must be "
                                     f"combinational")
        raise
    chunks = log.split("STRUM-LANE ")[1:]
    if len(chunks) != len(lanes):
        return PartResult("lanes", "unknown", cpu, wall, detail="a lane proof did not run")
    for lane, chunk in zip(lanes, chunks):
        status = _verdict(chunk)
        if status != "proven":
            result = PartResult("lanes", status, cpu, wall, detail=f"lane {lane.name}")
            if status == "failed":
                values = {row["signal"]: row["bits"] for row in _model(chunk)}
                code = _value(values.get(lane.weight_port, "0"))
                act = _value(values.get("act", "0"), True)
                result.counterexample = {
                    "lane": lane.name, "kind": lane.kind, "act": act,
                    lane.weight_port: code, "expected_product": _value(values.get("expected", "0"), True),
                    "got_product": _value(values.get("product", "0"), True)}
            return result
    return PartResult("lanes", "proven", cpu, wall, detail=f"{len(lanes)} lanes")


def _sum_counterexample(shape: PeShape, rows: list[dict]) -> dict:
    steps: dict[int, dict] = {}
    for row in rows:
        if row["step"] in (None, "init"):
            continue
        steps.setdefault(int(row["step"]), {})[row["signal"]] = row["bits"]
    trace = []
    acc_signed = True
    for step in sorted(steps):
        values = steps[step]
        entry = {"step": step}
        for name in ("rst", "blocks__valid", "blocks__ready", "result__ready", "result__valid"):
            if name in values:
                entry[name.replace("__", ".")] = _value(values[name])
        if "blocks__payload" in values:
            payload = _value(values["blocks__payload"])
            entry["first"] = _field(shape, payload, "first")
            entry["last"] = _field(shape, payload, "last")
        if "block_sum" in values:
            entry["block_sum"] = _value(values["block_sum"], acc_signed)
        if "result__payload" in values:
            entry["result.payload (got)"] = _value(values["result__payload"], acc_signed)
        last = f"d_acc_{shape.latency - shape.operand_stages - 1}"
        if last in values:
            entry["accumulator (expected)"] = _value(values[last], acc_signed)
        trace.append(entry)
    return {"trace": trace}


def _part_sum(work: Path, shape: PeShape) -> PartResult:
    (work / "check.v").write_text(sum_checker(shape))
    shows = ["rst", "blocks__valid", "blocks__ready", "blocks__payload", "result__ready",
             "result__valid", "result__payload", "block_sum", f"d_acc_{shape.latency - shape.operand_stages - 1}"]
    # Induction needs about 2 * latency + 1 steps (a stall cycle may follow each one).
    # Starting there (-initsteps) measured twice as slow: each short failed step is cheap.
    sat = (f"-tempinduct -prove-asserts -set-assumes -maxsteps {MAX_INDUCTION} "
           + " ".join(f"-show {name}" for name in shows))
    log, cpu, wall = run_yosys(_sat_script("read_rtlil pe_cut.il", "strum_sum_check", sat),
                               cwd=work, log="sum")
    status = _verdict(log)
    depth = re.findall(r"Trying induction with length (\d+)", log)
    result = PartResult("sum", status, cpu, wall,
                        detail=f"induction length {depth[-1]}" if depth and status == "proven" else "")
    if status == "unknown":
        result.detail = f"induction did not close within {MAX_INDUCTION} steps"
    if status == "failed":
        result.counterexample = _sum_counterexample(shape, _model(log))
        result.detail = "from reset, the accumulator or the handshake differs from the specification"
    return result


def _part_hold(work: Path, shape: PeShape, registers) -> PartResult:
    (work / "check.v").write_text(hold_checker(shape, registers, "strum_pe_hold"))
    log, cpu, wall = run_yosys(_sat_script("read_rtlil pe_hold.il", "strum_hold_check",
                                           "-prove-asserts -set-assumes -seq 1"), cwd=work, log="hold")
    status = _verdict(log)
    result = PartResult("hold", status, cpu, wall, detail=f"{len(registers)} registers")
    if status == "failed":
        values = {row["signal"]: row["bits"] for row in _model(log)}
        changed = [registers[n][0][:-2] for n in range(len(registers))
                   if values.get(f"d_{n}") is not None and values.get(f"d_{n}") != values.get(f"q_{n}")]
        result.counterexample = {"registers_changing_while_stalled": changed}
        result.detail = "a register changes while the pipeline is stalled"
    return result


def _part_edge(work: Path, pe: StrumPE) -> PartResult:
    from strum.hw.export import to_verilog as verilog_of

    from .edge import edge_checker, edge_component

    component = edge_component(pe.config, pe.shared, pe.routing)
    (work / "edge.v").write_text(verilog_of(component, "strum_edge", cache=False))
    (work / "check.v").write_text(edge_checker(pe.config, pe.shared, "strum_edge",
                                               route_low=getattr(component, "route_low", True)))
    shows = ["mask"] + (["act", "high", "low"] if pe.shared == "route" else ["high_select", "low_select"])
    shows = [name for name in shows if name != "low" or "low" in component.signature.members]
    shows = [name for name in shows if name in ("mask", "act") or
             len(getattr(component, name).as_value()) > 0]
    log, cpu, wall = run_yosys(_sat_script("read_verilog -sv edge.v", "strum_edge_check",
                                           "-prove-asserts -set-assumes " + " ".join(f"-show {n}" for n in shows)),
                               cwd=work, log="edge")
    status = _verdict(log)
    what = "row mask decoder" if pe.shared == "decode" else f"edge router ({pe.routing})"
    result = PartResult(EDGE_PART, status, cpu, wall, detail=f"{what}, one group")
    if status == "failed":
        values = {row["signal"]: row["bits"] for row in _model(log)}
        result.counterexample = {name: values.get(name) for name in shows}
        result.detail = f"the {what} does not compact the group's mask as the memory image does"
    return result


def prove_pe(pe: StrumPE, *, verilog: str | None = None, interface_json=None, parts=None,
             keep: bool = False, legal_masks: str = "group") -> ProofReport:
    """Prove ``pe`` (or ``verilog``, a design of the same interface) against the spec.

    Parameters
    ----------
    pe : StrumPE
        Gives the config, variant, latency and payload layout (and the Verilog, unless
        ``verilog`` is given).
    verilog : str or None
        Verilog text with top module ``strum_pe`` and the generated lane instances.
    parts : iterable of str or None
        A subset of :data:`PARTS` (and :data:`EDGE_PART` for a PE built with
        ``shared``); ``None``: all of them.
    interface_json : path or None
        With ``verilog``: its ``interface.json``, refused unless its payload fields are
        ``pe``'s.
    keep : bool
        Keep the work folder (under ``$STRUM_CACHE/formal``) for inspection.
    legal_masks : str
        ``"group"``: masks with H*G/B set bits in every group, the memory image's rule;
        ``"block"``: only H per block (shows what a per-block check would let through).

    Raises
    ------
    ProofError
        For Verilog that cannot be proven as given (unreadable, another interface, no
        lane instances to cut at).
    """
    if verilog is not None:
        from strum.hw.export import _mark_elaborated

        _mark_elaborated(pe)          # its Verilog is the user's: the component is not elaborated
        if interface_json is not None:
            check_interface(pe, interface_json)
    if pe.isolate_zero:
        raise ProofError("isolate_zero: a lane whose weight is zero gets activation 0, which the "
                         "route part's specification (each lane gets its weight's activation) "
                         "does not state; prove the PE without it")
    if legal_masks not in ("group", "block"):
        raise ValueError(f"legal_masks must be 'group' or 'block', not {legal_masks!r}")
    known = PARTS + ((EDGE_PART,) if pe.shared != "none" else ())
    if parts is None:
        parts = known
    unknown = sorted(set(parts) - set(known))
    if unknown:
        raise ValueError(f"parts must be among {', '.join(known)}, not {', '.join(unknown)}")
    shape = pe_shape(pe)
    text = verilog if verilog is not None else to_verilog(pe, "strum_pe")
    work = Path(tempfile.mkdtemp(prefix="prove-", dir=work_root()))
    report = ProofReport(config=pe.config.to_dict(), variant=pe.variant, latency=pe.latency)
    try:
        (work / "pe.v").write_text(text)
        lanes = lanes_of(shape)
        registers, report.prepare_cpu_seconds = _prepare(work, shape, lanes)
        for part in PARTS + (EDGE_PART,):
            if part not in parts:
                continue
            if part == EDGE_PART:
                report.parts.append(_part_edge(work, pe))
                continue
            if part == "route":
                report.parts.append(_part_route(work, shape, registers, legal_masks))
            elif part == "lanes":
                report.parts.append(_part_lanes(work, shape))
            elif part == "sum":
                report.parts.append(_part_sum(work, shape))
            else:
                report.parts.append(_part_hold(work, shape, registers))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return report


def check_interface(pe: StrumPE, path) -> None:
    """Refuse an ``interface.json`` whose payload fields differ from ``pe``'s."""
    from strum.hw.export import interface

    try:
        theirs = json.loads(Path(path).read_text())["payload_fields"]["blocks"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ProofError(f"{path}: not an interface.json of a PE ({error})") from None
    ours = interface(pe)["payload_fields"]["blocks"]
    for name in sorted(set(ours) | set(theirs)):
        if ours.get(name) != theirs.get(name):
            raise ProofError(f"{path}: payload field {name!r} is {theirs.get(name)} there but "
                             f"{ours.get(name)} for these options: not the same interface")
