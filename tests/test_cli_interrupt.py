"""Ctrl-C (SIGINT) at a random moment (issue 10): exit 130, at most two lines on stderr
and no traceback, no output left behind, and the caches still valid (the same command
then runs to the end). The moment is random per run; a failure message gives it.

Runs use the shared cache, like test_flow.py: flow, simulate layer and sweep reuse what
the suite builds anyway (one 4 x 4 DPU, two B = 4 syntheses).
"""

import os
import random
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from strum.quant.datasets import default_model_path

MODEL = str(default_model_path())


def _strum(argv, cwd, delay=None, timeout=900, **env):
    """Run ``python -m strum argv``; with ``delay``, send SIGINT after that many seconds."""
    env = dict(os.environ, PYTHONWARNINGS="default", **env)
    process = subprocess.Popen([sys.executable, "-m", "strum", *argv], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if delay is not None:
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            timeout = 60            # a Ctrl-C must be obeyed within seconds
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"strum {' '.join(argv)} still ran {timeout} s after SIGINT") from None
    return process.returncode, out, err


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _check_interrupted(code, err, folder, before, moment):
    lines = err.splitlines()
    assert code == 130, (moment, code, err[-2000:])
    assert 1 <= len(lines) <= 2 and "interrupted" in lines[-1], (moment, err[-2000:])
    assert "nothing was written" in lines[-1] and "Traceback" not in err, (moment, err)
    assert _files(folder) == before, (moment, _files(folder))


CASES = {
    # verb: (argv, outputs a finished run leaves, window of the random moment in seconds)
    "flow": (["flow", "-o", "out", "--skip", "power"], ["out/flow.json", "out/weights.npz"], (0.4, 1.4)),
    "simulate layer": (["simulate", "layer", MODEL, "--layer", "/conv4/Conv", "--batch", "16",
                        "--report", "r.json"], ["r.json"], (0.5, 2.0)),
    "sweep": (["sweep", "--block", "4", "--scheme", "dliq", "--model", "none", "--csv", "s.csv",
               "--workers", "2"], ["s.csv"], (1.0, 4.0)),
    "quantize": (["quantize", "big.npy", "-o", "q.npz", "--report", "q.json"],
                 ["q.npz", "q.json"], (0.4, 1.2)),
}


@pytest.mark.parametrize("verb", sorted(CASES))
def test_sigint_at_a_random_moment(tmp_path_factory, verb):
    tmp_path = tmp_path_factory.mktemp("run")
    argv, outputs, (low, high) = CASES[verb]
    env = {}
    if verb == "quantize":
        np.save(tmp_path / "big.npy", np.random.default_rng(0).normal(size=(2048, 4096)))
    if verb == "sweep":     # a fresh cache, so the syntheses really run when the signal comes
        env["STRUM_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    before = _files(tmp_path)
    moment = round(random.uniform(low, high), 2)
    code, out, err = _strum(argv, tmp_path, delay=moment, **env)
    print(f"{verb}: SIGINT after {moment} s, exit {code}")
    if code == 0:   # it finished before the signal: then everything must be there
        assert all((tmp_path / name).exists() for name in outputs), (moment, out)
    else:
        _check_interrupted(code, err, tmp_path, before, moment)
    code, out, err = _strum(argv, tmp_path, **env)  # the caches it left are sound
    assert code == 0, (moment, err[-3000:])
    assert all((tmp_path / name).is_file() for name in outputs), (moment, _files(tmp_path))


def test_sigint_in_a_large_dpu_conversion_is_one_line(tmp_path):
    """A 64 x 64 DPU takes minutes to convert: Ctrl-C in it gives one line, not thousands
    of Amaranth "created but never used" warnings."""
    moment = round(random.uniform(1.0, 3.0), 2)
    code, _, err = _strum(["generate", "dpu", "--rows", "64", "--cols", "64", "-o", "dpu"],
                          tmp_path, delay=moment)
    _check_interrupted(code, err, tmp_path, [], moment)
    assert "UnusedElaboratable" not in err
    code, _, err = _strum(["generate", "dpu", "--rows", "2", "--cols", "2", "--block", "4",
                           "-o", "dpu"], tmp_path)
    assert code == 0 and (tmp_path / "dpu" / "strum_dpu.v").is_file(), err


def test_sigint_while_starting_is_one_line(tmp_path):
    """Interrupted while Python imports strum (after the interpreter's own start)."""
    for moment in (0.1, 0.15, 0.25, 0.35):
        code, _, err = _strum(["quantize", MODEL, "-o", "q.npz"], tmp_path, delay=moment)
        if code == 130:
            assert len(err.splitlines()) == 1 and "Traceback" not in err, (moment, err)
            assert not (tmp_path / "q.npz").exists()
        elif code != 0:
            # Python's own start (site, runpy) comes before any line of strum runs and
            # cannot be guarded; a traceback may only come from there.
            if "init_import_site" in err:        # the interpreter's own site import
                continue
            frames = re.findall(r'File "([^"]+)"', err)
            assert frames and all(f.startswith("<frozen") or "site" in f for f in frames), (moment, err)
        (tmp_path / "q.npz").unlink(missing_ok=True)
