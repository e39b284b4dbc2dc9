"""Nothing lost, nothing silent (issue 10): each case a new user hit, one test each.

Outputs never replace an input, are checked before any work and written all or none
with the umask's mode; damaged files give one line; parameter errors exit 2; Ctrl-C
exits 130 with one line and leaves nothing.
"""

import hashlib
import json
import os
import shutil
import stat
import struct
import time
import zlib

import numpy as np
import pytest

from strum import cli
from strum.cli import main
from strum.quant.datasets import default_model_path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "m.onnx"
    shutil.copyfile(default_model_path(), path)
    return path


@pytest.fixture
def quantized(tmp_path, model):
    out = tmp_path / "q.npz"
    assert main(["quantize", str(model), "-o", str(out)]) == 0
    return out


def _refused(capsys, argv, folder, expected, code=2):
    """Run argv; exit ``code``, one line on stderr naming ``expected``, no new file."""
    before = _listing(folder)
    hashes = {p: _digest(p) for p in folder.rglob("*") if p.is_file()}
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and expected in err, err
    assert "Traceback" not in err
    assert _listing(folder) == before
    assert {p: _digest(p) for p in folder.rglob("*") if p.is_file()} == hashes
    return err


# -- an output is never an input --------------------------------------------------------

@pytest.mark.parametrize("argv, option", [
    (["quantize", "{m}", "-o", "{m}"], "-o"),
    (["quantize", "{m}", "--output", "{m}"], "--output"),
    (["quantize", "{m}", "-o", "{t}/o.npz", "--report", "{m}"], "--report"),
    (["quantize", "{m}", "-o", "{t}/sub/../m.onnx"], "-o"),
    (["quantize", "{m}", "-o", "{t}/link.onnx"], "-o"),
    (["simulate", "layer", "{m}", "--layer", "all", "--report", "{m}"], "--report"),
    (["eval", "{m}", "--data", "digits", "--plot", "{m}"], "--plot"),
    (["eval", "{m}", "--data", "digits", "--report", "{m}"], "--report"),
    (["synth", "compare", "--flow", "asic", "--liberty", "{t}/cells.lib", "-o", "{t}/cells.lib"], "-o"),
    (["sweep", "--model", "{m}", "--csv", "{m}"], "--csv"),
    (["quantize", "{m}", "-o", "{t}/r.json", "--report", "{t}/r.json"], "--report"),
])
def test_an_output_equal_to_an_input_is_refused(tmp_path, model, capsys, argv, option):
    (tmp_path / "sub").mkdir()
    os.link(model, tmp_path / "link.onnx")          # the same file under another name
    (tmp_path / "cells.lib").write_text("library (x) { cell (INV) { area : 1; } }\n")
    argv = [a.format(m=model, t=tmp_path) for a in argv]
    _refused(capsys, argv, tmp_path, option)


# -- outputs are checked before the work and written all or none -------------------------

@pytest.mark.parametrize("argv, option", [
    (["quantize", "{m}", "-o", "{t}/out.npz", "--report", "{t}/nodir/r.json"], "--report"),
    (["quantize", "{m}", "-o", "{t}/adir"], "-o"),
    (["quantize", "{m}", "-o", "{t}/new/"], "-o"),
    (["simulate", "pe", "--vcd", "{t}/nodir/x.vcd"], "--vcd"),
    (["simulate", "layer", "{m}", "--layer", "all", "--report", "{t}/nodir/r.json"], "--report"),
    (["eval", "{m}", "--data", "digits", "--report", "{t}/r.json", "--plot", "{t}/nodir/p.png"], "--plot"),
    (["sweep", "--csv", "{t}/nodir/s.csv"], "--csv"),
    (["synth", "pe", "--report", "{t}/adir"], "--report"),
    (["generate", "pe", "-o", "{m}"], "-o"),
    (["flow", "-o", "{t}/nodir/deeper"], "-o"),
    (["quantize", "{m}", "-o", "/dev/null"], "-o"),
])
def test_output_paths_are_checked_before_any_work(tmp_path, model, capsys, argv, option):
    (tmp_path / "adir").mkdir()
    argv = [a.format(m=model, t=tmp_path) for a in argv]
    start = time.perf_counter()
    _refused(capsys, argv, tmp_path, option)
    assert time.perf_counter() - start < 20        # refused up front, not after a build


