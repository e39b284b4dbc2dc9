"""Work a DPU row or the array edge does once: shared masks (quantizer, image) and the
DPU's row decoders and edge routers, bit for bit against the golden model."""

import dataclasses

import numpy as np
import pytest

from strum.hw.dpu import StrumDPU
from strum.hw.pe import StrumPE
from strum.quant.config import ConfigError, StrumConfig
from strum.quant.datasets import default_model_path
from strum.quant.errors import InputError
from strum.quant.image import ImageError, image_to_weights, read_image
from strum.quant.onnx_io import load_layers
from strum.quant.quantize import quantize
from strum.sim.layer import input_shape, prepare_layer, random_input, simulate_layer, simulate_model_layers

SMALL = StrumConfig(block_size=8, high_lanes=4)


def _naive_shared_mask(q8, B, H, G, K):
    """Loop reference: the H*G/B lanes of largest summed |q8| per group, ties to the lower lane."""
    channels, length = q8.shape
    nb = -(-length // B)
    padded = np.zeros((channels, nb * B), np.int64)
    padded[:, :length] = q8
    mask = np.zeros_like(padded, dtype=bool)
    per_group = H * G // B
    for first in range(0, channels, K):
        total = np.abs(padded[first:first + K]).sum(axis=0)
        for start in range(0, nb * B, G):
            lanes = sorted(range(G), key=lambda i: (-total[start + i], i))[:per_group]
            for i in lanes:
                mask[first:first + K, start + i] = True
    return mask[:, :length]


@pytest.mark.parametrize("scheme, K, G", [("dliq", 2, 8), ("mip2q", 3, 4), ("zero", 7, 8)])
def test_shared_masks_are_selected_jointly(scheme, K, G):
    rng = np.random.default_rng(K)
    weights = rng.laplace(size=(7, 15)).astype(np.float32)        # linear: 7 channels, 15 lanes
    weights[2, 4] = 0.0
    config = StrumConfig(scheme=scheme, block_size=8, high_lanes=4, group_size=G, mask_share=K)
    q = quantize(weights, config)
    q8 = np.clip(np.round(weights / (np.abs(weights).max(1, keepdims=True) / 127)), -127, 127)
    assert np.array_equal(q.mask, _naive_shared_mask(q8.astype(np.int64), 8, 4, G, K))
    # The image stores each mask once, and reads back to the same weights.
    alone = quantize(weights, config.replace(mask_share=1))
    blocks, groups = 2, -(-7 // K)
    assert (alone.packed.size - q.packed.size) == pytest.approx(
        (7 - groups) * blocks * config.mask_bytes, abs=64)         # headers differ a little
    assert q.bits_per_weight == pytest.approx(alone.bits_per_weight - (7 - groups) * blocks * 8 / weights.size)
    read_config, w_int, mask = image_to_weights(q.packed)
    assert read_config == config and np.array_equal(w_int, q.w_int) and np.array_equal(mask, q.mask)


def test_old_image_versions_are_refused_by_name():
    image = bytearray(quantize(np.ones((2, 16), np.float32), StrumConfig()).packed.tobytes())
    image[8:10] = (1).to_bytes(2, "little")
    with pytest.raises(ImageError, match="version is 1, this strum reads version 2 only"):
        read_image(bytes(image))


@pytest.mark.parametrize("bad", [0, 65, 2.0, True])
def test_bad_mask_share_is_refused(bad):
    with pytest.raises(ConfigError, match="mask_share"):
        StrumConfig(mask_share=bad)


@pytest.mark.parametrize("kwargs, message", [
    ({"shared": "edge"}, "shared must be one of"),
    ({"shared": "decode", "routing": "network"}, "needs routing 'onehot'"),
    ({"shared": "route", "variant": "dynamic"}, "option of the static PE"),
])
def test_bad_shared_options_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        StrumPE(config=SMALL, **kwargs)


@pytest.mark.parametrize("config", [
    StrumConfig(block_size=8, high_lanes=4, group_size=4),
    StrumConfig(scheme="mip2q", block_size=8, high_lanes=2),
    StrumConfig(scheme="zero", block_size=8, high_lanes=4),
])
@pytest.mark.parametrize("shared", ["decode", "route"])
def test_shared_pe_is_bit_exact_with_backpressure(config, shared):
    # The PE alone, fed what its row or the array edge would send (sim.vectors.shared_fields).
    from strum.sim.cosim import simulate_pe
    report = simulate_pe(config, vectors=400, seed=2, backend="amaranth", shared=shared,
                         backpressure=True)
    assert report["mismatches"] == 0 and report["results"] > 50


def test_route_sharing_needs_whole_mask_groups_per_tile():
    with pytest.raises(ConfigError, match="rows=3 must be a multiple of mask_share=2"):
        StrumDPU(config=SMALL.replace(mask_share=2), rows=3, cols=2, shared="route")


#: Small PEs keep the Verilator builds short; G = 2 gives two routers per block.
TINY = StrumConfig(block_size=4, high_lanes=2, group_size=2)


@pytest.mark.parametrize("shared, K", [("decode", 1), ("route", 2)])
def test_shared_dpu_runs_every_digits_layer_bit_exact(shared, K):
    config = TINY.replace(mask_share=K)
    reports = simulate_model_layers(default_model_path(), "all",
                                    {"config": config, "rows": 2, "cols": 3, "shared": shared},
                                    data="digits", progress=False)
    assert len(reports) == 5 and all(r["mismatches"] == 0 and r["outputs"] > 0 for r in reports)


def test_edge_routing_with_unshared_masks_is_caught():
    # Weights quantized with a mask per channel, routed as if rows shared them: wrong.
    layer = load_layers(default_model_path())[2]
    job = prepare_layer(layer, TINY, random_input(input_shape(layer), 1))
    job = dataclasses.replace(job, config=TINY.replace(mask_share=2))      # the build above
    report = simulate_layer(job, rows=2, cols=3, shared="route")
    assert report["mismatches"] > 0


def test_grouped_layer_that_splits_mask_groups_is_refused():
    layer = load_layers(default_model_path())[2]
    job = prepare_layer(layer, SMALL.replace(mask_share=5), random_input(input_shape(layer), 1))
    with pytest.raises(InputError, match="not a multiple of mask_share=5"):
        simulate_layer(job, rows=5, cols=1, shared="route")


# -- fixed high lanes through an input-channel permutation -----------------------------

def test_fixed_lanes_keep_the_strongest_channels_high_and_the_same_function():
    from strum.quant.fixed import fixed_lane_mask, plan_fixed, quantize_fixed
    from strum.quant.blocks import to_blocks, to_reduction

    rng = np.random.default_rng(4)
    config = StrumConfig(block_size=8, high_lanes=4, group_size=4)
    w1 = rng.normal(size=(16, 5)).astype(np.float32)             # layer 1: 5 -> 16
    w2 = rng.normal(size=(6, 16, 3)).astype(np.float32) * rng.uniform(0.1, 3, size=(1, 16, 1))
    plan = plan_fixed(w2, config)
    assert plan.permuted and sorted(plan.order) == list(range(16))
    energy = (w2.astype(np.float64) ** 2).sum(axis=(0, 2))
    high_channels = plan.order[np.resize(fixed_lane_mask(config), 16)]
    assert energy[high_channels].min() >= energy[np.setdiff1d(np.arange(16), high_channels)].max()
    # Permuting layer 1's outputs and layer 2's inputs alike computes the same function.
    x = rng.normal(size=(5, 7))
    hidden = np.maximum(w1 @ x, 0)[:, None, :].repeat(3, axis=1)      # [16, 3, 7]
    y = np.einsum("kcr,crp->kp", w2, hidden)
    y_perm = np.einsum("kcr,crp->kp", w2[:, plan.order], np.maximum(w1[plan.order] @ x, 0)[:, None, :].repeat(3, 1))
    assert np.allclose(y, y_perm)
    # The quantized weight, permuted, has the fixed lane pattern in every block, and
    # equals the quantizer's own rule on the permuted weights with that mask.
    q = quantize_fixed(w2, config, plan)
    blocks = to_blocks(to_reduction(np.take(q.mask, plan.order, axis=1)), 8)
    assert (blocks == fixed_lane_mask(config)).all()
    int8 = quantize(w2, StrumConfig(scheme="int8", block_size=8, high_lanes=8))
    assert np.array_equal(q.scale, int8.scale) and q.mask.mean() == 0.5
    assert np.array_equal(q.w_int[q.mask], int8.w_int[q.mask])          # high lanes: q8
    assert not np.array_equal(q.w_int[~q.mask], int8.w_int[~q.mask])    # low lanes: DLIQ
    # First layers (C < B) keep natural order.
    assert not plan_fixed(rng.normal(size=(4, 1, 3, 3)), config).permuted


def test_cli_quantizes_with_shared_masks(tmp_path, capsys):
    from strum.cli import main

    weights = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
    np.save(tmp_path / "w.npy", weights)
    outputs = {}
    for K in (1, 4):
        out = tmp_path / f"k{K}.npz"
        assert main(["quantize", str(tmp_path / "w.npy"), "-o", str(out), "--mask-share", str(K)]) == 0
        outputs[K] = np.load(out)
        assert main(["inspect", str(out)]) == 0
    mask = [outputs[4][name] for name in outputs[4].files if name.endswith("/mask")][0]
    assert (mask.reshape(2, 4, 32) == mask[::4][:, None]).all()           # one mask per 4 channels
    packed = [name for name in outputs[1].files if name.endswith("/packed")][0]
    assert outputs[4][packed].size < outputs[1][packed].size
    assert main(["quantize", str(tmp_path / "w.npy"), "-o", str(tmp_path / "bad.npz"),
                 "--mask-share", "0"]) == 2
    assert "mask_share must be an integer from 1 to 64, not 0" in capsys.readouterr().err


def test_eval_scheme_spec_names_the_mask_share():
    from strum.quant.evaluate import parse_scheme, scheme_label

    config = parse_scheme("dliq:h8:k4")
    assert config.mask_share == 4 and scheme_label(config) == "dliq:h8:k4"
    with pytest.raises(ConfigError, match="mask_share"):
        parse_scheme("dliq:k0")
