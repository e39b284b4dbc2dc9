"""The DPU's depthwise mapping (``activations="per_pe"``): every row busy, bit for bit."""

import json

import numpy as np
import pytest

from strum.cli import main
from strum.hw.dpu import StrumDPU, dpu_step_layout
from strum.quant.config import ConfigError, StrumConfig
from strum.quant.datasets import default_model_path
from strum.quant.onnx_io import Layer, load_layers
from strum.sim.layer import input_shape, prepare_layer, random_input, schedule, simulate_layer

#: B = 8 and a 3 x 2 array keep the Verilator builds short.
SMALL = StrumConfig(block_size=8, high_lanes=4)


def _depthwise(channels, multiplier, kernel=(3, 3), seed=0, stride=1):
    """A random depthwise conv: ``channels`` groups of ``multiplier`` output channels."""
    weight = np.random.default_rng(seed).normal(size=(channels * multiplier, 1) + kernel)
    return Layer(name="dw", op="Conv", weight=weight,
                 attrs={"group": channels, "strides": (stride,) * len(kernel),
                        "pads": (1,) * 2 * len(kernel), "dilations": (1,) * len(kernel),
                        "kernel_shape": kernel})


@pytest.mark.parametrize("kwargs, message", [
    ({"activations": "per_row"}, "activations must be one of"),
    ({"activations": "per_pe", "shared": "route"}, "does not go with shared='route'"),
])
def test_bad_activations_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        StrumDPU(config=SMALL, **kwargs)


def test_per_pe_step_is_r_times_as_wide_in_activations():
    per_column = dpu_step_layout(SMALL, None, 3, 2)
    per_pe = dpu_step_layout(SMALL, None, 3, 2, activations="per_pe")
    assert per_pe.size - per_column.size == (3 - 1) * 2 * 8 * 8


def test_depthwise_schedule_fills_every_row():
    layer = load_layers(default_model_path())[1]                     # dwconv2: 12 x 1 x 3 x 3
    job = prepare_layer(layer, SMALL, random_input(input_shape(layer), 0))
    old, new = schedule(job, 4, 4), schedule(job, 4, 4, activations="per_pe")
    # Per column, a tile holds one channel of its group; per PE, four channels.
    assert ((old.channel >= 0).sum(1) == 1).all() and ((new.channel >= 0).sum(1) == 4).all()
    assert old.steps == 4 * new.steps
    # Every output exactly once, and the golden values come back through the tiles.
    tiles = np.zeros((new.tiles, 4, 4), np.int64)
    rows = np.broadcast_to(new.channel[:, :, None], tiles.shape)
    cols = np.broadcast_to(new.position[:, None, :], tiles.shape)
    real = (rows >= 0) & (cols >= 0)
    assert real.sum() == job.expected.size
    tiles[real] = job.expected[rows[real], cols[real]]
    assert np.array_equal(new.scatter(job, tiles), job.expected)
    # PE (r, c) gets the activations of channel r at position c.
    act = new.payload["act[2][1]"].reshape(new.tiles, job.blocks_per_output, 8)
    tile = 5
    assert np.array_equal(act[tile], job.patches[new.channel[tile, 2], new.position[tile, 1]])


def test_cli_digits_depthwise_layer_on_the_depthwise_array(tmp_path, capsys):
    # The short-reduction policy keeps the 3x3 depthwise int8: it runs on the int8 array.
    report = tmp_path / "r.json"
    assert main(["simulate", "layer", str(default_model_path()), "--layer", "/dwconv2/Conv",
                 "--data", "digits", "--batch", "2", "--rows", "3", "--cols", "2", "--block", "8",
                 "--depthwise-array", "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["mismatches"] == 0 and data["outputs"] == 12 * 4 * 4 * 2       # 8x8 digits, stride 2
    assert data["activations"] == "per_pe" and data["short_reduction"]
    assert data["array_utilization"] > 0.95          # 3 of 3 rows (one row: below 1/3)
    assert data["lane_utilization"] == pytest.approx(9 / 16)
    assert data["utilization"] == pytest.approx(data["array_utilization"] * data["lane_utilization"])
    assert "array 0.9" in capsys.readouterr().out


def test_random_depthwise_layer_strum_on_verilator_with_backpressure():
    # Two output channels per group (a channel multiplier of 2) and a tile edge: rows of
    # one tile mix groups; StruM weights on the static PE (no short policy here), 1-D kernel.
    layer = _depthwise(7, 2, kernel=(5,), seed=3, stride=2)
    job = prepare_layer(layer, SMALL, random_input(input_shape(layer), 4))
    report = simulate_layer(job, rows=3, cols=1, activations="per_pe", seed=2)
    assert report["mismatches"] == 0 and report["outputs"] == 14 * 65       # 131 inputs, pads 1
    assert report["array_utilization"] > 0.5         # backpressure stalls count against it


def test_tiny_depthwise_layer_on_amaranth():
    config = StrumConfig(scheme="mip2q", block_size=4, high_lanes=2)
    layer = _depthwise(3, 1, seed=1)
    job = prepare_layer(layer, config, random_input((1, 3, 3, 3), 6))
    report = simulate_layer(job, rows=2, cols=2, backend="amaranth", activations="per_pe", seed=1)
    assert report["mismatches"] == 0 and report["outputs"] == 27


def test_grouped_conv_with_row_decoders_on_amaranth():
    # Two input and two output channels per group on four rows: a tile holds two groups,
    # and the rows' shared mask decoders serve PEs with different activations.
    config = StrumConfig(block_size=4, high_lanes=2)
    weight = np.random.default_rng(0).normal(size=(6, 2, 3, 3))
    layer = Layer(name="g", op="Conv", weight=weight,
                  attrs={"group": 3, "strides": (1, 1), "pads": (1, 1, 1, 1),
                         "dilations": (1, 1), "kernel_shape": (3, 3)})
    job = prepare_layer(layer, config, random_input((1, 6, 3, 3), 1))
    report = simulate_layer(job, rows=4, cols=2, backend="amaranth", activations="per_pe",
                            shared="decode", routing="onehot")
    assert report["mismatches"] == 0 and report["outputs"] == 54


@pytest.mark.parametrize("changes, message", [
    ({"kind": "pe", "activations": "per_pe"}, "option of the DPU"),
    ({"kind": "dpu", "activations": "per_pe", "shared": "route"}, "does not go with"),
    ({"kind": "dpu", "activations": "all"}, "activations must be one of"),
])
def test_synth_design_checks_activations(changes, message):
    from strum.synth.designs import Design
    from strum.synth.tools import SynthError

    with pytest.raises((ConfigError, SynthError), match=message):
        Design(config=SMALL, **changes)
    design = Design(kind="dpu", config=SMALL, rows=2, cols=2, activations="per_pe")
    assert design.name.endswith("-perpe") and design.to_dict()["activations"] == "per_pe"
    assert "activations" not in Design(kind="dpu", config=SMALL).to_dict()
