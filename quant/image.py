"""The StruM memory image: the bytes the hardware reads, and their file header.

Block layout (method section 5), byte aligned, for a config with B lanes and H high:

======================  =====================  ==========================================
field                   bytes                  content
======================  =====================  ==========================================
mask                    ceil(B/8)              bit i = 1 when lane i is high (lane 0 = LSB
                                               of the first byte)
high values             H                      int8, ascending lane order
low codes               ceil(L/2)              4-bit codes, ascending lane order, low
                                               nibble first (dliq, mip2q; absent for zero)
shift                   1                      DLIQ block shift e (dliq only)
======================  =====================  ==========================================

Blocks follow each other channel-major: all blocks of output channel 0 along its
reduction vector, then channel 1, and so on.

With ``mask_share`` = k > 1 (k consecutive output channels share their masks), the file
stores each mask once: first the masks of channel groups 0, 1, ... (``[ceil(K/k), nb,
ceil(B/8)]``), then the blocks without their mask field. :func:`read_image` puts every
channel's mask back, so readers see ``[K, nb, block_bytes]`` blocks either way.

An image *file* wraps the blocks: magic ``b"STRUMIMG"``, a little-endian u16 format
version, a u32 header length, a UTF-8 JSON header (the config, the tensor shape and the
block geometry), the blocks, and a trailing CRC-32 (zlib) of everything before it.
Version 2 added the shared masks; version 1 files (from before it) are refused.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .blocks import block_count, from_blocks, from_reduction
from .config import ConfigError, StrumConfig
from .strum import dliq_decode, mip2q_decode

__all__ = [
    "ImageError", "BlockFields", "pack_blocks", "unpack_blocks", "decode_blocks",
    "write_image", "read_image", "image_to_weights", "compact", "lane_order", "MAGIC", "FORMAT_VERSION",
]

MAGIC = b"STRUMIMG"
FORMAT_VERSION = 2
#: Longest JSON header and deepest nesting read_image parses (ours is ~300 bytes, depth 2):
#: checked before parsing, so a crafted header costs neither memory nor recursion.
MAX_HEADER_BYTES = 1 << 16
MAX_HEADER_DEPTH = 8
#: Most tensor axes in a header.
MAX_AXES = 8
#: Largest image file read whole (a 1G-weight layer's image is about 0.5 GiB).
MAX_IMAGE_BYTES = 1 << 30
_PREAMBLE = struct.Struct("<8sHI")     # magic, version, header length
_CRC = struct.Struct("<I")


class ImageError(ValueError):
    """A memory image is malformed; the message says which field."""


@dataclass(frozen=True)
class BlockFields:
    """The fields of a run of blocks, unpacked but still compacted as the PE sees them.

    Attributes
    ----------
    mask : bool ``[..., B]``
    high : int64 ``[..., H]`` int8 values of the high lanes, ascending lane order.
    low_codes : uint8 ``[..., L]`` 4-bit codes of the low lanes, ascending lane order.
    shift : int64 ``[...]`` DLIQ shift (0 for other schemes).
    """

    mask: np.ndarray
    high: np.ndarray
    low_codes: np.ndarray
    shift: np.ndarray


def lane_order(mask: np.ndarray) -> np.ndarray:
    """Lane indices, high lanes first then low lanes, each in ascending lane order."""
    return np.argsort(~mask, axis=-1, kind="stable")


def compact(config: StrumConfig, mask, values, codes, shift) -> BlockFields:
    """Compact per-lane values ``[..., B]`` into the fields the PE receives."""
    # Every block has exactly H high lanes, so boolean selection (row-major, so in
    # ascending lane order) reshapes into [..., H] and [..., L].
    lead = mask.shape[:-1]
    high = values[mask].reshape(lead + (config.high_lanes,))
    low = codes[~mask].reshape(lead + (config.low_lanes,))
    return BlockFields(mask=mask, high=high.astype(np.int64),
                       low_codes=low.astype(np.uint8), shift=np.asarray(shift, np.int64))


def decode_blocks(config: StrumConfig, fields: BlockFields) -> np.ndarray:
    """Integer weights ``[..., B]`` in lane order from compacted block fields."""
    if config.scheme == "dliq":
        low = dliq_decode(fields.low_codes, fields.shift[..., None])
    elif config.scheme == "mip2q":
        low = mip2q_decode(fields.low_codes)
    else:
        low = np.zeros(fields.low_codes.shape, dtype=np.int64)
    weights = np.empty(fields.mask.shape, dtype=np.int64)
    weights[fields.mask] = fields.high.reshape(-1)
    weights[~fields.mask] = low.reshape(-1)
    return weights


def pack_blocks(config: StrumConfig, fields: BlockFields) -> np.ndarray:
    """Block fields ``[..., ...]`` to bytes ``uint8 [..., block_bytes]``."""
    parts = [np.packbits(fields.mask, axis=-1, bitorder="little"),
             (fields.high.astype(np.int64) & 0xFF).astype(np.uint8)]
    if config.scheme in ("dliq", "mip2q"):
        codes = fields.low_codes.astype(np.uint8) & 0xF
        if codes.shape[-1] % 2:
            codes = np.concatenate([codes, np.zeros(codes.shape[:-1] + (1,), np.uint8)], axis=-1)
        parts.append(codes[..., 0::2] | (codes[..., 1::2] << 4))
    if config.scheme == "dliq":
        parts.append(fields.shift.astype(np.uint8)[..., None])
    packed = np.concatenate(parts, axis=-1)
    assert packed.shape[-1] == config.block_bytes
    return packed


def unpack_blocks(config: StrumConfig, packed: np.ndarray) -> BlockFields:
    """Bytes ``uint8 [..., block_bytes]`` to block fields; inverse of :func:`pack_blocks`."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.shape[-1] != config.block_bytes:
        raise ImageError(f"a block must be {config.block_bytes} bytes for this config, "
                         f"not {packed.shape[-1]}")
    B, H, L = config.block_size, config.high_lanes, config.low_lanes
    at = config.mask_bytes
    mask = np.unpackbits(packed[..., :at], axis=-1, bitorder="little")[..., :B].astype(bool)
    high = packed[..., at:at + H].view(np.int8).astype(np.int64)
    at += H
    low = np.zeros(packed.shape[:-1] + (L,), dtype=np.uint8)
    if config.scheme in ("dliq", "mip2q"):
        pairs = packed[..., at:at + (L + 1) // 2]
        nibbles = np.stack([pairs & 0xF, pairs >> 4], axis=-1).reshape(pairs.shape[:-1] + (-1,))
        low = nibbles[..., :L]
        at += (L + 1) // 2
    shift = np.zeros(packed.shape[:-1], dtype=np.int64)
    if config.scheme == "dliq":
        shift = packed[..., at].astype(np.int64)
        if (shift > config.dliq_max_shift).any():
            raise ImageError(f"a DLIQ shift exceeds {config.dliq_max_shift}")
    if (mask.sum(axis=-1) != H).any():
        raise ImageError(f"a block mask does not have exactly high_lanes={H} bits set")
    _check_groups(config, mask)
    return BlockFields(mask=mask, high=high, low_codes=low, shift=shift)


def _check_groups(config: StrumConfig, mask: np.ndarray) -> None:
    """Refuse a mask with the wrong number of high lanes in a selection group: the PE
    routes each group on its own, so a mask legal per block but not per group is misrouted."""
    G, h = config.group_size, config.high_per_group
    per_group = mask.reshape(mask.shape[:-1] + (config.groups_per_block, G)).sum(axis=-1)
    wrong = np.argwhere(per_group != h)
    if len(wrong):
        *block, group = (int(i) for i in wrong[0])
        bits = "".join("1" if bit else "0" for bit in mask[tuple(block)][::-1])
        raise ImageError(f"block {tuple(block) if len(block) != 1 else block[0]} (mask {bits}, lane 0 "
                         f"rightmost): group {group} (lanes {group * G}..{group * G + G - 1}) has "
                         f"{int(per_group[tuple(wrong[0])])} high lanes, group_size={G} needs "
                         f"high_lanes*group_size/block_size = {h}")


# -- image files ---------------------------------------------------------------------------

def write_image(config: StrumConfig, shape: tuple[int, ...], blocks: np.ndarray) -> bytes:
    """A complete image file: header, blocks ``uint8 [K, nb, block_bytes]``, checksum."""
    header = json.dumps({
        "config": config.to_dict(),
        "shape": [int(n) for n in shape],
        "blocks_per_channel": int(blocks.shape[1]),
        "block_bytes": config.block_bytes,
    }, sort_keys=True).encode()
    blocks = np.asarray(blocks, dtype=np.uint8)
    k, at = config.mask_share, config.mask_bytes
    if k > 1:
        masks = blocks[::k, :, :at]
        if not (np.repeat(masks, k, axis=0)[:blocks.shape[0]] == blocks[..., :at]).all():
            raise ImageError(f"mask_share={k}: channels of one group have different masks")
        payload = masks.tobytes() + np.ascontiguousarray(blocks[..., at:]).tobytes()
    else:
        payload = blocks.tobytes()
    body = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header)) + header + payload
    return body + _CRC.pack(zlib.crc32(body))


