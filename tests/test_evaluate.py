"""The accuracy report: float against int8 as TFLM computes it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinydeploy import tflite
from tinydeploy.data import Samples
from tinydeploy.evaluate import evaluate, micro_outputs, quantize_input
from tinydeploy.loading import load_model


@pytest.fixture(scope="module")
def digits_report(digits_model, converted_digits, digits_eval):
    return evaluate(digits_model, converted_digits, digits_eval)


@pytest.fixture(scope="module")
def sine_report(sine_model, converted_sine, sine_eval):
    return evaluate(sine_model, converted_sine, sine_eval)


def test_digits_int8_is_within_one_point_of_float(digits_report):
    r = digits_report
    assert (r.task, r.samples, r.reference) == ("classification", 360, "Keras")
    assert r.float_accuracy > 0.95
    assert abs(r.int8_accuracy - r.float_accuracy) <= 0.01
    assert r.top1_agreement >= 0.98
    assert r.rmse is None and r.snr_db is None


def test_report_carries_the_io_quantization_of_the_int8_model(digits_report, converted_digits):
    graph = tflite.parse(converted_digits).main
    for reported, tensor in ((digits_report.input, graph.input_tensors()[0]),
                             (digits_report.output, graph.output_tensors()[0])):
        assert (reported.scale, reported.zero_point) == (tensor.scale, tensor.zero_point)
        assert reported.dtype == "int8"


def test_report_serializes_for_json_markdown_and_terminal(digits_report):
    data = json.loads(json.dumps(digits_report.to_dict()))
    assert {"task", "float_accuracy", "int8_accuracy", "top1_agreement", "input", "output"} <= set(data)
    assert "rmse" not in data  # metrics that do not apply are left out
    md = digits_report.to_markdown()
    assert f"| float accuracy | {digits_report.float_accuracy:.2%} |" in md
    assert "| input | int8 | [1, 8, 8, 1] |" in md
    line = digits_report.summary()
    assert "top-1 agreement" in line and "\n" not in line and "360" in line


def test_sine_regression_metrics(sine_report):
    r = sine_report
    assert r.task == "regression" and r.float_accuracy is None
    assert 0 < r.mae <= r.rmse <= r.max_error < 0.1
    assert r.snr_db > 25  # int8 keeps the curve: error power < 1/300 of the signal's
    assert r.float_target_rmse < 0.05 and r.int8_target_rmse < 0.06  # both follow sin(x)
    assert "SNR int8 vs float" in r.summary()


def test_int8_outputs_are_what_tflite_micro_computes(converted_digits, digits_eval):
    """The report's int8 side is TFLM's interpreter fed inputs quantized like TFLM's QUANTIZE."""
    from tflite_micro.python.tflite_micro import runtime

    ip = runtime.Interpreter.from_bytes(converted_digits)
    sample = digits_eval.x[:1]
    raw = micro_outputs(converted_digits, sample, dequantize=False)
    ip.set_input(quantize_input(sample, ip.get_input_details(0)), 0)
    ip.invoke()
    assert raw.dtype == np.int8 and np.array_equal(raw, ip.get_output(0))
    scale, zp = 1 / 256, -128
    assert np.allclose(micro_outputs(converted_digits, sample), (raw.astype(np.float32) - zp) * scale)


def test_input_quantization_rounds_half_away_from_zero_and_saturates():
    details = {"dtype": np.int8, "quantization_parameters": {"scales": np.array([0.5]),
                                                             "zero_points": np.array([1])}}
    x = np.array([0.25, -0.25, 0.75, 1000.0, -1000.0])
    assert quantize_input(x, details).tolist() == [2, 0, 3, 127, -128]


def test_already_int8_tflite_reports_int8_accuracy_only(digits_int8_path, digits_eval, digits_report):
    r = evaluate(load_model(digits_int8_path), digits_int8_path.read_bytes(), digits_eval)
    assert r.reference is None and r.float_accuracy is None and r.top1_agreement is None
    assert r.int8_accuracy == digits_report.int8_accuracy


def test_float_tflite_reference_runs_without_default_delegates(digits_float_tflite, converted_digits,
                                                               digits_eval, digits_report):
    r = evaluate(load_model(digits_float_tflite), converted_digits, digits_eval)
    assert r.reference == "the float .tflite"
    assert r.float_accuracy == pytest.approx(digits_report.float_accuracy, abs=1 / 360)


def test_one_hot_labels_count_like_class_indices(digits_model, converted_digits, digits_eval,
                                                 digits_report):
    one_hot = np.eye(10, dtype=np.float32)[digits_eval.y]
    r = evaluate(digits_model, converted_digits, Samples(digits_eval.x, one_hot, "one-hot"))
    assert r.int8_accuracy == digits_report.int8_accuracy


def test_saved_model_reference_is_its_serving_signature(digits_saved_model, converted_digits,
                                                        digits_eval, digits_report):
    r = evaluate(load_model(digits_saved_model), converted_digits, digits_eval)
    assert r.reference == "the SavedModel"
    assert r.float_accuracy == digits_report.float_accuracy


def test_labels_of_the_wrong_shape_are_refused(digits_model, converted_digits, digits_eval):
    from tinydeploy.errors import InputError

    bad = Samples(digits_eval.x[:4], np.zeros((4, 3)), "bad")
    with pytest.raises(InputError, match=r"labels have shape \(3,\) per sample"):
        evaluate(digits_model, converted_digits, bad)
