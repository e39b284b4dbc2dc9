"""The integer reference: conv and linear against naive loops, patches against conv, wrap."""

import itertools

import numpy as np
import pytest

from strum.quant.blocks import to_reduction
from strum.quant.reference import conv, conv_patches, dot, linear


def naive_conv(x, w, stride, pads, dilation, groups):
    """Python loops, ONNX Conv semantics; pads as ((begin, end), ...)."""
    batch = x.shape[0]
    out_channels, group_channels = w.shape[:2]
    kernel = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    out = [(xp.shape[2 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(len(kernel))]
    y = np.zeros((batch, out_channels) + tuple(out), np.int64)
    for n, k in itertools.product(range(batch), range(out_channels)):
        g = k // (out_channels // groups)
        for o in itertools.product(*map(range, out)):
            total = 0
            for c, tap in itertools.product(range(group_channels), itertools.product(*map(range, kernel))):
                at = tuple(o[i] * stride[i] + tap[i] * dilation[i] for i in range(len(kernel)))
                total += int(xp[(n, g * group_channels + c) + at]) * int(w[(k, c) + tap])
            y[(n, k) + o] = total
    return y


def random_conv_case(rng):
    dims = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 2, 3]))
    group_channels = int(rng.integers(1, 4))
    out_channels = groups * int(rng.integers(1, 3))
    kernel = tuple(int(v) for v in rng.integers(1, 4, dims))
    spatial = tuple(int(v) for v in rng.integers(5, 9, dims))
    stride = tuple(int(v) for v in rng.integers(1, 3, dims))
    dilation = tuple(int(v) for v in rng.integers(1, 3, dims))
    pads = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (dims, 2)))
    x = rng.integers(-128, 128, (2, groups * group_channels) + spatial)
    w = rng.integers(-128, 129, (out_channels, group_channels) + kernel)
    return x, w, stride, pads, dilation, groups


@pytest.mark.parametrize("seed", range(25))
def test_conv_matches_naive_loops(seed):
    x, w, stride, pads, dilation, groups = random_conv_case(np.random.default_rng(seed))
    onnx_pads = [p[0] for p in pads] + [p[1] for p in pads]
    expected = naive_conv(x, w, stride, pads, dilation, groups)
    got = conv(x, w, 32, stride=stride, padding=onnx_pads, dilation=dilation, groups=groups)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("seed", range(25))
def test_patches_follow_the_weight_reduction_order(seed):
    x, w, stride, pads, dilation, groups = random_conv_case(np.random.default_rng(100 + seed))
    onnx_pads = [p[0] for p in pads] + [p[1] for p in pads]
    patches, out = conv_patches(x, w.shape[2:], stride=stride, padding=onnx_pads,
                                dilation=dilation, groups=groups)
    vectors = to_reduction(w).reshape(groups, w.shape[0] // groups, -1)
    from_patches = np.einsum("ngpl,gkl->ngkp", patches, vectors).reshape((x.shape[0], w.shape[0]) + out)
    assert np.array_equal(from_patches, conv(x, w, 48, stride=stride, padding=onnx_pads,
                                             dilation=dilation, groups=groups))


def test_depthwise_and_pointwise():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (1, 6, 7, 7))
    depthwise = rng.integers(-127, 128, (6, 1, 3, 3))
    got = conv(x, depthwise, 32, padding=1, groups=6)
    assert np.array_equal(got, naive_conv(x, depthwise, (1, 1), ((1, 1), (1, 1)), (1, 1), 6))
    pointwise = rng.integers(-127, 128, (4, 6, 1, 1))
    assert np.array_equal(conv(x, pointwise, 32)[0, :, 2, 3], pointwise[:, :, 0, 0] @ x[0, :, 2, 3])


def test_linear_and_dot_wrap_at_the_accumulator_width():
    x = np.full((1, 4), -128)
    w = np.full((2, 4), -128)
    assert linear(x, w, 32).tolist() == [[65536, 65536]]
    assert linear(x, w, 16).tolist() == [[0, 0]]                 # 65536 wraps to 0 in 16 bits
    assert dot(np.full(3, 127), np.full(3, 127), 16).item() == 48387 - 65536
    assert linear(x, w, 17).tolist() == [[-65536, -65536]]       # 17-bit signed tops out at 65535


@pytest.mark.parametrize("x, message", [
    (np.array([[128, 0]]), "-128..127"),
    (np.array([[0.5, 1.0]]), "integers"),
])
def test_activations_are_checked(x, message):
    with pytest.raises(ValueError, match=message):
        linear(x, np.ones((1, 2), int), 32)


def test_shape_errors():
    with pytest.raises(ValueError, match="groups=2"):
        conv(np.zeros((1, 3, 5, 5), int), np.zeros((4, 3, 3, 3), int), 32, groups=2)
    with pytest.raises(ValueError, match="does not fit input"):
        conv(np.zeros((1, 1, 2, 2), int), np.zeros((1, 1, 3, 3), int), 32)
    with pytest.raises(ValueError, match="features"):
        linear(np.zeros((1, 3), int), np.zeros((2, 4), int), 32)