def read_image(data: bytes | np.ndarray):
    """Parse and verify an image file: (config, shape, blocks ``uint8 [K, nb, block_bytes]``).

    Raises
    ------
    ImageError
        On a wrong magic, an unknown version, a bad checksum, or inconsistent sizes.
    """
    data = bytes(np.asarray(data, dtype=np.uint8).tobytes()) if isinstance(data, np.ndarray) else bytes(data)
    if len(data) < _PREAMBLE.size + _CRC.size:
        raise ImageError(f"image is {len(data)} bytes, too short to hold a header")
    magic, version, header_length = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise ImageError(f"image magic is {magic!r}, expected {MAGIC!r}: not a StruM image")
    if version != FORMAT_VERSION:
        raise ImageError(f"image format version is {version}, this strum reads version {FORMAT_VERSION} "
                         f"only: quantize the model again to write a version {FORMAT_VERSION} image")
    (stored_crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[:-_CRC.size]) != stored_crc:
        raise ImageError("image checksum does not match: the file is corrupt or truncated")
    start = _PREAMBLE.size
    if header_length > min(MAX_HEADER_BYTES, len(data) - start - _CRC.size):
        raise ImageError(f"image header length {header_length} is larger than the file allows "
                         f"(at most {min(MAX_HEADER_BYTES, len(data) - start - _CRC.size)})")
    text = data[start:start + header_length]
    octets = np.frombuffer(text, np.uint8)
    depth = np.cumsum(np.isin(octets, (ord("["), ord("{"))).astype(np.int64)
                      - np.isin(octets, (ord("]"), ord("}"))))
    if depth.size and depth.max() > MAX_HEADER_DEPTH:
        raise ImageError(f"image header nests deeper than {MAX_HEADER_DEPTH} levels: not a StruM header")
    try:
        header = json.loads(text)
        config = StrumConfig.from_dict(header["config"])
        shape = tuple(header["shape"])
        per_channel = header["blocks_per_channel"]
    except (ValueError, KeyError, TypeError, RecursionError, ConfigError) as error:
        raise ImageError(f"image header is invalid: {error}") from None
    if not (1 <= len(shape) <= MAX_AXES and all(type(n) is int and n > 0 for n in shape)):
        raise ImageError(f"image header shape {list(shape)} is invalid: expected 1 to {MAX_AXES} "
                         f"positive integers")
    if type(per_channel) is not int:
        raise ImageError(f"image header blocks_per_channel {per_channel!r} is not an integer")
    payload = np.frombuffer(data, dtype=np.uint8, offset=start + header_length,
                            count=len(data) - start - header_length - _CRC.size)
    channels, nb, k, at = shape[0], block_count(math.prod(shape[1:]), config.block_size), \
        config.mask_share, config.mask_bytes
    groups = -(-channels // k)
    expected = channels * nb * config.block_bytes - (channels - groups) * nb * at
    if payload.size != expected or per_channel != nb:
        raise ImageError(f"image holds {payload.size} block bytes, expected {expected} for shape {shape}")
    if k == 1:
        return config, shape, payload.reshape(channels, nb, config.block_bytes)
    masks = payload[:groups * nb * at].reshape(groups, nb, at)
    rest = payload[groups * nb * at:].reshape(channels, nb, config.block_bytes - at)
    blocks = np.concatenate([np.repeat(masks, k, axis=0)[:channels], rest], axis=-1)
    return config, shape, blocks


def image_to_weights(data) -> tuple[StrumConfig, np.ndarray, np.ndarray]:
    """Decode an image file to (config, w_int, mask) in the tensor's own shape."""
    config, shape, blocks = read_image(data)
    fields = unpack_blocks(config, blocks)
    length = int(np.prod(shape[1:]))
    w_int = from_reduction(from_blocks(decode_blocks(config, fields), length), shape)
    mask = from_reduction(from_blocks(fields.mask, length), shape)
    return config, w_int, mask

