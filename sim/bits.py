"""Packing NumPy integer arrays into stream payload words, and back.

A stream payload is a flat unsigned bit vector (the ``lib.data`` layout bits of an
Amaranth stream, an unsigned port in the generated Verilog). Here a batch of ``n``
payloads is a ``uint32`` array ``[n, ceil(width / 32)]``, least significant word first,
which is what the Verilator harness reads and writes.

A field is ``(offset, width, values)``: ``width`` bits starting at bit ``offset``.
Values are two's complement: a negative value, or an ``int64`` packed into a field wider
than 64 bits, is sign-extended and then masked to the field width. Every function is
vectorised over the ``n`` payloads; only the fields (and the 32-bit words of one field)
are visited by Python loops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from strum.hw.export import FieldSpec, payload_fields

__all__ = [
    "FieldSpec",
    "words_for",
    "pack_fields",
    "unpack_field",
    "layout_fields",
    "pack_struct",
    "unpack_struct",
]

_WORD = 32
_WORD_MASK = np.uint64(0xFFFF_FFFF)


def words_for(width: int) -> int:
    """Number of 32-bit words holding a ``width``-bit payload (at least 1)."""
    if not isinstance(width, int) or isinstance(width, bool) or width < 0:
        raise ValueError(f"width must be a non-negative integer, not {width!r}")
    return max(1, -(-width // _WORD))


def _check_field(offset: Any, width: Any, total: int | None = None) -> None:
    for name, value in (("offset", offset), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"field {name} must be a non-negative integer, not {value!r}")
    if width == 0:
        raise ValueError(f"field at offset {offset} has width 0; a field needs at least 1 bit")
    if total is not None and offset + width > total:
        raise ValueError(
            f"field at offset {offset} with width {width} ends at bit {offset + width}, "
            f"beyond the payload width {total}")


def _as_source_words(values: np.ndarray, count: int) -> list[np.ndarray]:
    """The first ``count`` 32-bit words (as uint64) of each value, sign-extended."""
    if values.dtype.kind == "u":
        raw = values.astype(np.uint64)
        extension = np.zeros_like(raw)
    else:
        signed = values.astype(np.int64)
        raw = signed.view(np.uint64)
        extension = np.where(signed < 0, _WORD_MASK, np.uint64(0))
    words = [raw & _WORD_MASK, raw >> np.uint64(_WORD)]
    while len(words) < count:
        words.append(extension)
    return words[:count]


def pack_fields(fields: Iterable[tuple[int, int, Any]], width: int) -> np.ndarray:
    """Pack integer fields into payload words.

    Parameters
    ----------
    fields : iterable of (offset, width, values)
        ``values`` is an integer array ``[n]`` (any integer dtype; lists are accepted).
        Negative values are stored in two's complement; every value is masked to the
        field width. Fields must not overlap; bits not covered by a field are zero.
    width : int
        Payload width in bits.

    Returns
    -------
    numpy.ndarray
        ``uint32 [n, words_for(width)]``, least significant word first.

    Raises
    ------
    ValueError
        A field is empty, overlaps another or lies beyond ``width``, or the value arrays
        have different lengths.
    TypeError
        Values are not integers (for example an object array of Python ints).
    """
    n_words = words_for(width)
    fields = list(fields)
    arrays = []
    for offset, field_width, values in fields:
        _check_field(offset, field_width, width)
        values = np.asarray(values)
        if values.ndim != 1:
            raise ValueError(
                f"values of the field at offset {offset} must be a 1-D array [n], "
                f"not shape {values.shape}")
        if values.dtype.kind not in "iub":
            raise TypeError(
                f"values of the field at offset {offset} must be an integer array, "
                f"not dtype {values.dtype}")
        arrays.append((int(offset), int(field_width), values))
    lengths = {len(values) for _, _, values in arrays}
    if len(lengths) > 1:
        raise ValueError(f"all fields need the same number of values, got lengths {sorted(lengths)}")
    spans = sorted((offset, offset + fw) for offset, fw, _ in arrays)
    for (start_a, end_a), (start_b, _) in zip(spans, spans[1:]):
        if start_b < end_a:
            raise ValueError(f"fields [{start_a}, {end_a}) and one starting at bit {start_b} overlap")
    n = lengths.pop() if lengths else 0
    out = np.zeros((n, n_words), dtype=np.uint64)
    for offset, field_width, values in arrays:
        shift = offset % _WORD
        base = offset // _WORD
        span = -(-(shift + field_width) // _WORD)
        source = _as_source_words(values, span)
        previous = np.zeros(n, dtype=np.uint64)
        for k in range(span):
            # Bits of source word k land at shift..; the top bits of word k-1 carry in.
            word = ((source[k] << np.uint64(shift)) | (previous >> np.uint64(_WORD - shift))) & _WORD_MASK
            previous = source[k]
            low = max(0, offset - (base + k) * _WORD)
            high = min(_WORD, offset + field_width - (base + k) * _WORD)
            mask = np.uint64(((1 << (high - low)) - 1) << low)
            out[:, base + k] |= word & mask
    return out.astype(np.uint32)


def _extract(words: np.ndarray, offset: int, width: int) -> np.ndarray:
    """Bits ``offset .. offset + width - 1`` (width <= 64) as uint64 [n]."""
    shift = offset % _WORD
    base = offset // _WORD
    span = -(-(shift + width) // _WORD)
    value = words[:, base].astype(np.uint64) >> np.uint64(shift)
    for k in range(1, span):
        # k == 2 only happens with shift > 0, so the shift amount stays below 64.
        value |= words[:, base + k].astype(np.uint64) << np.uint64(k * _WORD - shift)
    if width < 64:
        value &= np.uint64((1 << width) - 1)
    return value


def unpack_field(words: np.ndarray, offset: int, width: int, signed: bool) -> np.ndarray:
    """Read one field of every payload as ``int64``.

    Parameters
    ----------
    words : numpy.ndarray
        ``uint32 [n, words]`` payloads (as returned by :func:`pack_fields` or the
        Verilator backend).
    offset, width : int
        Field position in bits. A field wider than 64 bits is accepted if every value
        fits ``int64`` (the upper bits are a sign extension, or zero if unsigned).
    signed : bool
        Two's complement field.

    Returns
    -------
    numpy.ndarray
        ``int64 [n]``.

    Raises
    ------
    ValueError
        The field lies beyond the words, or is an unsigned 64-bit field (which
        ``int64`` cannot hold).
    OverflowError
        A field wider than 64 bits holds a value outside ``int64``.
    """
    words = np.asarray(words)
    if words.ndim != 2 or words.dtype != np.uint32:
        raise ValueError(f"words must be a uint32 array [n, words], not {words.dtype} {words.shape}")
    _check_field(offset, width, words.shape[1] * _WORD)
    offset, width = int(offset), int(width)
    if width == 64 and not signed:
        raise ValueError(
            f"an unsigned 64-bit field (offset {offset}) does not fit int64; "
            f"read it as two 32-bit fields")
    low = _extract(words, offset, min(width, 64))
    if width <= 64:
        result = low.view(np.int64) if width == 64 else low.astype(np.int64)
        if signed and width < 64:
            sign = np.int64(1 << (width - 1))
            result = (result ^ sign) - sign
        return result
    result = low.view(np.int64)
    negative = result < 0
    if not signed and negative.any():
        raise OverflowError(
            f"unsigned field at offset {offset} (width {width}) holds values of 2**63 or more")
    for start in range(offset + 64, offset + width, 64):
        chunk = min(64, offset + width - start)
        high = _extract(words, start, chunk)
        ones = np.uint64((1 << chunk) - 1)
        expected = np.where(negative, ones, np.uint64(0))
        if np.any(high != expected):
            raise OverflowError(
                f"field at offset {offset} (width {width}) holds values outside int64")
    return result


def layout_fields(shape: Any) -> dict[str, FieldSpec]:
    """Position of every leaf field of an Amaranth shape, by path: the one walk over
    layouts, :func:`strum.hw.export.payload_fields` (paths such as ``"act[3]"``)."""
    return payload_fields(shape)


def _shape_width(shape: Any) -> int:
    from amaranth.hdl import Shape

    from amaranth.lib import data

    try:
        return data.Layout.cast(shape).size
    except TypeError:
        return Shape.cast(shape).width


def pack_struct(shape: Any, values: Mapping[str, Any], *, strict: bool = True) -> np.ndarray:
    """Pack named field arrays into payload words of an Amaranth shape.

    Parameters
    ----------
    shape : amaranth ShapeLike or lib.data.Layout
        The payload shape (see :func:`layout_fields`).
    values : mapping of str to array
        Leaf paths to ``[n]`` integer arrays. An array field may also be given by its
        own path with a ``[n, length]`` array, e.g. ``{"act": acts}`` for
        ``act[0]`` .. ``act[length - 1]`` (nested arrays of arrays must be given leaf
        by leaf or by their innermost array path).
    strict : bool
        Require every leaf to be given (default); otherwise missing leaves are zero.

    Returns
    -------
    numpy.ndarray
        ``uint32 [n, words]``.

    Raises
    ------
    KeyError
        A path is not in the shape, or (``strict``) a leaf is missing.
    ValueError
        A 2-D array's second axis does not match the array length.
    """
    fields = layout_fields(shape)
    leaves: dict[str, Any] = {}
    for path, array in values.items():
        if path in fields:
            leaves[path] = array
            continue
        element = re.compile(re.escape(path) + r"\[\d+\]")
        children = [p for p in fields if element.fullmatch(p)]
        if not children:
            raise KeyError(f"payload has no field {path!r} (fields: {', '.join(fields)})")
        array = np.asarray(array)
        if array.ndim != 2 or array.shape[1] != len(children):
            raise ValueError(
                f"field {path!r} is an array of {len(children)}; give a [n, {len(children)}] "
                f"array, not shape {array.shape}")
        for index in range(len(children)):
            leaves[f"{path}[{index}]"] = array[:, index]
    if strict:
        missing = [p for p in fields if p not in leaves]
        if missing:
            raise KeyError(f"no values for payload fields {missing} (pass strict=False to zero them)")
    return pack_fields(
        [(fields[p].offset, fields[p].width, leaves[p]) for p in leaves], _shape_width(shape))


def unpack_struct(shape: Any, words: np.ndarray) -> dict[str, np.ndarray]:
    """Every leaf field of the payloads as ``int64 [n]``, by path (see :func:`unpack_field`)."""
    return {path: unpack_field(words, spec.offset, spec.width, spec.signed)
            for path, spec in layout_fields(shape).items()}
