"""PE test vectors: golden results, image fields, layout fields and payload packing."""

import numpy as np
import pytest

import strum.sim.vectors as vectors_module
from strum.hw.layouts import pe_block_layout
from strum.quant.config import StrumConfig
from strum.quant.image import read_image
from strum.quant.quantize import quantize
from strum.sim.amaranth_backend import pack_payloads
from strum.sim.vectors import blocks_from_image, golden_results, layout_fields, random_blocks


def naive_results(vectors):
    out, acc = [], 0
    for act, weights, first, last in zip(vectors.act, vectors.weights, vectors.first, vectors.last):
        dot = sum(int(a) * int(w) for a, w in zip(act, weights))
        acc = dot if first else acc + dot
        if last:
            width = vectors.config.acc_width
            out.append((acc + 2 ** (width - 1)) % 2 ** width - 2 ** (width - 1))
    return out


@pytest.mark.parametrize("scheme", ["dliq", "mip2q", "zero", "int8"])
def test_random_blocks_are_golden_and_reproducible(scheme):
    config = StrumConfig(scheme=scheme, acc_width=20)
    a = random_blocks(config, 300, seed=4, mean_blocks=8)
    b = random_blocks(config, 300, seed=4, mean_blocks=8)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("act", "weights", "expected"))
    assert len(a) == 300 and a.act.shape == a.weights.shape == (300, 16)
    assert a.act.min() >= -128 and a.act.max() <= 127
    assert a.first[0] and a.last[-1] and np.array_equal(a.last[:-1], a.first[1:])
    assert a.expected.tolist() == naive_results(a)
    assert (a.weights == 0).all(axis=1).any(), "some all-zero blocks"
    if scheme != "int8":
        assert (a.mask.sum(axis=1) == 8).all()
        assert a.high.shape == (300, 8) and a.low.shape == (300, 8)


def test_random_blocks_differ_by_seed():
    config = StrumConfig()
    assert not np.array_equal(random_blocks(config, 50, seed=1).act, random_blocks(config, 50, seed=2).act)


def test_random_blocks_hold_the_quantizer_weights():
    # The StruM weights come back from the memory image and equal quantize()'s w_int.
    config = StrumConfig(scheme="dliq")
    v = random_blocks(config, 64, seed=9)
    np.testing.assert_array_equal(np.where(v.mask, v.weights, 0)[v.mask], v.high.ravel())
    assert (np.abs(v.weights) <= 128).all()


def test_blocks_from_image_reads_through_unpack_blocks(monkeypatch):
    config = StrumConfig(scheme="mip2q")
    weights = np.random.default_rng(0).standard_t(3, size=(4, 32))
    quantized = quantize(weights, config)
    _, _, image = read_image(quantized.packed)
    calls = []
    real = vectors_module.unpack_blocks
    monkeypatch.setattr(vectors_module, "unpack_blocks", lambda *a: calls.append(1) or real(*a))
    act = np.ones((8, 16), dtype=np.int64)
    first = np.array([1, 0, 1, 0, 1, 0, 1, 0], bool)
    v = blocks_from_image(config, image.reshape(8, -1), act, first, np.roll(first, -1))
    assert calls == [1]
    np.testing.assert_array_equal(v.weights.reshape(4, 32), quantized.w_int)
    np.testing.assert_array_equal(v.expected, quantized.w_int.sum(axis=1))
    with pytest.raises(ValueError, match=r"act must have shape \(8, 16\)"):
        blocks_from_image(config, image.reshape(8, -1), act[:, :8], first, first)


def test_golden_results_keep_accumulating_without_first():
    config = StrumConfig(acc_width=8)
    act = np.ones((4, 2), dtype=np.int64)
    weights = np.array([[50, 50], [10, 0], [1, 1], [3, 4]])
    first = np.array([True, False, True, False])
    last = np.array([False, True, True, True])
    # 100+10 = 110; then 2; then 2+7 = 9 (a 'last' does not restart)
    assert golden_results(config, act, weights, first, last).tolist() == [110, 2, 9]
    weights[0] = [100, 100]
    assert golden_results(config, act, weights, first, last)[0] == 210 - 256


@pytest.mark.parametrize("scheme,variant", [("dliq", "static"), ("mip2q", "dynamic"), ("zero", "static"),
                                            ("int8", "int8"), ("dliq", "dynamic")])
def test_layout_fields_match_the_layout_and_pack_like_amaranth(scheme, variant):
    config = StrumConfig(scheme=scheme, block_size=8, high_lanes=4)
    v = random_blocks(config, 20, seed=3)
    layout = pe_block_layout(config, variant)
    fields = layout_fields(v, variant)
    assert list(fields) == [name for name, _ in layout]
    words = pack_payloads(layout, fields)
    for i in range(len(v)):
        record = {name: (fields[name][i].tolist() if fields[name].ndim == 2 else int(fields[name][i]))
                  for name in fields}
        assert words[i] == layout.const(record).as_value().value


def test_dynamic_slots_decode_to_the_weights():
    config = StrumConfig(scheme="dliq")
    v = random_blocks(config, 100, seed=6)
    slots = layout_fields(v, "dynamic")["weights"]
    np.testing.assert_array_equal(slots[v.mask], v.weights[v.mask])
    codes = np.where(v.mask, 0, slots)
    assert ((codes >= 0) & (codes < 16)).all()
    from strum.quant.strum import dliq_decode
    np.testing.assert_array_equal(np.where(v.mask, v.weights, dliq_decode(codes, v.shift[:, None])), v.weights)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be a positive integer, not 0"):
        random_blocks(StrumConfig(), 0, seed=1)
    with pytest.raises(ValueError, match="variant must be int8, static or dynamic, not 'x'"):
        layout_fields(random_blocks(StrumConfig(), 2, seed=1), "x")
    with pytest.raises(ValueError, match="do not match the layout"):
        pack_payloads(pe_block_layout(StrumConfig()), {"act": np.zeros((1, 16))})