def test_a_bad_flow_model_leaves_no_folder(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    _refused(capsys, ["flow", "--model", bad, "-o", tmp_path / "out"], tmp_path, "bad.onnx")


def test_eval_writes_no_report_when_its_plot_fails(tmp_path, model, capsys, monkeypatch):
    import strum.quant.evaluate as evaluate

    def broken_plot(report, path):
        raise ValueError("the plot failed")
    monkeypatch.setattr(evaluate, "plot_report", broken_plot)
    _refused(capsys, ["eval", model, "--data", "digits", "--schemes", "int8", "--no-weights-only",
                      "--report", tmp_path / "r.json", "--plot", tmp_path / "p.png"],
             tmp_path, "the plot failed")


def test_outputs_follow_the_umask_and_replace_old_files(tmp_path, model):
    old = os.umask(0o027)
    try:
        (tmp_path / "out.npz").write_bytes(b"old")
        assert main(["quantize", str(model), "-o", str(tmp_path / "out.npz"),
                     "--report", str(tmp_path / "r.json")]) == 0
        assert main(["generate", "pe", "--block", "4", "-o", str(tmp_path / "pe")]) == 0
    finally:
        os.umask(old)
    for name in ("out.npz", "r.json", "pe/strum_pe.v", "pe/config.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    assert stat.S_IMODE((tmp_path / "pe").stat().st_mode) == 0o750
    assert (tmp_path / "out.npz").read_bytes()[:2] == b"PK"
    assert not [p for p in tmp_path.rglob(".*")]          # no staging file left


def test_generate_prints_the_paths_it_wrote(tmp_path, capsys):
    assert main(["generate", "pe", "--block", "4", "-o", str(tmp_path / "pe")]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "pe" / "strum_pe.v") in printed
    assert all(os.path.exists(p) for p in printed if p.startswith(str(tmp_path)))


# -- schemes --help offers all work -------------------------------------------------------

@pytest.mark.parametrize("scheme", ["int4", "pot"])
def test_flow_runs_every_scheme_it_offers(tmp_path, scheme, capsys):
    assert main(["flow", "--scheme", scheme, "-o", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert f"pe        skipped: scheme '{scheme}' has no PE" in out and "area      skipped" in out
    summary = json.loads((tmp_path / "f" / "flow.json").read_text())
    assert summary["steps"]["quantize"][scheme]["bits_per_weight"] == 4


# -- damaged files ------------------------------------------------------------------------

def _image(header: bytes, body: bytes = b"") -> bytes:
    data = struct.pack("<8sHI", b"STRUMIMG", 1, len(header)) + header + body
    return data + struct.pack("<I", zlib.crc32(data))


def _damaged(tmp_path, quantized):
    good = quantized.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 3] ^= 0x40
    files = {
        "truncated.npz": good[: len(good) // 2],
        "flipped.npz": bytes(flipped),
        "empty.npz": b"",
        "empty.bin": b"",
        "random.npz": np.random.default_rng(1).bytes(5000),
        "random.bin": np.random.default_rng(2).bytes(5000),
        "deep.bin": _image(b"[" * 60000 + b"]" * 60000),
        "nested.bin": _image(b"[" * 1000 + b"]" * 1000),
        "noshape.bin": _image(json.dumps({"config": {}, "shape": [], "blocks_per_channel": 1}).encode()),
        "badshape.bin": _image(b'{"config": {"scheme": "dliq"}, "shape": [], "blocks_per_channel": 1}'),
        "hugelength.bin": struct.pack("<8sHI", b"STRUMIMG", 1, 2**32 - 1) + b"x" * 20,
    }
    # A crafted array header claiming 10^12 elements in a tiny archive.
    import io
    import zipfile
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x/packed.npy", member)
    files["crafted.npz"] = buffer.getvalue()
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return paths + [tmp_path / "missing.bin", tmp_path, "/dev/zero"]


def test_inspect_survives_damaged_files_with_one_line(tmp_path, quantized, capsys):
    for path in _damaged(tmp_path, quantized):
        start = time.perf_counter()
        err = _refused(capsys, ["inspect", path], tmp_path, str(path))
        assert time.perf_counter() - start < 5, path
        assert "pickled" not in err and "Traceback" not in err


def test_a_checksum_error_inside_an_npz_names_the_layer(tmp_path, quantized, capsys):
    with np.load(quantized) as archive:
        arrays = dict(archive)
    packed = arrays["/conv3/Conv/packed"].copy()
    packed[len(packed) // 2] ^= 1
    arrays["/conv3/Conv/packed"] = packed
    np.savez(tmp_path / "tampered.npz", **arrays)
    err = _refused(capsys, ["inspect", tmp_path / "tampered.npz"], tmp_path, "/conv3/Conv")
    assert "checksum" in err


@pytest.mark.parametrize("verb", [["quantize", "{p}", "-o", "{t}/o.npz"],
                                  ["eval", "{m}", "--data", "{p}"],
                                  ["simulate", "layer", "{p}", "--layer", "all"]])
def test_readers_survive_damaged_models_and_data(tmp_path, model, quantized, capsys, verb):
    good = model.read_bytes()
    cases = {"t.onnx": good[: len(good) // 2], "r.onnx": np.random.default_rng(3).bytes(4000),
             "e.onnx": b"", "t.npz": quantized.read_bytes()[:300],
             "r.npz": np.random.default_rng(4).bytes(4000)}
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    cases["huge.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 80
    for name, data in cases.items():
        if verb[0] != "eval" and name.endswith(".npz") and verb[0] != "quantize":
            continue
        (tmp_path / name).write_bytes(data)
        argv = [a.format(p=tmp_path / name, m=model, t=tmp_path) for a in verb]
        _refused(capsys, argv, tmp_path, name)


# -- parameter errors exit 2 with one line naming the option --------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["synth", "dpu", "--rows", "0"], "--rows"),
    (["sweep", "--array", "0x0", "--csv", "{t}/s.csv"], "--array"),
    (["synth", "pe", "--flow", "ice40", "--seeds", "0"], "--seeds"),
    (["synth", "pe", "--flow", "ice40", "--target-mhz", "-5"], "--target-mhz"),
    (["synth", "pe", "--flow", "ice40", "--target-mhz", "nan"], "--target-mhz"),
    (["synth", "pe", "--flow", "asic", "--liberty", "{t}/nope.lib"], "nope.lib"),
    (["synth", "pe", "--flow", "asic", "--liberty", "{t}/garbage.lib"], "garbage.lib"),
    (["simulate", "pe", "--vectors", "1000000000"], "--vectors"),
    (["simulate", "pe", "--vectors", "0"], "--vectors"),
    (["quantize", "{t}/w.npy", "-o", "{t}/o.npz", "--block", "12"], "--block 12"),
    (["quantize", "{t}/w.npy", "-o", "{t}/o.npz", "--high", "40"], "--high 40"),
])
def test_bad_parameters_exit_2_naming_the_option(tmp_path, capsys, argv, expected):
    np.save(tmp_path / "w.npy", np.ones((4, 16)))
    (tmp_path / "garbage.lib").write_text("library (x) { cell (INV) { ")
    argv = [a.format(t=tmp_path) for a in argv]
    _refused(capsys, argv, tmp_path, expected)


# -- Ctrl-C, internal errors, --version ------------------------------------------------------

def test_ctrl_c_inside_a_verb_writes_nothing(tmp_path, model, capsys, monkeypatch):
    import strum.quant.model as quant_model

    real = quant_model.report

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(quant_model, "report", interrupted)
    err = _refused(capsys, ["quantize", model, "-o", tmp_path / "o.npz", "--report",
                            tmp_path / "r.json"], tmp_path, "interrupted", code=130)
    assert err == "strum quantize: interrupted; nothing was written\n"


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(tmp_path, model, capsys,
                                                                   monkeypatch):
    import strum.quant.model as quant_model

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(quant_model, "quantize_layers", broken)
    err = _refused(capsys, ["quantize", model, "-o", tmp_path / "o.npz"], tmp_path, "internal error",
                   code=1)
    assert "ZeroDivisionError: a bug" in err
    monkeypatch.setenv("STRUM_DEBUG", "1")
    assert main(["quantize", str(model), "-o", str(tmp_path / "o.npz")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_version(capsys):
    from strum import __version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"strum {__version__}\n"


def test_options_are_named_as_typed():
    parser = cli.build_parser()
    args = parser.parse_args(["quantize", "x.npy", "--out", "y.npz", "--bl", "8"])
    typed = cli._typed_options(parser, args, ["quantize", "x.npy", "--out", "y.npz", "--bl", "8"])
    assert typed["output"] == "--out" and typed["block"] == "--bl" and typed["report"] == "--report"


# -- what is not quantized is said ------------------------------------------------------------

def test_unhandled_weight_layers_are_listed_in_the_report_and_on_stderr(tmp_path, capsys):
    """A weight in an operator the quantizer does not handle (here an embedding table read
    by Gather) is listed, never dropped in silence; ConvTranspose is quantized."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(8, 4, 3, 3)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.normal(size=(8, 4, 3, 3)).astype(np.float32), "D"),
               numpy_helper.from_array(rng.normal(size=(10, 6)).astype(np.float32), "E"),
               numpy_helper.from_array(np.array([1, 2], np.int64), "idx")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
             helper.make_node("ConvTranspose", ["y", "D"], ["z"], name="deconv"),
             helper.make_node("Gather", ["E", "idx"], ["e"], name="embed")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("e", TensorProto.FLOAT, None)], weights)
    onnx.save(helper.make_model(graph), tmp_path / "ct.onnx")
    assert main(["quantize", str(tmp_path / "ct.onnx"), "-o", str(tmp_path / "o.npz"),
                 "--report", str(tmp_path / "r.json")]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert [layer["name"] for layer in data["layers"]] == ["conv", "deconv"]
    assert data["not_quantized"] == [{"name": "embed", "op": "Gather", "shape": [10, 6],
                                      "graph_path": ""}]
    err = capsys.readouterr().err
    assert "not quantized" in err and "'embed' (Gather, 10x6)" in err


def test_degenerate_weights_warn_and_have_a_defined_result(tmp_path, capsys):
    from strum.quant.config import StrumConfig
    from strum.quant.quantize import quantize

    weights = np.random.default_rng(0).normal(size=(4, 32))
    weights[1] = 1e-310                                     # denormal channel
    weights[2] = 0.0
    for scheme in ("dliq", "int8", "int4", "int4-g16", "pot", "mip2q"):
        q = quantize(weights, StrumConfig(scheme=scheme))
        assert np.isfinite(q.scale).all() and (q.scale > 0).all(), scheme
        assert (q.w_int[1] == 0).all() and (q.w_int[2] == 0).all()
        assert any("too small for a float32 scale" in note for note in q.notes)
    np.save(tmp_path / "denormal.npy", np.full((4, 32), 1e-310))
    np.save(tmp_path / "zero.npy", np.zeros((4, 32)))
    for name, note, sqnr in (("denormal", "too small for a float32 scale", 0.0),
                             ("zero", "all weights are zero", None)):
        report = tmp_path / f"{name}.json"
        assert main(["quantize", str(tmp_path / f"{name}.npy"), "-o", str(tmp_path / f"{name}.npz"),
                     "--report", str(report)]) == 0
        (layer,) = json.loads(report.read_text())["layers"]
        assert layer["sqnr_db"] == sqnr and note in layer["notes"][0]
        assert note in capsys.readouterr().err


# -- progress ------------------------------------------------------------------------------

def test_a_phase_is_one_line_off_a_terminal_and_names_an_interruption(capsys):
    from strum.quant import progress

    progress.reset()
    with progress.phase("building something", cached=True):
        assert progress.current() == "building something"
    with pytest.raises(KeyboardInterrupt):
        with progress.phase("outer"), progress.phase("inner work"):
            raise KeyboardInterrupt
    assert capsys.readouterr().out == ("strum: building something (cached) ...\n"
                                       "strum: outer ...\nstrum: inner work ...\n")
    assert progress.current() == "inner work"       # what main() reports as interrupted
    progress.reset()
    assert progress.current() is None


def test_a_layer_time_leaves_out_the_model_build(monkeypatch):
    from strum.quant.config import StrumConfig
    from strum.sim import layer as sim_layer
    from strum.sim.verilator_backend import VerilatorStreamModel

    real = VerilatorStreamModel.from_component.__func__

    def slow_build(cls, *args, **kwargs):
        time.sleep(1.0)
        return real(cls, *args, **kwargs)
    monkeypatch.setattr(VerilatorStreamModel, "from_component", classmethod(slow_build))
    (report,) = sim_layer.simulate_model_layers(
        default_model_path(), "/conv1/Conv", {"config": StrumConfig(), "rows": 4, "cols": 4},
        progress=False)
    assert report["mismatches"] == 0 and report["build_seconds"] >= 1.0
    assert report["seconds"] < report["build_seconds"]


def test_huge_files_are_refused_by_size_before_reading(tmp_path, capsys):
    """Sparse files of several GiB (no disk used): refused by their size, at once."""
    for name, size, argv in (("huge.onnx", 3 << 30, ["quantize", "{p}", "-o", "{t}/o.npz"]),
                             ("huge.bin", 2 << 30, ["inspect", "{p}"]),
                             ("huge.npz", 5 << 30, ["inspect", "{p}"])):
        path = tmp_path / name
        with open(path, "wb") as stream:
            stream.write(b"PK\x03\x04" if name.endswith(".npz") else b"STRUMIMG")
            stream.truncate(size)
        start = time.perf_counter()
        assert main([a.format(p=path, t=tmp_path) for a in argv]) == 2
        assert time.perf_counter() - start < 5
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and f"{size:,} bytes" in err, err
        assert _listing(tmp_path) == [name]
        path.unlink()
    _refused(capsys, ["quantize", "/dev/zero", "-o", tmp_path / "o.npz"], tmp_path, "/dev/zero")
