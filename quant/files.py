"""Writing output files atomically: a reader never sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_writer", "cache_root", "write_bytes", "write_text"]


@contextlib.contextmanager
def atomic_writer(path, mode: str = "wb"):
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
        # mkstemp makes the file 0600; the finished file gets what the umask allows.
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cache_root(cache_dir=None) -> Path:
    """Where strum keeps downloads, Verilog, Verilator builds and synthesis results:
    ``cache_dir``, else ``$STRUM_CACHE``, else ``~/.cache/strum``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("STRUM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "strum"


def write_bytes(path, data: bytes) -> None:
    with atomic_writer(path, "wb") as stream:
        stream.write(data)


def write_text(path, text: str) -> None:
    with atomic_writer(path, "w") as stream:
        stream.write(text)
