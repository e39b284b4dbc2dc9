"""A generated fuzz test of the whole command line (issue 10).

Every verb is found by walking the argparse parser, so a new verb is fuzzed as soon as
it exists. Each case gives one verb one or two faults (a number its option refuses, an
unknown choice or option, a missing required argument, an output path that cannot be
written or is an input, a damaged or missing input file) and valid values elsewhere,
then asserts: exit code 2, exactly one line on stderr, no traceback, no new file, and
every file in the sandbox byte-for-byte unchanged. Cases run in-process through
``main(argv)``: every fault is caught before a verb starts its real work, so each case
costs milliseconds.
"""

import argparse
import hashlib
import os
import shutil
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strum.cli import build_parser, main
from strum.quant.datasets import default_model_path

#: Cases the test runs (the issue asks for at least 300).
CASES = 500
#: Argument names that are input files, and whether a damaged one is caught before work.
INPUT_DESTS = {"input", "model", "file", "data", "calibration"}


def _leaves(parser, prefix=()):
    """(tokens, parser) of every runnable verb, e.g. (("simulate", "layer"), parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(prefix, parser)]
    found = []
    for name, sub in subs[0].choices.items():
        found += _leaves(sub, prefix + (name,))
    return found


LEAVES = _leaves(build_parser())


def _arguments(parser):
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._VersionAction,
                                  argparse._SubParsersAction))]


def _outputs(parser):
    return dict(parser.get_default("_strum_outputs") or {})


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A folder with a model, a quantized file, damaged files and a sub-folder; the
    current folder, so default output folders would land in it too."""
    model = tmp_path / "m.onnx"
    shutil.copyfile(default_model_path(), model)
    assert main(["quantize", str(model), "-o", str(tmp_path / "q.npz")]) == 0
    good = model.read_bytes()
    rng = np.random.default_rng(0)
    (tmp_path / "trunc.onnx").write_bytes(good[: len(good) // 3])
    (tmp_path / "random.onnx").write_bytes(rng.bytes(3000))
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "random.npz").write_bytes(rng.bytes(3000))
    (tmp_path / "trunc.npz").write_bytes((tmp_path / "q.npz").read_bytes()[:500])
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "adir").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _snapshot(folder):
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


def _valid_value(action, folder, outputs):
    """A valid, cheap value for a required argument."""
    if action.dest in outputs:
        kind = outputs[action.dest][0]
        return str(folder / ("new_folder" if kind == "folder" else f"new_{action.dest}.out"))
    if action.dest == "file":
        return str(folder / "q.npz")
    if action.dest in INPUT_DESTS - {"data", "calibration"}:
        return str(folder / "m.onnx")
    if action.dest in ("data", "calibration"):
        return "digits"
    if action.dest == "layer":
        return "all"
    if action.choices:
        return str(next(iter(action.choices)))
    return "1"


def _is_bad(action, text) -> bool:
    try:
        action.type(text)
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return True
    return False


