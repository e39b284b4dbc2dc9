# amaranth: UnusedElaboratable=no
"""Proofs of the PE against the specification, and planted faults they must find.

The full matrix of docs/verification.md (every scheme and variant at B = 16 with G = 16, 8, 4
and B = 4, 8, 32) takes minutes and lives in benchmarks/bench_prove.py; here a
representative subset that keeps every variant, scheme and selection group.
"""

import re

import pytest

from strum.cli import main
from strum.formal.prove import prove_pe
from strum.hw.export import to_verilog
from strum.hw.pe import StrumPE
from strum.quant.config import StrumConfig


def pe_of(scheme, block, group=None, variant=None, **options):
    high = block if scheme == "int8" else block // 2
    config = StrumConfig(scheme=scheme, block_size=block, high_lanes=high, group_size=group)
    return StrumPE(config=config, variant=variant, **options)


def assert_proven(report, parts=("route", "lanes", "sum", "hold")):
    assert [part.part for part in report.parts] == list(parts)
    assert report.proven, [part.to_dict() for part in report.parts if part.status != "proven"]


@pytest.mark.parametrize("scheme,block,group,variant", [
    ("int8", 4, None, "int8"),
    ("dliq", 16, None, "static"),            # the default PE, whole
    ("dliq", 8, 4, "static"), ("mip2q", 8, None, "static"), ("zero", 8, 4, "static"),
    ("dliq", 4, None, "dynamic"), ("mip2q", 4, None, "dynamic"), ("zero", 4, None, "dynamic"),
])
def test_pe_is_proven(scheme, block, group, variant):
    assert_proven(prove_pe(pe_of(scheme, block, group, variant)))


#: The verification matrix of issue 14: int8 at B = 4, 8, 16, 32; static and dynamic
#: dliq, mip2q and zero at (B, G) = (16, 16), (16, 8), (16, 4) and B = 4, 8, 32 at G = B.
MATRIX = ([("int8", b, None, "int8") for b in (4, 8, 16, 32)]
          + [(scheme, b, g, variant) for variant in ("static", "dynamic")
             for scheme in ("dliq", "mip2q", "zero")
             for b, g in ((16, None), (16, 8), (16, 4), (4, None), (8, None), (32, None))])
_COVERED = {("int8", 4, None, "int8"), ("dliq", 16, None, "static"), ("dliq", 4, None, "dynamic"),
            ("mip2q", 4, None, "dynamic"), ("zero", 4, None, "dynamic")}


@pytest.mark.parametrize("scheme,block,group,variant",
                         [pytest.param(*row, marks=[pytest.mark.slow] if row[1] == 32 else [])
                          for row in MATRIX if row not in _COVERED
                          and not (row[3] == "dynamic" and row[2] is not None)])
def test_verification_matrix_pe_is_proven(scheme, block, group, variant):
    """Every PE of the matrix, every part (the rows above are proven there). The B = 32
    rows take 4.5 minutes together and are marked slow: `python -m pytest -m slow` runs
    them (the default run leaves them out to keep CI under 15 minutes)."""
    assert_proven(prove_pe(pe_of(scheme, block, group, variant)))


@pytest.mark.parametrize("scheme", ["dliq", "mip2q", "zero"])
@pytest.mark.parametrize("group", [8, 4])
def test_dynamic_pe_does_not_depend_on_the_group(scheme, group):
    """The dynamic PE has no router: at G < B its Verilog is the G = B PE's, byte for byte,
    so the G = B proof above covers it."""
    from strum.hw.export import to_verilog

    assert to_verilog(pe_of(scheme, 16, group, "dynamic"), "strum_pe") == \
        to_verilog(pe_of(scheme, 16, None, "dynamic"), "strum_pe")


@pytest.mark.parametrize("args,options", [
    (("dliq", 8, 4, "static"), {"router_register": True}),
    (("int8", 4, None, "int8"), {"router_register": True}),
    (("dliq", 4, None, "dynamic"), {"router_register": True}),
    (("dliq", 8, 4, "static"), {"shared": "decode"}),
    (("mip2q", 4, None, "static"), {"shared": "route", "router_register": True}),
])
def test_registered_operands_and_shared_work_are_proven(args, options):
    """router_register: the lanes' operands one stage late (a sequential route part, the
    sum part's products one stage after the block); shared: selects or routed
    activations in the payload. The lanes part does not change with either (same lane
    modules), so it is left to the tests above. With shared, the edge part proves the
    row's mask decoder or the edge router that the route part relies on."""
    pe = pe_of(*args, **options)
    parts = ["route", "sum", "hold"] + (["edge"] if "shared" in options else [])
    assert_proven(prove_pe(pe, parts=parts), parts)


def test_other_pipeline_depths_and_routings():
    assert_proven(prove_pe(pe_of("dliq", 8, 4, adder_stages=0, routing="network"), parts=["route", "sum"]),
                  ("route", "sum"))
    assert_proven(prove_pe(pe_of("mip2q", 4, None, adder_stages=2, routing="full"), parts=["route", "sum"]),
                  ("route", "sum"))


# -- planted faults: each edits the generated Verilog text ------------------------------------

def module_text(text, name):
    start = text.index(f"module \\strum_pe.{name} ")
    return start, text.index("endmodule", start)


def edit_module(text, name, old, new):
    start, end = module_text(text, name)
    body = text[start:end]
    assert old in body, f"{old!r} not in module {name}"
    return text[:start] + body.replace(old, new, 1) + text[end:]


