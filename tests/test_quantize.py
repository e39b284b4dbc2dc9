"""quantize(): every scheme, the StruM invariants (property-based), the memory image."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strum.quant.blocks import from_reduction, to_blocks, to_reduction
from strum.quant.config import SCHEMES, STRUM_SCHEMES, ConfigError, StrumConfig
from strum.quant.image import (FORMAT_VERSION, ImageError, image_to_weights, read_image,
                               unpack_blocks)
from strum.quant.int8 import quantize_int8
from strum.quant.quantize import quantize, sqnr_db


def _weights(seed, shape):
    return np.random.default_rng(seed).standard_t(4, size=shape)


@st.composite
def strum_cases(draw):
    block = draw(st.sampled_from([4, 8, 16, 32]))
    group = draw(st.sampled_from([g for g in (1, 2, 4, 8, 16, 32) if block % g == 0]))
    per_group = draw(st.integers(0, group))
    config = StrumConfig(scheme=draw(st.sampled_from(STRUM_SCHEMES)), block_size=block,
                         high_lanes=per_group * block // group, group_size=group,
                         rounding=draw(st.sampled_from(["haz", "rne"])))
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 7)) for _ in range(ndim))
    return config, _weights(draw(st.integers(0, 2**31)), shape)


@settings(max_examples=150, deadline=None)
@given(strum_cases())
def test_strum_invariants(case):
    config, w = case
    q = quantize(w, config)
    q8, _ = quantize_int8(to_reduction(w), config.rounding)
    q8_blocks = to_blocks(q8, config.block_size)
    # The image's mask covers padding lanes too: every block has exactly H high lanes,
    # every group exactly H*G/B.
    _, shape, blocks = read_image(q.packed)
    mask = unpack_blocks(config, blocks).mask
    groups = mask.reshape(mask.shape[:2] + (config.groups_per_block, config.group_size))
    assert (groups.sum(axis=-1) == config.high_per_group).all()
    # High lanes keep q8 and are the largest magnitudes of their group.
    magnitude = np.abs(q8_blocks).reshape(groups.shape)
    lowest_high = np.where(groups, magnitude, 1000).min(axis=-1)
    highest_low = np.where(groups, -1, magnitude).max(axis=-1)
    assert (lowest_high >= highest_low).all()
    assert np.array_equal(np.where(q.mask, q.w_int, 0), np.where(q.mask, from_reduction(q8, w.shape), 0))
    # Low lanes stay in the scheme's range.
    low = q.w_int[~q.mask]
    if config.scheme == "zero":
        assert (low == 0).all()
    elif config.scheme == "mip2q":
        magnitudes = np.abs(low)
        assert np.isin(magnitudes, [0, 1, 2, 4, 8, 16, 32, 64]).all()
    else:
        assert low.min(initial=0) >= -128 and low.max(initial=0) <= 112
    # The image decodes to exactly the same weights and mask.
    image_config, w_int, image_mask = image_to_weights(q.packed)
    assert image_config == config and shape == w.shape
    assert np.array_equal(w_int, q.w_int) and np.array_equal(image_mask, q.mask)


@pytest.mark.parametrize("scheme", STRUM_SCHEMES)
@pytest.mark.parametrize("block", [4, 8, 16, 32])
def test_all_high_reproduces_int8(scheme, block):
    w = _weights(block, (9, 5, 3, 3))
    int8 = quantize(w, StrumConfig(scheme="int8"))
    q = quantize(w, StrumConfig(scheme=scheme, block_size=block, high_lanes=block))
    assert np.array_equal(q.w_int, int8.w_int) and q.mask.all()
    assert np.array_equal(q.scale, int8.scale)


def test_dliq_block_of_equal_magnitudes():
    # A block of 16 lanes all at 1.0: the first 8 lanes are high (ties), the rest low.
    w = np.ones((1, 16))
    q = quantize(w, StrumConfig(scheme="dliq"))
    assert q.mask[0].tolist() == [True] * 8 + [False] * 8
    assert q.w_int[0].tolist() == [127] * 8 + [112] * 8     # 127/16 -> 8 -> clip 7 -> 112


def test_depthwise_kernel_is_one_padded_block():
    q = quantize(_weights(3, (32, 1, 3, 3)), StrumConfig())
    _, _, blocks = read_image(q.packed)
    assert blocks.shape == (32, 1, StrumConfig().block_bytes)
    assert q.mask.reshape(32, -1).sum(axis=1).max() <= 8


def test_reduction_order_is_input_channel_innermost():
    w = np.zeros((1, 16, 2, 1))
    w[0, :, 0, 0] = np.arange(1, 17)      # kernel position 0: 16 channels = block 0
    w[0, :, 1, 0] = 0.01
    q = quantize(w, StrumConfig(scheme="zero"))
    # Block 0 (kernel position 0) keeps its top 8 channels; block 1 keeps 8 of the 0.01s.
    assert q.mask[0, :, 0, 0].tolist() == [False] * 8 + [True] * 8
    assert q.mask[0, :, 1, 0].sum() == 8


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_reconstructs_and_counts_bits(scheme):
    w = _weights(7, (24, 40))
    q = quantize(w, StrumConfig(scheme=scheme))
    assert q.w_int.dtype == np.int16 and q.scale.dtype == np.float32 and q.mask.dtype == bool
    assert q.w_int.shape == w.shape == q.mask.shape and q.scale.shape == (24,)
    assert sqnr_db(w, q.dequantize()) > 8
    expected_bits = {"int8": 8, "int4": 4, "pot": 4, "int4-g16": 4 + 8 * 3 / 40,
                     "2:4": 10 * 2 / 4, "dliq": 15 * 8 * 3 / 40, "mip2q": 14 * 8 * 3 / 40,
                     "zero": 10 * 8 * 3 / 40}[scheme]
    assert q.bits_per_weight == pytest.approx(expected_bits)
    assert (q.packed is not None) == (scheme in STRUM_SCHEMES)


def test_baseline_ranges():
    w = _weights(11, (16, 64))
    assert np.abs(quantize(w, StrumConfig(scheme="int4")).w_int).max() == 7
    pot = quantize(w, StrumConfig(scheme="pot")).w_int
    assert np.isin(np.abs(pot), [0, 1, 2, 4, 8, 16, 32, 64]).all() and np.abs(pot).max() == 64
    two_four = quantize(w, StrumConfig(scheme="2:4"))
    assert (np.count_nonzero(two_four.mask.reshape(16, -1, 4), axis=-1) == 2).all()
    g16 = quantize(w, StrumConfig(scheme="int4-g16"))
    # Each group's weights are a 4-bit integer times one group multiplier in 1..255.
    groups = g16.w_int.reshape(16, 4, 16).astype(int)
    multiplier = np.gcd.reduce(np.abs(groups), axis=-1)
    assert (np.abs(groups) <= 7 * multiplier[..., None]).all() and multiplier.max() <= 255


def test_better_schemes_have_better_sqnr():
    w = _weights(5, (64, 288))
    sqnr = {s: sqnr_db(w, quantize(w, StrumConfig(scheme=s)).dequantize()) for s in SCHEMES}
    assert sqnr["int8"] > sqnr["dliq"] > sqnr["mip2q"] > sqnr["int4"]
    assert sqnr["int4-g16"] > sqnr["int4"]


@pytest.mark.parametrize("weights, message", [
    (np.array([[1.0, np.nan]]), "NaN or Inf"),
    (np.array([[1.0, np.inf]]), "NaN or Inf"),
    (np.zeros((0, 4)), "empty"),
    (np.ones(5), "at least 2 axes"),
    (np.array([["a", "b"]]), "real numbers"),
])
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message):
        quantize(weights, StrumConfig())


def test_too_long_reduction_is_refused():
    with pytest.raises(ConfigError, match="too narrow"):
        quantize(np.ones((1, 3000)), StrumConfig(acc_width=20))


def test_image_errors():
    image = quantize(_weights(1, (4, 32)), StrumConfig()).packed.tobytes()
    read_image(image)
    with pytest.raises(ImageError, match="magic"):
        read_image(b"NOTSTRUM" + image[8:])
    with pytest.raises(ImageError, match="version"):
        read_image(image[:8] + (FORMAT_VERSION + 1).to_bytes(2, "little") + image[10:])
    corrupt = bytearray(image)
    corrupt[len(image) // 2] ^= 1
    with pytest.raises(ImageError, match="checksum"):
        read_image(bytes(corrupt))
    with pytest.raises(ImageError, match="too short"):
        read_image(image[:5])
