"""The output policy of every ``strum`` verb: checked first, written last, all or nothing.

A verb declares its output options with :func:`add_output` instead of
``parser.add_argument``; :func:`strum.cli.main` then, before the verb does any work,

- checks every output path: its folder exists and is writable, it is not a folder where a
  file is meant (nor a file where a folder is meant, nor a device), it is not the same
  file as any input named on the command line (``os.path.samefile`` and resolved path)
  and no two outputs are the same file;
- replaces each output option's value by a *staging* path in the target's own folder
  (``.NAME.strum-XXXX.part.SUFFIX`` for a file, a hidden folder for a folder), so the
  verb writes exactly as before, and keeps the suffix (matplotlib picks the format
  from it);
- when the verb returns, moves every staged output into place with ``os.replace`` (a
  folder's files one by one, merged into an existing folder), with SIGINT held off
  for those few renames; when it raises or is interrupted, removes everything staged.

So a verb that fails leaves nothing new behind, a verb with several outputs writes all or
none, and an input is never overwritten. Files get the mode the umask gives (the temp
files are 0600 until committed). A folder output that received no file is not created.

Adopting it in a new verb is one call per output option::

    add_output(sub, "-o", "--output", kind="folder", help="...")
    add_output(sub, "--report", metavar="R.json")

and, where the verb prints the path it wrote, ``final_path(args, "output")``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
from pathlib import Path

__all__ = ["OutputError", "add_output", "output_kinds", "final_path", "Staging", "umask"]

_KINDS = ("file", "folder")
_DEFAULT_KEY = "_strum_outputs"


class OutputError(ValueError):
    """An output path cannot be written as asked; the message names the option."""


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def add_output(parser, *flags, kind: str = "file", **kwargs):
    """``parser.add_argument(*flags, **kwargs)`` for an output path, registered with the
    policy. ``kind`` is ``"file"`` or ``"folder"``; returns the argparse action."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    action = parser.add_argument(*flags, **kwargs)
    registered = dict(parser.get_default(_DEFAULT_KEY) or {})
    registered[action.dest] = (kind, tuple(action.option_strings) or (action.dest,))
    parser.set_defaults(**{_DEFAULT_KEY: registered})
    return action