BAD_NUMBERS = st.one_of(
    st.sampled_from(["", "abc", "1.5", "nan", "inf", "-inf", "1e400", "0x10", "- 3", "½", "3 4",
                     "-1", "0", "1000000000", str(10**30), "-99999999999"]),
    st.integers(min_value=-10**40, max_value=10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def cases(draw, folder):
    tokens, parser = draw(st.sampled_from(LEAVES))
    arguments = _arguments(parser)
    outputs = _outputs(parser)
    values = {}             # action -> list of argv pieces for it
    for action in arguments:
        if action.required or not action.option_strings:
            values[action] = [_valid_value(action, folder, outputs)]
    typed = [a for a in arguments if a.option_strings and a.type is not None and a.nargs is None
             and a.dest not in outputs]
    choices = [a for a in arguments if a.option_strings and a.choices]
    output_actions = [a for a in arguments if a.dest in outputs]
    input_actions = [a for a in arguments if a.dest in INPUT_DESTS and a.dest != "data"
                     or (a.dest == "data" and a.option_strings)]
    required = [a for a in arguments if a.required or not a.option_strings]
    kinds = ["unknown option"]
    kinds += ["bad number"] if typed else []
    kinds += ["bad choice"] if choices else []
    kinds += ["bad output"] if output_actions else []
    kinds += ["bad input"] if input_actions else []
    kinds += ["missing argument"] if required else []
    faults = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=2, unique=True))
    extra = []
    for fault in faults:
        if fault == "unknown option":
            extra += [draw(st.sampled_from(["--no-such-option", "--frobnicate=3", "-Z"]))]
        elif fault == "bad number":
            action = draw(st.sampled_from(typed))
            text = draw(BAD_NUMBERS.filter(lambda t, a=action: _is_bad(a, t)))
            values[action] = [f"{action.option_strings[-1]}={text}"]
        elif fault == "bad choice":
            action = draw(st.sampled_from(choices))
            text = draw(st.text(min_size=1, max_size=8).filter(
                lambda t, a=action: t not in a.choices and not t.startswith("-")))
            values[action] = [action.option_strings[-1], text]
        elif fault == "bad output":
            action = draw(st.sampled_from(output_actions))
            kind = outputs[action.dest][0]
            bad = ["nodir/out.x", str(folder / "nodir" / "deep" / "out.x"), ""]
            bad += ["/dev/null", str(folder / "adir"), str(folder / "adir") + "/"] if kind == "file" \
                else [str(folder / "q.npz"), "/dev/null"]
            if kind == "file" and any(a.dest in INPUT_DESTS for a in values):
                bad.append(str(folder / "m.onnx"))
                bad.append(str(folder / "adir" / ".." / "m.onnx"))
            text = draw(st.sampled_from(bad))
            values[action] = [action.option_strings[-1], text] if action.option_strings else [text]
        elif fault == "bad input":
            action = draw(st.sampled_from(input_actions))
            pool = ["missing.onnx", "trunc.onnx", "random.onnx", "empty.onnx", "adir",
                    "random.npz", "trunc.npz", "empty.npz", "/dev/zero"]
            text = str(folder / draw(st.sampled_from(pool))) if draw(st.booleans()) else \
                draw(st.sampled_from(pool))
            if action.dest == "data":
                text = draw(st.sampled_from(["random.npz", "trunc.npz", "empty.npz", "missing.npz",
                                             "adir", "/dev/zero", "m.onnx", "cifar"]))
            if tokens == ("sweep",) and action.dest == "model" and text in ("adir",):
                text = "missing.onnx"
            values[action] = [action.option_strings[-1], text] if action.option_strings else [text]
        elif fault == "missing argument":
            values.pop(draw(st.sampled_from(required)), None)
    argv = list(tokens)
    for action, pieces in values.items():
        if action.option_strings and len(pieces) == 1 and "=" not in pieces[0]:
            argv += [action.option_strings[-1], pieces[0]]
        else:
            argv += pieces
    return tokens, faults, argv + extra


def test_fuzz_every_verb(sandbox, capsys):
    seen, faults_seen = Counter(), Counter()

    @settings(max_examples=CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases(sandbox))
    def run(case):
        tokens, faults, argv = case
        before = _snapshot(sandbox)
        code = main(argv)
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert code == 2, (argv, faults, code, captured.err)
        assert len(lines) == 1 and lines[0].startswith("strum"), (argv, captured.err)
        assert "Traceback" not in captured.err and "internal error" not in captured.err, argv
        assert _snapshot(sandbox) == before, argv          # no new file, inputs unchanged
        seen[" ".join(tokens)] += 1
        faults_seen.update(faults)

    run()
    assert sum(seen.values()) >= 300, seen
    assert set(seen) == {" ".join(tokens) for tokens, _ in LEAVES}, seen
    assert set(faults_seen) == {"unknown option", "bad number", "bad choice", "bad output",
                                "bad input", "missing argument"}, faults_seen
    assert os.getcwd() == str(sandbox)
