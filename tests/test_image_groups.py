"""The memory-image readers refuse a mask that is legal per block but not per selection group."""

import numpy as np
import pytest

from strum.cli import main
from strum.quant.config import StrumConfig
from strum.quant.image import BlockFields, ImageError, image_to_weights, pack_blocks, unpack_blocks, write_image

CONFIG = StrumConfig(scheme="dliq", block_size=16, high_lanes=8, group_size=4)
# 8 set bits in the block, but 1, 3, 2, 2 in its four groups: the PE would misroute it.
BAD_MASK = "0011101111000100"


def blocks_with(mask_text: str, count: int = 3, bad_at: int = 1) -> np.ndarray:
    good = np.array([True, False] * 8)
    masks = np.repeat(good[None], count, axis=0)
    masks[bad_at] = [bit == "1" for bit in mask_text[::-1]]
    fields = BlockFields(mask=masks[None], high=np.ones((1, count, 8), np.int64),
                         low_codes=np.zeros((1, count, 8), np.uint8), shift=np.zeros((1, count), np.int64))
    return pack_blocks(CONFIG, fields)


def test_unpack_refuses_a_mask_illegal_per_group():
    with pytest.raises(ImageError, match=r"block \(0, 1\) \(mask 0011101111000100.*group 0 .*has 1 high "
                                         r"lanes.*needs .* = 2"):
        unpack_blocks(CONFIG, blocks_with(BAD_MASK))


def test_the_same_mask_is_legal_when_the_group_is_the_block():
    unpack_blocks(CONFIG.replace(group_size=16), blocks_with(BAD_MASK))


def test_inspect_refuses_it(tmp_path, capsys):
    image = write_image(CONFIG, (1, 48), blocks_with(BAD_MASK))
    with pytest.raises(ImageError, match="group 0"):
        image_to_weights(image)
    path = tmp_path / "bad.img"
    path.write_bytes(image)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "block (0, 1)" in err and "group 0" in err and err.count("\n") == 1


def test_the_pe_misroutes_masks_legal_only_per_block():
    """Why the reader checks groups: with masks legal only per block, the static PE at
    G = 4 provably misroutes, and legal per group it provably does not."""
    from strum.formal.prove import prove_pe
    from strum.hw.pe import StrumPE

    pe = StrumPE(config=CONFIG.replace(block_size=8, high_lanes=4))
    assert prove_pe(pe, parts=["route"]).proven
    report = prove_pe(pe, parts=["route"], legal_masks="block")
    assert report.parts[0].status == "failed"
    mask = report.parts[0].counterexample["mask"]
    assert mask.count("1") == 4 and {mask[:4].count("1"), mask[4:].count("1")} != {2}
