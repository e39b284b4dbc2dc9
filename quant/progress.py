"""Saying what a long step is doing: one progress policy for every layer of strum.

A *phase* is a step that can take more than a couple of seconds (a tool compile, a
Verilog conversion, a Verilator build, a synthesis, one layer's co-simulation).
:func:`phase` announces it with one line ``strum: <what> ...`` (``(cached)`` when the
result is reused) and, on a terminal, its time when it ends; :func:`bar` is a tqdm bar
shown only on a terminal. So a log (stdout not a terminal) gets one line per phase and
no bar redraws. The lines go to stdout; a verb whose stdout is data (JSON, CSV) sends
them to stderr with :func:`to_stderr`. ``STRUM_PROGRESS=0`` silences everything.

:func:`current` names the phase running now, so an interrupted verb can say what it
was doing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

__all__ = ["phase", "bar", "current", "reset", "interactive", "to_stderr", "enabled"]

_stack: list[str] = []
_interrupted: list[str] = []        # the innermost phase a KeyboardInterrupt left
_said_cached: set[str] = set()      # a cached step is announced once per process
_stream_name = "stdout"
#: A phase shorter than this does not print its time on a terminal.
_QUIET_SECONDS = 2.0


def enabled() -> bool:
    return os.environ.get("STRUM_PROGRESS", "1") != "0"


def interactive() -> bool:
    """True when both stdout and stderr are terminals (bars and times are shown)."""
    try:
        return enabled() and sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _stream():
    return getattr(sys, _stream_name)


@contextlib.contextmanager
def to_stderr():
    """Phase lines go to stderr inside this block (stdout carries data)."""
    global _stream_name
    previous, _stream_name = _stream_name, "stderr"
    try:
        yield
    finally:
        _stream_name = previous


def _say(text: str) -> None:
    if enabled():
        try:
            print(text, file=_stream(), flush=True)
        except (OSError, ValueError):
            pass            # a closed pipe must not fail the work


@contextlib.contextmanager
def phase(what: str, *, cached: bool = False):
    """Announce ``what`` (one line), run the block, and on a terminal report its time."""
    _stack.append(what)
    if not cached or what not in _said_cached:
        _say(f"strum: {what}{' (cached)' if cached else ''} ...")
        if cached:
            _said_cached.add(what)
    start = time.perf_counter()
    try:
        yield
    except KeyboardInterrupt:
        if not _interrupted:
            _interrupted.append(what)
        raise
    finally:
        _stack.pop()
    seconds = time.perf_counter() - start
    if interactive() and seconds >= _QUIET_SECONDS:
        _say(f"strum: {what}: done in {seconds:.1f} s")


def current() -> str | None:
    """The innermost phase running now (or the one Ctrl-C interrupted last), or None."""
    return _stack[-1] if _stack else (_interrupted[-1] if _interrupted else None)


def reset() -> None:
    """Forget an earlier interruption and announcements (one command line run per call)."""
    _interrupted.clear()
    _said_cached.clear()


def bar(iterable=None, **options):
    """A tqdm bar on stderr, shown only on a terminal (see :func:`interactive`)."""
    from tqdm import tqdm

    options.setdefault("disable", not interactive())
    options.setdefault("leave", False)
    return tqdm(iterable, **options)
