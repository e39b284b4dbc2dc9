"""The rounding, selection and low-lane rules, on hand-made cases and exhaustive sweeps."""

import numpy as np
import pytest

from strum.quant.config import ConfigError, StrumConfig
from strum.quant.int8 import quantize_int8
from strum.quant.rounding import bit_length, round_float, round_shift, wrap_signed
from strum.quant.strum import (dliq_decode, dliq_encode, dliq_low, dliq_shift, mip2q_decode,
                               mip2q_encode, mip2q_magnitude, select_high, strum_weights)


@pytest.mark.parametrize("rounding, cases", [
    ("haz", {0.5: 1, -0.5: -1, 1.5: 2, 2.5: 3, -2.5: -3, 0.49: 0, -1.51: -2}),
    ("rne", {0.5: 0, -0.5: 0, 1.5: 2, 2.5: 2, -2.5: -2, 3.5: 4, -1.51: -2}),
])
def test_round_float_ties(rounding, cases):
    x = np.array(list(cases))
    assert round_float(x, rounding).tolist() == list(cases.values())


@pytest.mark.parametrize("rounding, cases", [
    # (x, shift): expected RND(x / 2**shift)
    ("haz", {(5, 1): 3, (-5, 1): -3, (10, 2): 3, (-10, 2): -3, (7, 1): 4, (-7, 2): -2, (9, 0): 9}),
    ("rne", {(5, 1): 2, (-5, 1): -2, (10, 2): 2, (-10, 2): -2, (7, 1): 4, (-7, 2): -2, (9, 0): 9}),
])
def test_round_shift_hand_cases(rounding, cases):
    x, shift = np.array(list(cases)).T
    assert round_shift(x, shift, rounding).tolist() == list(cases.values())


@pytest.mark.parametrize("rounding", ["haz", "rne"])
def test_round_shift_equals_float_rounding_exhaustively(rounding):
    # Every int8 value and every DLIQ shift: the integer rule is the float rule.
    x, shift = np.meshgrid(np.arange(-128, 128), np.arange(0, 5))
    assert np.array_equal(round_shift(x, shift, rounding), round_float(x / 2.0 ** shift, rounding))


def test_bit_length_exhaustive():
    m = np.arange(0, 1 << 13)
    assert bit_length(m).tolist() == [int(v).bit_length() for v in m]


@pytest.mark.parametrize("width", [8, 16, 32, 48])
def test_wrap_signed_matches_twos_complement(width):
    rng = np.random.default_rng(width)
    x = rng.integers(-(1 << 60), 1 << 60, 1000)
    expected = [((int(v) + (1 << (width - 1))) % (1 << width)) - (1 << (width - 1)) for v in x]
    assert wrap_signed(x, width).tolist() == expected
    edge = np.array([(1 << (width - 1)) - 1, 1 << (width - 1), -(1 << (width - 1)) - 1])
    assert wrap_signed(edge, width).tolist() == [(1 << (width - 1)) - 1, -(1 << (width - 1)),
                                                 (1 << (width - 1)) - 1]


def test_int8_per_channel_scale_and_zero_channel():
    w = np.array([[1.0, -2.0, 0.5, 0.0], [0, 0, 0, 0], [-3.0, 3.0, 1.5, 0.0117]])
    q8, scale = quantize_int8(w, "haz")
    assert scale.tolist() == [2 / 127, 1.0, 3 / 127]
    assert q8[0].tolist() == [64, -127, 32, 0]       # 63.5 rounds away from zero
    assert q8[1].tolist() == [0, 0, 0, 0]
    assert q8[2].tolist() == [-127, 127, 64, 0]
    assert quantize_int8(w, "rne")[0][0].tolist() == [64, -127, 32, 0]  # 63.5 -> 64 (even)
    tie = np.array([[127.0, 0.5, 2.5, -2.5]])                            # scale 1: exact ties
    assert quantize_int8(tie, "haz")[0].tolist() == [[127, 1, 3, -3]]
    assert quantize_int8(tie, "rne")[0].tolist() == [[127, 0, 2, -2]]


def test_selection_ties_go_to_the_lower_lane():
    q8 = np.array([[[5, -5, 5, 5, 1, -1, 0, 0]]])
    assert select_high(q8, 2, 8).astype(int).tolist() == [[[1, 1, 0, 0, 0, 0, 0, 0]]]
    assert select_high(q8, 4, 8).astype(int).tolist() == [[[1, 1, 1, 1, 0, 0, 0, 0]]]
    # Groups of 4: two per group, ties inside the group to its lower lane.
    assert select_high(q8, 4, 4).astype(int).tolist() == [[[1, 1, 0, 0, 1, 1, 0, 0]]]
    assert select_high(q8, 0, 8).sum() == 0 and select_high(q8, 8, 8).all()