def output_kinds(args) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``{dest: (kind, option strings)}`` of the output options of the parsed verb."""
    return dict(getattr(args, _DEFAULT_KEY, None) or {})


def final_path(args, dest: str):
    """The path the user asked for (``args.<dest>`` holds the staging path during a verb)."""
    finals = getattr(args, "_strum_final", {})
    return finals.get(dest, getattr(args, dest))


def _input_paths(args, outputs) -> list[tuple[str, Path]]:
    """Every other argument value naming an existing file: (dest, path)."""
    found = []
    for dest, value in vars(args).items():
        if dest in outputs or dest.startswith("_") or callable(value):
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, os.PathLike)) and str(item):
                try:
                    path = Path(item)
                    if path.exists() and not path.is_dir():
                        found.append((dest, path))
                except (OSError, ValueError):
                    continue
    return found


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, ValueError, RuntimeError):
        return False


class Staging:
    """The staged outputs of one verb run (see the module docstring).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line; output options found by :func:`output_kinds` are
        replaced by staging paths in :meth:`__enter__` and restored afterwards.
    typed : callable
        ``typed(dest) -> str``: the option as the user typed it, for messages.
    """

    def __init__(self, args, typed=None):
        self.args = args
        self.typed = typed or (lambda dest: output_kinds(args)[dest][1][-1])
        self.outputs = output_kinds(args)
        self.staged: dict[str, tuple[str, Path, Path]] = {}    # dest: (kind, final, staging)
        self.committed = False

    # -- checking ---------------------------------------------------------------------

    def _fail(self, dest: str, value, why: str):
        raise OutputError(f"{self.typed(dest)} {value}: {why}")

    def check(self) -> dict[str, tuple[str, Path]]:
        """Check every given output path; ``{dest: (kind, path)}``. Raises OutputError."""
        inputs = _input_paths(self.args, self.outputs)
        checked: dict[str, tuple[str, Path]] = {}
        for dest, (kind, _) in self.outputs.items():
            value = getattr(self.args, dest, None)
            if value is None:
                continue
            text = os.fspath(value)
            if not text.strip():
                self._fail(dest, repr(text), "is empty, expected a path")
            if "\0" in text:
                self._fail(dest, repr(text), "contains a NUL byte")
            path = Path(text)
            if kind == "file":
                if text.endswith(("/", os.sep)) or path.is_dir():
                    self._fail(dest, text, "is a folder, expected a file name")
                if path.exists() and not path.is_file():
                    self._fail(dest, text, "exists and is not a regular file")
            elif path.exists() and not path.is_dir():
                self._fail(dest, text, "exists and is not a folder")
            parent = path.parent
            if not parent.exists():
                self._fail(dest, text, f"folder {str(path.parent)!r} does not exist")
            if not parent.is_dir():
                self._fail(dest, text, f"{str(path.parent)!r} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                self._fail(dest, text, f"folder {str(parent)!r} is not writable")
            for source, input_path in inputs:
                if kind == "file" and _same(path, input_path):
                    self._fail(dest, text, f"is the input file {str(input_path)!r}; "
                                           f"choose another output name")
            for other, (_, other_path) in checked.items():
                if _same(path, other_path):
                    self._fail(dest, text, f"is also the path of {self.typed(other)}")
            checked[dest] = (kind, path)
        self._inputs = inputs
        return checked

    # -- staging ----------------------------------------------------------------------

    def __enter__(self):
        checked = self.check()
        finals = {}
        try:
            for dest, (kind, path) in checked.items():
                folder = path.parent
                name = path.name or "output"
                try:
                    if kind == "file":
                        # Reserve a name (and prove the folder writable), then free it: a
                        # staged file that the verb never writes is simply not committed.
                        handle, staging = tempfile.mkstemp(
                            prefix=f".{name}.strum-", suffix=f".part{path.suffix}", dir=folder)
                        os.close(handle)
                        os.unlink(staging)
                    else:
                        staging = tempfile.mkdtemp(prefix=f".{name}.strum-", suffix=".part",
                                                   dir=folder)
                except OSError as error:
                    self._fail(dest, path, f"cannot write in {str(folder)!r} "
                                           f"({error.strerror or error})")
                self.staged[dest] = (kind, path, Path(staging))
                finals[dest] = getattr(self.args, dest)
                setattr(self.args, dest, str(staging))
        except BaseException:
            self.discard()
            raise
        self.args._strum_final = finals
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if kind is None:
                self.commit()
        finally:
            self.discard()
            for dest, final in getattr(self.args, "_strum_final", {}).items():
                setattr(self.args, dest, final)
        return False

    def _moves(self) -> list[tuple[Path, Path]]:
        """(staged file, final path) for everything to commit, folders walked."""
        moves = []
        for dest, (kind, final, staging) in self.staged.items():
            if kind == "file":
                if staging.exists():
                    moves.append((staging, final))
                continue
            for root, _, files in os.walk(staging):
                for file in sorted(files):
                    source = Path(root) / file
                    moves.append((source, final / source.relative_to(staging)))
        for source, final in moves:
            for dest, input_path in self._inputs:
                if _same(final, input_path):
                    raise OutputError(f"{final} would replace the input {str(input_path)!r}; "
                                      f"nothing was written")
            if final.exists() and final.is_dir():
                raise OutputError(f"{final} is a folder; nothing was written")
        return moves

    def commit(self) -> None:
        """Move every staged output into place (SIGINT is held off meanwhile)."""
        moves = self._moves()
        file_mode = 0o666 & ~umask()
        folder_mode = 0o777 & ~umask()
        with _sigint_held():
            for source, final in moves:
                if final.parent != source.parent and not final.parent.exists():
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.chmod(final.parent, folder_mode)
                if stat.S_IMODE(source.stat().st_mode) & 0o111 == 0:
                    os.chmod(source, file_mode)
                os.replace(source, final)
        self.committed = True

    def discard(self) -> None:
        """Remove every staged file and folder that is still there."""
        for kind, _, staging in self.staged.values():
            with contextlib.suppress(OSError):
                if kind == "file":
                    staging.unlink(missing_ok=True)
                else:
                    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _sigint_held():
    """Defer Ctrl-C while the outputs are renamed into place; the verb is done anyway."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    # SIGALRM too: strum.cli re-delivers a Ctrl-C with a timer until it is reported.
    previous = {number: signal.signal(number, lambda number, frame: pending.append(number))
                for number in (signal.SIGINT, signal.SIGALRM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
