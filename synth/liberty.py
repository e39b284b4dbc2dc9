"""Liberty cell libraries for the asic flow: finding one, and reading its cells' areas.

The default is the OSU 0.18 um library of the Debian package ``qflow-tech-osu018``;
any other library is given with ``--liberty FILE``. Only two facts per cell are read:
its ``area`` and whether it is sequential (holds an ``ff`` or ``latch`` group), which
is what the breakdown needs to put flip-flops under "registers".
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

from .tools import SynthError, SynthInputError, ToolMissing

__all__ = ["OSU018_LIBERTY", "Liberty", "find_liberty", "read_liberty"]

#: Where Debian's ``qflow-tech-osu018`` installs the OSU 0.18 um standard cells.
OSU018_LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")

_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CELL = re.compile(r"\bcell\s*\(\s*\"?([^\s\")]+)\"?\s*\)\s*\{")
_AREA = re.compile(r"\barea\s*:\s*([0-9.eE+-]+)\s*;")
_SEQUENTIAL = re.compile(r"\b(ff|latch|ff_bank|latch_bank)\s*\(")
_BRACE = re.compile(r"[{}]")


@dataclasses.dataclass(frozen=True)
class Liberty:
    """A Liberty file with its cells' areas (library units, um^2 for OSU) and kinds.

    Attributes
    ----------
    path : Path
    sha256 : str, digest of the file's bytes (part of every cache key that uses it).
    areas : dict[str, float]
    sequential : frozenset[str], cells with an ``ff`` or ``latch`` group.
    """

    path: Path
    sha256: str
    areas: dict
    sequential: frozenset

    def area(self, cell: str) -> float:
        try:
            return self.areas[cell]
        except KeyError:
            raise SynthError(f"cell {cell!r} is not in the liberty file {self.path}") from None


def find_liberty(path=None) -> Path:
    """The Liberty file to use: ``path``, else the OSU 0.18 um library if installed.

    Raises
    ------
    ToolMissing
        When ``path`` is None and ``qflow-tech-osu018`` is not installed, or ``path``
        does not exist.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ToolMissing(f"liberty file {str(path)!r} does not exist")
        return path.resolve()
    if OSU018_LIBERTY.is_file():
        return OSU018_LIBERTY
    raise ToolMissing(f"the asic flow needs a Liberty cell library: install the Debian package "
                      f"qflow-tech-osu018 (apt-get install qflow-tech-osu018, gives "
                      f"{OSU018_LIBERTY}) or pass --liberty FILE")


def read_liberty(path) -> Liberty:
    """Read the cells of a Liberty file (``path`` must exist, see :func:`find_liberty`)."""
    path = Path(path)
    data = path.read_bytes()
    text = _COMMENT.sub(" ", data.decode("latin-1"))
    areas, sequential = {}, set()
    for match in _CELL.finditer(text):
        try:
            end = _group_end(text, match.end())
        except SynthInputError as error:
            raise SynthInputError(f"liberty file {str(path)!r}: {error}") from None
        body = text[match.end():end]
        area = _AREA.search(body)
        if area is None:
            continue
        areas[match.group(1)] = float(area.group(1))
        if _SEQUENTIAL.search(body):
            sequential.add(match.group(1))
    if not areas:
        raise SynthInputError(f"liberty file {str(path)!r} defines no cell with an area")
    return Liberty(path=path, sha256=hashlib.sha256(data).hexdigest(), areas=areas,
                   sequential=frozenset(sequential))


def _group_end(text: str, start: int) -> int:
    """Index of the brace closing the group whose body starts at ``start``."""
    depth = 1
    for match in _BRACE.finditer(text, start):
        depth += 1 if match.group() == "{" else -1
        if depth == 0:
            return match.start()
    raise SynthInputError("unclosed group: not a Liberty file, or a truncated one")
