"""Full-int8 quantization from every kind of model, and the models it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from tinydeploy import tflite
from tinydeploy.data import Samples
from tinydeploy.errors import InputError, ModelError
from tinydeploy.evaluate import evaluate
from tinydeploy.loading import LoadedModel, classify_tflite, load_model
from tinydeploy.quantize import RANDOM_CALIB_WARNING, quantize

from paths import MLPERF


def test_keras_model_becomes_full_int8_with_int8_io(digits_quantized):
    q = digits_quantized
    assert q.kind == "int8" and classify_tflite(q.tflite) == "int8"
    assert not q.skipped and q.calib_samples == 200 and q.warnings == []
    (inp,), (out,) = q.inputs, q.outputs
    assert (inp.dtype, inp.shape) == ("int8", (1, 8, 8, 1))
    # Inputs are pixels in [0, 1]: the calibrated range maps 0 -> -128 and 1 -> 127.
    assert inp.zero_point == -128 and inp.scale == pytest.approx(1 / 255, rel=1e-3)
    assert (out.dtype, out.scale, out.zero_point) == ("int8", 1 / 256, -128)  # softmax's fixed range


def weight_scales(data: bytes, opcode: str) -> list[int]:
    """How many scales each ``opcode`` op's weight tensor has (1 = per-tensor)."""
    graph = tflite.parse(data).main
    return [graph.tensors[op.inputs[1]].quantization.scale.size
            for op in graph.operators if op.opcode == opcode]


def test_conv_weights_are_per_channel_dense_weights_per_tensor(converted_digits):
    assert weight_scales(converted_digits, "CONV_2D") == [8, 16]  # one scale per output channel
    # Per-channel FULLY_CONNECTED runs wrong or not at all on TFLM before late 2024.
    assert weight_scales(converted_digits, "FULLY_CONNECTED") == [1]


def test_batch_is_fixed_to_one(converted_digits):
    # A dynamic batch would have added SHAPE/STRIDED_SLICE/PACK in front of the Flatten.
    assert tflite.parse(converted_digits).op_names == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED",
                                                        "SOFTMAX"]


def test_io_float_keeps_float_inputs_and_outputs(sine_model, sine_calib, sine_eval):
    q = quantize(sine_model, sine_calib, io="float")
    assert q.kind == "int8"
    assert [t.dtype for t in q.inputs + q.outputs] == ["float32", "float32"]
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(tflite.parse(q.tflite).op_names)
    assert evaluate(sine_model, q.tflite, sine_eval).snr_db > 25  # float samples go in as they are


def test_calib_samples_caps_the_set_and_too_few_warn_and_nothing_is_printed(sine_model, sine_calib,
                                                                          capfd):
    q = quantize(sine_model, sine_calib, calib_samples=5)
    assert q.calib_samples == 5 and q.calib_source == sine_calib.source
    assert any("only 5 calibration samples" in w for w in q.warnings)
    assert capfd.readouterr() == ("", "")  # TensorFlow's log lines and Keras' export chatter


def test_random_calibration_warns_loudly(sine_model):
    q = quantize(sine_model, None, random_calib=True, calib_samples=20)
    assert q.kind == "int8" and q.calib_source == "random"
    assert q.warnings == [RANDOM_CALIB_WARNING] and "meaningless" in RANDOM_CALIB_WARNING


def test_no_calibration_data_is_a_clear_error(sine_model):
    with pytest.raises(InputError, match="needs calibration data.*--calib"):
        quantize(sine_model, None)


def test_calibration_data_of_the_wrong_shape_names_both_shapes(digits_model, sine_calib):
    with pytest.raises(InputError, match=r"have shape \(1,\) but the model input is \(8, 8, 1\)"):
        quantize(digits_model, sine_calib)


def test_unknown_io_type(sine_model, sine_calib):
    with pytest.raises(InputError, match="--io int8 or --io float"):
        quantize(sine_model, sine_calib, io="uint8")


def test_full_int8_tflite_is_used_as_it_is():
    model = load_model(MLPERF / "ad01_int8.tflite")
    q = quantize(model, None)
    assert q.skipped and q.tflite == model.tflite and q.warnings == []
    assert (q.inputs[0].dtype, q.inputs[0].zero_point) == ("int8", 89)
    assert q.inputs[0].scale == pytest.approx(0.391015, rel=1e-5)