def swap_router_outputs(text):
    """High lanes 0 and 1 get each other's activation."""
    pattern = r"(\\strum_pe\.high_{0}\s+high_{0} \([^;]*?\.act\()([^)]*)\)"
    first, second = (re.search(pattern.format(k), text) for k in (0, 1))
    a, b = first.group(2), second.group(2)
    text = text[:first.start(2)] + "@@" + text[first.end(2):]
    text = re.sub(pattern.format(1), lambda m: m.group(1) + a + ")", text)
    return text.replace("@@", b)


FAULTS = {
    "router outputs swapped": (("dliq", 4, None, "static"), swap_router_outputs, "route"),
    "DLIQ shift off by one": (("dliq", 4, None, "static"),
                              lambda t: edit_module(t, "low_shift", "<< shift;", "<< (shift + 3'd1);"), "sum"),
    "MIP2Q sign bit dropped": (("mip2q", 4, None, "static"),
                               lambda t: edit_module(t, "low_0", "code[3] ?", "1'b0 ?"), "lanes"),
    "accumulator first ignored": (("dliq", 4, None, "static"),
                                  lambda t: edit_module(t, "accumulator", "if (first) begin", "if (1'b0) begin"),
                                  "sum"),
    # router_register: the low shift taken one stage early (not delayed by the operand stage)
    "registered operands, shift not delayed": (
        ("dliq", 4, None, "static", {"router_register": True}),
        lambda t: re.sub(r"(low_shift \(\n\s+\.shift\()shift\)", r"\g<1>shift_d1)", t, count=1), "sum"),
    "registered operands, router outputs swapped": (
        ("dliq", 4, None, "static", {"router_register": True}), swap_router_outputs, "route"),
    "shared decode, router outputs swapped": (
        ("dliq", 4, None, "static", {"shared": "decode"}), swap_router_outputs, "route"),
    "result lost while result.ready is low": (
        ("mip2q", 4, None, "static"),
        lambda t: re.sub(r"(= result__valid;\n\s+if \()blocks__ready(\))", r"\g<1>1'b1\2", t, count=1), "sum"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_planted_fault_is_found_with_a_counterexample(fault):
    args, plant, part = FAULTS[fault]
    options = args[-1] if isinstance(args[-1], dict) else {}
    pe = pe_of(*args[:4], **options)
    text = to_verilog(pe, "strum_pe")
    faulty = plant(text)
    assert faulty != text
    report = prove_pe(pe, verilog=faulty)
    statuses = {result.part: result for result in report.parts}
    assert not report.proven
    assert statuses[part].status == "failed" and statuses[part].counterexample
    others = {name for name, result in statuses.items() if result.status != "proven"}
    assert others <= {part, "hold"}, others     # a lost result also changes a stalled register


def test_cli_prints_the_counterexample_as_a_block_and_exits_1(tmp_path, capsys):
    assert main(["generate", "pe", "--scheme", "dliq", "--block", "4", "-o", str(tmp_path)]) == 0
    verilog = tmp_path / "strum_pe.v"
    verilog.write_text(swap_router_outputs(verilog.read_text()))
    capsys.readouterr()
    assert main(["prove", "pe", "--scheme", "dliq", "--block", "4", "--verilog", str(verilog),
                 "--parts", "route"]) == 1
    captured = capsys.readouterr()
    assert "NOT proven: route" in captured.out
    for key in ("mask:", "act:", "weights:", "expected_block_sum:", "got_block_sum:"):
        assert key in captured.err
    expected = int(re.search(r"expected_block_sum: (-?\d+)", captured.err).group(1))
    got = int(re.search(r"got_block_sum: (-?\d+)", captured.err).group(1))
    assert expected != got


def test_a_design_without_the_lane_instances_is_refused():
    pe = pe_of("dliq", 4)
    text = to_verilog(pe, "strum_pe").replace("  high_1 (", "  high_one (")
    with pytest.raises(ValueError, match="no lane instance 'high_1'"):
        prove_pe(pe, verilog=text)


def test_cli_refuses_another_interface(tmp_path, capsys):
    assert main(["generate", "pe", "--scheme", "mip2q", "--block", "4", "-o", str(tmp_path)]) == 0
    assert main(["prove", "pe", "--scheme", "dliq", "--block", "4",
                 "--verilog", str(tmp_path / "strum_pe.v")]) == 2
    assert "not the same interface" in capsys.readouterr().err


def test_edge_router_with_swapped_outputs_is_found(monkeypatch):
    """The edge part proves the generated edge router; one with two outputs swapped fails."""
    import strum.hw.export as export

    real = export.to_verilog

    def swapped(component, name, **kwargs):
        text = real(component, name, **kwargs)
        if name != "strum_edge":
            return text
        first = re.search(r"assign high\[7:0\] = ([^;]+);", text)
        second = re.search(r"assign high\[15:8\] = ([^;]+);", text)
        text = text.replace(first.group(0), f"assign high[7:0] = {second.group(1)};")
        return text.replace(second.group(0), f"assign high[15:8] = {first.group(1)};")

    monkeypatch.setattr(export, "to_verilog", swapped)
    report = prove_pe(pe_of("dliq", 4, None, "static", shared="route"), parts=["edge"])
    assert report.parts[0].status == "failed" and report.parts[0].counterexample["mask"]


def test_cli_proves_registered_operands_with_shared_decode(capsys):
    assert main(["prove", "pe", "--scheme", "dliq", "--block", "4", "--router-register",
                 "--shared", "decode", "--parts", "route,edge"]) == 0
    out = capsys.readouterr().out
    assert "route  proven" in out and "edge   proven" in out


def test_isolate_zero_is_refused():
    with pytest.raises(ValueError, match="isolate_zero"):
        prove_pe(pe_of("dliq", 4, isolate_zero=True))
