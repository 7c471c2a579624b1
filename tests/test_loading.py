"""Loading models (every kind, every way a file can be wrong) and loading samples."""

from __future__ import annotations

import numpy as np
import pytest

from tinydeploy.data import load_samples
from tinydeploy.errors import InputError, ModelError, TinydeployError
from tinydeploy.loading import classify_tflite, load_model

from paths import EXAMPLES, MLPERF


def one_line_error(excinfo) -> str:
    """The message a user sees; it must be one line with problem and fix."""
    text = str(excinfo.value)
    assert "\n" not in text and excinfo.value.fix, text
    return text


# --------------------------------------------------------------------------- models that load

def test_keras3_file_loads_with_its_input_shape(digits_model):
    assert (digits_model.kind, digits_model.keras_flavor) == ("keras", "keras")
    assert digits_model.name == "digits"
    assert digits_model.input_shapes == [(8, 8, 1)]
    assert digits_model.input_shape == (8, 8, 1)


def test_keras2_h5_that_keras3_reads_loads_with_keras3(keras2_dense_h5):
    model = load_model(keras2_dense_h5)
    assert (model.kind, model.keras_flavor, model.input_shape) == ("keras", "keras", (16,))


@pytest.mark.parametrize("name, kind, shape", [
    ("ad01_int8.tflite", "int8", (640,)),
    ("vww_96_int8.tflite", "int8", (96, 96, 3)),
    ("pretrainedResnet_quant.tflite", "int8", (32, 32, 3)),
])
def test_tflite_loads_without_tensorflow_and_is_classified(name, kind, shape):
    model = load_model(MLPERF / name)
    assert (model.kind, model.tflite_kind, model.input_shape) == ("tflite", kind, shape)
    assert model.tflite == (MLPERF / name).read_bytes()
    assert model.name == name.removesuffix(".tflite")


def test_float_tflite_loads_and_is_classified(digits_float_tflite):
    model = load_model(digits_float_tflite)
    assert (model.kind, model.tflite_kind, model.input_shape) == ("tflite", "float", (8, 8, 1))


def test_classify_tells_float_hybrid_and_int8_apart(digits_float_tflite, digits_hybrid_tflite,
                                                    converted_digits):
    assert classify_tflite(digits_float_tflite.read_bytes()) == "float"
    assert classify_tflite(digits_hybrid_tflite.read_bytes()) == "hybrid"
    assert classify_tflite(converted_digits) == "int8"


def test_saved_model_folder_loads(digits_saved_model):
    model = load_model(digits_saved_model)
    assert (model.kind, model.name, model.input_shape) == ("saved_model", "digits_saved_model",
                                                           (8, 8, 1))


# --------------------------------------------------------------------------- models that don't

def test_missing_file(tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_model(tmp_path / "nope.keras")
    assert "not found" in one_line_error(excinfo)


def test_folder_that_is_not_a_saved_model(tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_model(tmp_path)
    assert "not a SavedModel" in one_line_error(excinfo)


def test_text_file_named_tflite(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelError) as excinfo:
        load_model(path)
    assert "not a TensorFlow Lite flatbuffer" in one_line_error(excinfo)


def test_truncated_tflite(tmp_path):
    data = (MLPERF / "ad01_int8.tflite").read_bytes()
    path = tmp_path / "ad01_cut.tflite"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as excinfo:
        load_model(path)
    assert "truncated or corrupt" in one_line_error(excinfo)


def test_unknown_extension(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert "unknown model type '.onnx'" in one_line_error(excinfo)


def test_saved_model_pb_points_to_its_folder(tmp_path):
    path = tmp_path / "saved_model.pb"
    path.write_bytes(b"")
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert str(tmp_path) in one_line_error(excinfo)


def test_h5_that_is_not_hdf5(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("hello")
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert "not an HDF5 file" in one_line_error(excinfo)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3 internals on save_weights
def test_h5_with_weights_only(digits_model, tmp_path):
    path = tmp_path / "digits.weights.h5"
    digits_model.keras_model.save_weights(path)
    with pytest.raises(ModelError) as excinfo:
        load_model(path)
    assert "no model architecture" in one_line_error(excinfo)


def test_keras_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("{}")
    with pytest.raises(InputError) as excinfo:
        load_model(path)
    assert "not a Keras 3 model file" in one_line_error(excinfo)


def test_truncated_keras_and_h5_files(tmp_path, keras2_dense_h5):
    keras_file, h5_file = tmp_path / "cut.keras", tmp_path / "cut.h5"
    keras_file.write_bytes((EXAMPLES / "digits" / "digits.keras").read_bytes()[:20_000])
    h5_file.write_bytes(keras2_dense_h5.read_bytes()[:8_000])
    with pytest.raises(InputError) as excinfo:
        load_model(keras_file)
    assert "damaged .keras archive" in one_line_error(excinfo)
    with pytest.raises(InputError) as excinfo:
        load_model(h5_file)
    assert "damaged HDF5 file" in one_line_error(excinfo)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3 internals on save
def test_keras_file_with_a_layer_keras_does_not_know(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="tinydeploy_test")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    path = tmp_path / "custom.keras"
    keras.Sequential([keras.Input((3,)), Twice(), keras.layers.Dense(2)]).save(path)
    keras.saving.get_custom_objects().pop("tinydeploy_test>Twice")  # as in a fresh process
    with pytest.raises(ModelError) as excinfo:
        load_model(path)
    assert "a custom layer?" in one_line_error(excinfo)
    assert "model.export" in excinfo.value.fix


# --------------------------------------------------------------------------- samples

def test_npz_gives_x_and_y():
    samples = load_samples(EXAMPLES / "digits" / "eval.npz", input_shape=(8, 8, 1))
    assert samples.x.shape == (360, 8, 8, 1) and samples.x.dtype == np.float32
    assert samples.y.shape == (360,)


def test_npy_with_missing_unit_axis_and_limit(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.zeros((5, 8, 8), np.uint8))
    samples = load_samples(path, input_shape=(8, 8, 1), limit=3)
    assert samples.x.shape == (3, 8, 8, 1) and samples.y is None


def test_samples_with_a_batch_axis_of_one(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((4, 1, 640), np.float32))
    assert load_samples(path, input_shape=(640,)).x.shape == (4, 640)


def test_wrong_shape_names_both_shapes(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(path, np.zeros((10, 28, 28), np.float32))
    with pytest.raises(InputError) as excinfo:
        load_samples(path, input_shape=(8, 8, 1), what="calibration samples")
    assert "calibration samples have shape (28, 28) but the model input is (8, 8, 1)" in \
        one_line_error(excinfo)


def test_npz_without_x(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, images=np.zeros((2, 1)))
    with pytest.raises(InputError) as excinfo:
        load_samples(path, input_shape=(1,))
    assert "no array 'x' (it has: images)" in one_line_error(excinfo)


def test_module_function_is_imported_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "my_calib_data.py").write_text(
        "import itertools\n"
        "def samples():\n"
        "    for i in itertools.count():\n"
        "        yield {'x': [float(i)], 'y': i % 2}\n")
    monkeypatch.chdir(tmp_path)
    samples = load_samples("my_calib_data:samples", input_shape=(1,), limit=4)
    assert samples.x[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert samples.y.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("spec, expected", [
    ("no_such_module_xyz:samples", "cannot import no_such_module_xyz"),
    ("missing.npz", "not found"),
    ("json:no_such_function", "json has no function no_such_function"),
])
def test_bad_sample_specs(spec, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TinydeployError) as excinfo:
        load_samples(spec, input_shape=(1,))
    assert expected in one_line_error(excinfo)