def test_full_int8_tflite_with_io_float_warns_that_io_stays(digits_int8_path):
    q = quantize(load_model(digits_int8_path), None, io="float")
    assert q.skipped and "already full-int8" in q.warnings[0]


def test_float_tflite_is_quantized_with_calibration_data(digits_float_tflite, digits_calib,
                                                         converted_digits):
    q = quantize(load_model(digits_float_tflite), digits_calib)
    assert q.kind == "int8" and not q.skipped
    assert weight_scales(q.tflite, "FULLY_CONNECTED") == [1]
    assert weight_scales(q.tflite, "CONV_2D") == [8, 16]
    # Same calibration data, same ranges as the conversion from Keras.
    keras_way = tflite.parse(converted_digits).main
    assert q.inputs[0].scale == pytest.approx(keras_way.input_tensors()[0].scale)
    assert q.outputs[0].zero_point == keras_way.output_tensors()[0].zero_point


def test_float_tflite_without_calibration_data_is_refused(digits_float_tflite):
    with pytest.raises(InputError, match="float .tflite digits_float to int8 needs calibration data"):
        quantize(load_model(digits_float_tflite), None)


def test_hybrid_tflite_is_refused_with_the_reason(digits_hybrid_tflite, digits_calib):
    with pytest.raises(ModelError, match="dynamic-range \\(hybrid\\).*no kernels") as excinfo:
        quantize(load_model(digits_hybrid_tflite), digits_calib)
    assert "Keras/SavedModel" in excinfo.value.fix


def test_saved_model_quantizes_like_the_keras_model(digits_saved_model, digits_calib,
                                                    converted_digits):
    q = quantize(load_model(digits_saved_model), digits_calib)
    assert q.kind == "int8"
    assert tflite.parse(q.tflite).op_names == tflite.parse(converted_digits).op_names


def test_op_without_int8_kernel_is_named(tmp_path):
    """TFLite has no int8 SIN: the converter leaves it in float, and quantize says which op."""
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3)(keras.layers.Lambda(keras.ops.sin)(inputs))
    model = LoadedModel(kind="keras", name="with_sin", path=tmp_path / "with_sin.keras",
                        input_shapes=[(4,)], keras_model=keras.Model(inputs, outputs),
                        keras_flavor="keras")
    with pytest.raises(ModelError, match="with_sin gave a mixed model, not full-int8: SIN stayed "
                                         "float") as excinfo:
        quantize(model, Samples(np.linspace(-1, 1, 40, dtype=np.float32).reshape(10, 4), None, "x"))
    assert "\n" not in str(excinfo.value)


def test_open_input_axes_are_fixed_by_the_calibration_samples(tmp_path):
    import keras

    inputs = keras.Input((None, 4))
    outputs = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(2)(inputs))
    model = LoadedModel(kind="keras", name="open", path=tmp_path / "open.keras",
                        input_shapes=[(-1, 4)], keras_model=keras.Model(inputs, outputs),
                        keras_flavor="keras")
    calib = Samples(np.random.default_rng(0).random((10, 6, 4), np.float32), None, "rng")
    q = quantize(model, calib)
    assert q.kind == "int8" and q.inputs[0].shape == (1, 6, 4)
    with pytest.raises(InputError, match="unknown size"):
        quantize(model, None, random_calib=True)


def test_other_quantized_kinds_are_refused():
    model = load_model(MLPERF / "ad01_int8.tflite")
    model.tflite_kind = "int16"  # as classify_tflite says of a 16x8-quantized model
    with pytest.raises(ModelError, match="of kind 'int16'; tinydeploy deploys full-int8"):
        quantize(model, Samples(np.zeros((2, 640), np.float32), None, "zeros"))


@pytest.mark.slow
def test_keras2_h5_that_keras3_rejects_loads_with_tf_keras_and_converts(keras2_depthwise_h5):
    model = load_model(keras2_depthwise_h5)
    assert (model.kind, model.keras_flavor, model.input_shape) == ("keras", "tf_keras", (12, 12, 3))
    q = quantize(model, None, random_calib=True, calib_samples=4)
    assert q.kind == "int8"
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= set(tflite.parse(q.tflite).op_names)
