"""Reading ``.npz`` archives that may be damaged or crafted, in bounded memory and time.

``np.load`` trusts an archive: a crafted array header makes it allocate whatever shape
it claims, a damaged zip raises any of half a dozen exception types, and random bytes
get a misleading "pickled data" message. :func:`read_npz` checks the sizes before it
reads anything (the zip directory's sizes, the array header's shape against its
member's size, a cap on the total) and turns every problem into one
:class:`~.errors.InputError` that names the file and the array.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["read_npz", "MAX_NPZ_BYTES", "MAX_NPZ_MEMBERS"]

#: Largest total of uncompressed array bytes one archive may hold.
MAX_NPZ_BYTES = 4 << 30
#: Most arrays one archive may hold.
MAX_NPZ_MEMBERS = 100_000
#: Longest .npy header numpy itself accepts by default.
_MAX_HEADER = 10_000
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def read_npz(path, keys=None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, ``{key: array}`` in archive order.

    Parameters
    ----------
    path : str or os.PathLike
    keys : iterable of str, optional
        Read only these arrays (others are skipped unread); default all.

    Raises
    ------
    InputError
        Not a regular file, not a zip archive, a damaged member (bad CRC, truncated,
        bad compression), an array header that is malformed, holds Python objects,
        or claims more data than its member has, or more than :data:`MAX_NPZ_BYTES`.
    """
    path = Path(path)
    try:
        path.stat()
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a regular file")
    wanted = None if keys is None else set(keys)
    arrays = {}
    try:
        with open(path, "rb") as stream:
            if not stream.read(4).startswith(_ZIP_MAGICS):
                raise InputError(f"{path}: not a valid .npz archive (no zip header)")
            stream.seek(0)
            with zipfile.ZipFile(stream) as archive:
                members = archive.infolist()
                if len(members) > MAX_NPZ_MEMBERS:
                    raise InputError(f"{path}: the archive holds {len(members)} members, "
                                     f"more than {MAX_NPZ_MEMBERS}")
                total = sum(member.file_size for member in members)
                if total > MAX_NPZ_BYTES:
                    raise InputError(f"{path}: the archive unpacks to {total:,} bytes, "
                                     f"more than the {MAX_NPZ_BYTES:,} strum reads")
                for member in members:
                    key = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
                    if wanted is not None and key not in wanted:
                        continue
                    arrays[key] = _read_member(path, archive, member, key)
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            ValueError, NotImplementedError, RuntimeError) as error:
        raise InputError(f"{path}: not a valid .npz archive ({_text(error)})") from None
    return arrays


def _text(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _read_member(path: Path, archive: zipfile.ZipFile, member: zipfile.ZipInfo, key: str):
    where = f"{path}: array {key!r}"
    try:
        with archive.open(member) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                    stream, max_header_size=_MAX_HEADER)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                    stream, max_header_size=_MAX_HEADER)
            else:
                raise InputError(f"{where}: unsupported .npy format version {version}")
            if dtype.hasobject:
                raise InputError(f"{where}: holds Python objects (pickled data), which strum "
                                 f"does not load")
            if any(not isinstance(n, int) or n < 0 for n in shape):
                raise InputError(f"{where}: header has an invalid shape {shape}")
            size = math.prod(shape) * dtype.itemsize
            if size > member.file_size:
                raise InputError(f"{where}: header claims {size:,} bytes of data for shape "
                                 f"{shape}, but the member holds only {member.file_size:,}")
            buffer = bytearray(size)
            if stream.readinto(buffer) != size:
                raise InputError(f"{where}: truncated ({size:,} bytes expected)")
            stream.read()           # to the end of the member: zipfile checks its CRC there
    except InputError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, SyntaxError,
            NotImplementedError, RuntimeError) as error:
        raise InputError(f"{where}: damaged ({_text(error)})") from None
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