def test_dliq_shift_and_values_by_hand():
    # Low lanes (mask False) hold 100, -127, 120, 3: m = 127, bitlen 7, e = 4.
    q8 = np.array([[[127, 100, -127, 120, 3, 126]]])
    mask = np.array([[[True, False, False, False, False, True]]])
    shift = dliq_shift(q8, mask)
    assert shift.tolist() == [[4]]
    q4 = dliq_low(q8, shift, "haz")
    # 100/16 = 6.25 -> 6; -127/16 = -7.94 -> -8; 120/16 = 7.5 -> 8 -> clipped 7; 3/16 -> 0
    assert q4[0, 0, 1:5].tolist() == [6, -8, 7, 0]
    w, codes, e = strum_weights(q8, mask, "dliq", "haz")
    assert w.tolist() == [[[127, 96, -128, 112, 0, 126]]]
    assert dliq_decode(codes, e[..., None])[~mask].tolist() == [96, -128, 112, 0]
    # m = 7 needs no shift; m = 8 needs one.
    for peak, expected in [(7, 0), (8, 1), (15, 1), (16, 2), (63, 3), (64, 4), (0, 0)]:
        assert dliq_shift(np.array([[[peak, 0]]]), np.array([[[False, True]]])).item() == expected


def test_dliq_codes_round_trip_every_value_and_shift():
    q4, shift = np.meshgrid(np.arange(-8, 8), np.arange(0, 5))
    assert np.array_equal(dliq_decode(dliq_encode(q4), shift), q4 << shift)
    assert (dliq_encode(q4) < 16).all()


def test_mip2q_rounding_table():
    expected = {0: 0, 1: 1, 2: 2, 3: 4, 5: 4, 6: 8, 11: 8, 12: 16, 24: 32, 47: 32, 48: 64,
                64: 64, 95: 64, 96: 64, 127: 64}
    assert mip2q_magnitude(np.array(list(expected))).tolist() == list(expected.values())


def test_mip2q_is_nearest_power_of_two_exhaustively():
    grid = np.array([0] + [2 ** p for p in range(7)])
    for m in range(128):
        distance = np.abs(grid - m)
        nearest = grid[distance == distance.min()].max()     # ties to the larger magnitude
        assert mip2q_magnitude(np.array([m])).item() == nearest, m


def test_mip2q_codes_round_trip_every_value():
    values = np.array([0] + [s * 2 ** p for p in range(7) for s in (1, -1)])
    codes = mip2q_encode(values)
    assert np.array_equal(mip2q_decode(codes), values)
    assert len(set(codes.tolist())) == len(values) and (codes < 16).all()
    assert mip2q_decode(np.arange(16)).tolist()[:8] == [0, 1, 2, 4, 8, 16, 32, 64]


@pytest.mark.parametrize("kwargs, message", [
    ({"scheme": "int3"}, "scheme"),
    ({"block_size": 12}, "block_size"),
    ({"high_lanes": 17}, "high_lanes"),
    ({"high_lanes": -1}, "high_lanes"),
    ({"group_size": 3}, "group_size"),
    ({"high_lanes": 6, "group_size": 4}, "group_size"),
    ({"rounding": "up"}, "rounding"),
    ({"acc_width": 4}, "acc_width"),
    ({"acc_width": 16, "max_reduction_length": 4}, "acc_width=16 is too narrow"),
    ({"max_reduction_length": 0}, "max_reduction_length"),
])
def test_config_refuses_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        StrumConfig(**kwargs)


def test_config_round_trips_through_json():
    config = StrumConfig(scheme="mip2q", block_size=32, high_lanes=8, group_size=8,
                         rounding="rne", acc_width=24)
    assert StrumConfig.from_json(config.to_json()) == config
    assert StrumConfig().group_size == 16
    with pytest.raises(ConfigError, match="unknown field"):
        StrumConfig.from_dict({"scheme": "dliq", "lanes": 3})


def test_accumulator_bound_is_exact():
    # 16-bit accumulator, int8 weights: 128*127*2 = 32512 fits, *3 does not.
    assert StrumConfig(scheme="int8", acc_width=16).reduction_limit == 2
    StrumConfig(scheme="int8", acc_width=16, max_reduction_length=2)
    with pytest.raises(ConfigError, match="at most 2 weights"):
        StrumConfig(scheme="int8", acc_width=16, max_reduction_length=3)
    # DLIQ can produce -128 (q4 = -8 at e = 4): its bound uses 128*128.
    assert StrumConfig(scheme="dliq", acc_width=16).reduction_limit == 1
